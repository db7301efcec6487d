"""The training engine (runtime/torch/train.py) and its metrics, on scikit-learn's 8x8 digits."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from aloha_ir.errors import InputFileError, PassError, UsageError  # noqa: E402
from runtime.torch.metrics import (confusion_matrix, dice_per_class, iou_per_class,  # noqa: E402
                                    mean_present)
from runtime.torch.train import (TrainConfig, TrainingDiverged, evaluate, fast,  # noqa: E402
                                  halving_rounds, predict, save_curves, successive_halving, train)
from frontends.datasets import Dataset, Normalization, Splits, load  # noqa: E402

SMALL = TrainConfig(epochs=3, batch_size=32, lr=1e-2, subset=400, progress=False)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run faster on one thread, and a second OpenMP thread competing with another
    process for 2 cores slows them down a hundredfold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def cnn(dropout: float = 0.0, outputs: int = 10, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Dropout(dropout), nn.Linear(128, outputs))


def mlp(dropout: float = 0.0) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(32, 10))


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def timeless(result) -> list[dict]:
    """The history without wall-clock times, which no two runs share."""
    return [{k: v for k, v in r.to_json().items() if k != "seconds"} for r in result.history]


def test_small_cnn_learns_digits(digits):
    model = cnn()
    result = train(model, digits, TrainConfig(epochs=6, batch_size=32, lr=1e-2, progress=False))
    test = evaluate(model, digits.test)
    assert test.accuracy > 0.9
    assert np.mean(predict(model, digits.test) == digits.test.y) == pytest.approx(test.accuracy)
    accs = [r.val.accuracy for r in result.history]
    assert [r.epoch for r in result.history] == list(range(1, 7))
    assert result.best_epoch == 1 + int(np.argmax(accs)) and not result.stopped_early
    assert result.val == result.history[result.best_epoch - 1].val  # the best state was restored
    assert result.samples == len(digits.train)


def test_same_seed_gives_bit_identical_weights(digits):
    runs = [(cnn(dropout=0.3), seed) for seed in (0, 0, 1)]
    results = [train(m, digits, replace(SMALL, seed=s)) for m, s in runs]
    assert same_weights(runs[0][0], runs[1][0]) and timeless(results[0]) == timeless(results[1])
    assert not same_weights(runs[0][0], runs[2][0])


class Interrupt(Exception):
    pass


def keyboard_in_epoch_3(config):
    steps_per_epoch = math.ceil(config.subset / config.batch_size)
    count = iter(range(10 ** 6))

    def after_step(model):
        if next(count) == 2 * steps_per_epoch + 5:
            raise KeyboardInterrupt
    return {"after_step": after_step}, KeyboardInterrupt, [3, 4]


def hook_error_in_epoch_2(config):
    def on_epoch(epoch, record):
        if epoch == 2:
            raise Interrupt
    return {"on_epoch": on_epoch}, Interrupt, [2, 3, 4]


@pytest.mark.parametrize("interrupt", [keyboard_in_epoch_3, hook_error_in_epoch_2])
def test_resume_after_interruption_equals_an_uninterrupted_run(digits, tmp_path, interrupt):
    config = replace(SMALL, epochs=4)
    reference = cnn(dropout=0.3)
    expected = train(reference, digits, config)

    resumable = replace(config, checkpoint=str(tmp_path / "run.ckpt"))
    hooks, error, rerun = interrupt(config)
    with pytest.raises(error):
        train(cnn(dropout=0.3), digits, resumable, **hooks)
    seen = []
    model = cnn(dropout=0.3, seed=7)  # another initialisation: the checkpoint must override it
    result = train(model, digits, resumable, on_epoch=lambda e, r: seen.append(e))
    assert seen == rerun  # only the epochs after the last checkpoint ran
    assert same_weights(model, reference) and timeless(result) == timeless(expected)
    assert result.best_epoch == expected.best_epoch

    again = cnn(dropout=0.3, seed=8)
    finished = train(again, digits, resumable, on_epoch=lambda e, r: pytest.fail("retrained"))
    assert same_weights(again, reference) and timeless(finished) == timeless(expected)
    assert not list(tmp_path.glob("*.tmp"))


def test_checkpoint_extends_a_finished_run_and_refuses_another_setup(digits, tmp_path):
    ckpt = str(tmp_path / "run.ckpt")
    one = replace(SMALL, epochs=1, checkpoint=ckpt)
    train(cnn(), digits, one)
    extended = cnn()
    train(extended, digits, replace(one, epochs=2))
    straight = cnn()
    train(straight, digits, replace(SMALL, epochs=2))
    assert same_weights(extended, straight)
    with pytest.raises(UsageError, match="fingerprint.*lr"):
        train(cnn(), digits, replace(one, lr=1e-3))
    with pytest.raises(UsageError, match="fingerprint.*another model"):
        train(cnn(outputs=11), digits, one)
    open(ckpt, "wb").write(b"not a checkpoint")
    with pytest.raises(InputFileError, match="cannot read the training checkpoint"):
        train(cnn(), digits, one)


def test_early_stopping_by_patience_restores_the_best_state(digits):
    # min_delta 1.0: no later epoch can beat the first by a whole unit of accuracy.
    model = cnn()
    config = replace(SMALL, epochs=10, patience=2, min_delta=1.0)
    result = train(model, digits, config)
    assert result.stop_reason == "patience" and result.stopped_early
    assert len(result.history) == 3 and result.best_epoch == 1
    assert evaluate(model, digits.val) == result.history[0].val


def test_on_epoch_returning_true_stops(digits):
    result = train(cnn(), digits, SMALL, on_epoch=lambda epoch, record: epoch == 2)
    assert result.stop_reason == "on_epoch" and len(result.history) == 2


def test_nan_loss_names_epoch_and_batch(digits):
    calls = iter(range(10 ** 6))
    batches = math.ceil(SMALL.subset / SMALL.batch_size)

    def regularizer():
        return torch.tensor(math.nan if next(calls) == batches + 2 else 0.0)
    with pytest.raises(TrainingDiverged, match=f"nan at epoch 2, batch 3 of {batches}") as e:
        train(mlp(), digits, SMALL, regularizer=regularizer)
    assert isinstance(e.value, PassError) and e.value.exit_code == 8

    x = digits.train.x.copy()
    x[:, 0, 0, 0] = np.inf
    poisoned = Splits(Dataset("inf", x, digits.train.y, 10, digits.train.normalization),
                      digits.val, digits.test)
    with pytest.raises(TrainingDiverged, match="epoch 1, batch 1 "):
        train(mlp(), poisoned, SMALL)


def test_labels_beyond_the_model_outputs_are_a_usage_error(digits):
    with pytest.raises(UsageError, match="labels up to 9 but the model has 5 outputs"):
        train(cnn(outputs=5), digits, SMALL)
    with pytest.raises(UsageError, match="5 outputs"):
        evaluate(cnn(outputs=5), digits.test)
    with pytest.raises(UsageError, match=r"segmentation needs labels \[N, H, W\]"):
        evaluate(cnn(), digits.test, task="segmentation")
    with pytest.raises(UsageError, match=r"outputs \[256, 10, 8, 8\] .* logits \[N, classes\]"):
        evaluate(nn.Conv2d(1, 10, 1), digits.test)


def test_metrics_equal_sklearn():
    from sklearn import metrics as skm
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 4, 500)           # classes 0..3 in the truth
    pred = rng.integers(0, 5, 500)            # class 4 only predicted, class 5 in neither
    cm = confusion_matrix(truth, pred, 6)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(truth, pred, labels=range(6)))
    iou, dice = iou_per_class(cm), dice_per_class(cm)
    present = np.union1d(truth, pred)
    assert list(present) == [0, 1, 2, 3, 4] and np.isnan(iou[5]) and np.isnan(dice[5])
    np.testing.assert_allclose(iou[present], skm.jaccard_score(truth, pred, labels=present,
                                                               average=None))
    np.testing.assert_allclose(dice[present], skm.f1_score(truth, pred, labels=present,
                                                           average=None))
    assert iou[4] == 0.0 and mean_present(iou) == pytest.approx(np.mean(iou[present]))
    with pytest.raises(UsageError, match="outside 0..5"):
        confusion_matrix(truth, pred + 2, 6)


def test_segmentation_trains_and_evaluates_like_sklearn(tmp_path):
    from sklearn import metrics as skm
    rng = np.random.default_rng(0)

    def pixels(n):
        x = rng.random((n, 1, 6, 6), dtype=np.float32)
        return Dataset("bands", x, (x[:, 0] > 0.4).astype(np.int64) + (x[:, 0] > 0.8), 3,
                       Normalization((0.0, 1.0)))
    splits = Splits(pixels(200), pixels(50), pixels(50))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 1), nn.ReLU(), nn.Conv2d(16, 3, 1))
    config = TrainConfig(epochs=8, batch_size=16, lr=0.03, task="segmentation", progress=False)
    result = train(model, splits, config)
    assert result.val.iou > 0.8 and result.history[-1].val.dice is not None
    m = evaluate(model, splits.test, batch_size=7, task="segmentation")
    pred, truth = predict(model, splits.test).ravel(), splits.test.y.ravel()
    assert m.accuracy == pytest.approx(np.mean(pred == truth))
    present = np.union1d(truth, pred)
    assert m.iou == pytest.approx(skm.jaccard_score(truth, pred, labels=present, average="macro"))
    assert m.dice == pytest.approx(skm.f1_score(truth, pred, labels=present, average="macro"))
    json_path, png_path = save_curves(result, str(tmp_path / "seg"))
    assert "val_iou" in json.loads(open(json_path).read())["history"][0]


class Diverging(nn.Module):
    """An MLP whose training outputs turn NaN from its 16th forward call (epoch 2 here)."""

    def __init__(self):
        super().__init__()
        self.net, self.calls = mlp(), 0

    def forward(self, x):
        self.calls += 1
        out = self.net(x)
        return out * math.nan if self.training and self.calls > 15 else out


def test_successive_halving_drops_useless_candidates_within_budget(digits):
    fast_cfg = fast(TrainConfig(batch_size=32, lr=1e-2, progress=False), subset=300, epochs=1)
    # Dropout makes each candidate's RNG stream matter while the rounds interleave them.
    noisy = lambda: mlp(dropout=0.2)  # noqa: E731
    candidates = [("adam-1e-2", noisy, fast_cfg), ("tiny-lr", noisy, replace(fast_cfg, lr=1e-7)),
                  ("diverging", Diverging, fast_cfg),
                  ("adam-3e-3", noisy, replace(fast_cfg, lr=3e-3)),
                  ("sgd", noisy, replace(fast_cfg, optimizer="sgd", lr=0.1))]
    result = successive_halving(candidates, budget_epochs=21, eta=2, splits=digits)
    # 2 rounds of 21 // 2 = 10 epochs: 5 candidates x 2 (but one diverges in its 2nd), 2 x 5.
    assert [r["epochs"] for r in result.rounds] == [2, 5]
    assert result.epochs_spent == 19 == sum(len(r.history) for r in result.results.values())
    assert result.rounds[0]["diverged"] == ["diverging"]
    assert result.results["diverging"].stop_reason == "diverged"
    assert result.ranking[-2:] == ["tiny-lr", "diverging"]
    assert not {"tiny-lr", "diverging"} & set(result.rounds[0]["kept"])
    winner = result.ranking[0]
    assert result.rounds[1]["kept"] == [winner] and len(result.results[winner].history) == 7

    # Survivors continue their training: the winner equals a straight 7-epoch run.
    config = next(c for n, _, c in candidates if n == winner)
    torch.manual_seed(config.seed)
    straight = noisy()
    expected = train(straight, digits, replace(config, epochs=7))
    assert same_weights(result.models[winner], straight)
    assert timeless(result.results[winner]) == timeless(expected)

    with pytest.raises(UsageError, match="at least 10 epochs"):
        successive_halving(candidates, budget_epochs=9, splits=digits)


def test_halving_rounds():
    assert halving_rounds(8, 2) == [8, 4, 2]
    assert halving_rounds(9, 3) == [9, 3]
    assert halving_rounds(5, 2) == [5, 2]
    assert halving_rounds(1, 2) == [1]


def test_save_curves_writes_json_and_png(digits, tmp_path):
    result = train(mlp(), digits, replace(SMALL, epochs=2))
    json_path, png_path = save_curves(result, str(tmp_path / "curves"))
    assert json.loads(open(json_path).read()) == json.loads(json.dumps(result.to_json()))
    assert open(png_path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.json", "curves.png"]


@pytest.mark.parametrize("field, value", [("epochs", 0), ("batch_size", 0), ("lr", 0.0),
                                          ("optimizer", "rmsprop"), ("momentum", 1.0),
                                          ("monitor", "f1"), ("task", "detection"),
                                          ("subset", -1), ("seed", -1), ("patience", -1)])
def test_config_validation(field, value):
    with pytest.raises(UsageError, match=field):
        TrainConfig(**{field: value})


def test_fast_mode_trains_on_a_seeded_subset(digits, tmp_path):
    config = fast(TrainConfig(lr=1e-2, progress=False, patience=3,
                              checkpoint=str(tmp_path / "full.ckpt")), subset=200, epochs=2)
    assert (config.subset, config.epochs, config.patience, config.checkpoint) == (200, 2, 0, None)
    result = train(mlp(), digits, config)
    assert result.samples == 200 and len(result.history) == 2
