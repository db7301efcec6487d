"""Outputs that are all old or all new (issue 18 item 7), Ctrl-C that stops at once and says what
it kept (item 8), and a Gantt chart drawn per unit on a scaled time axis (item 13).

Write failures are real where the kernel allows it unprivileged (RLIMIT_FSIZE makes a write fail
with EFBIG, the same path as a full disk) and injected in-process for ENOSPC; interruptions are a
real SIGINT to a real process, or a KeyboardInterrupt raised where the user's Ctrl-C would land.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from aloha_ir.outputs import MANIFEST, Staged, atomic_path, output_error, write_text
from alohac.main import main

ALOHAC = [sys.executable, "-m", "alohac.main"]
TESTS = os.path.dirname(os.path.abspath(__file__))


def snapshot(folder) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too) -> its bytes."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


def leftovers(folder) -> list[str]:
    """Temporaries, staging or probe folders anywhere under `folder`."""
    found = []
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            if name.endswith(".tmp") or "aloha-staging" in name or "aloha-probe" in name:
                found.append(os.path.join(root, name))
    return found


def until(condition, deadline_s: float, what: str, process=None):
    """Poll `condition` every 50 ms until it holds (its value is returned), failing when the
    deadline passes or `process` ends first."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the process ended (exit {process.returncode}) before {what}:\n{err}")
        time.sleep(0.05)
    pytest.fail(f"no {what} within {deadline_s} s")


def children(pid: int) -> list[int]:
    """The worker processes `pid` has spawned (not multiprocessing's resource tracker)."""
    found = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids = [int(p) for p in f.read().split()]
        for child in pids:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if b"spawn_main" in f.read():
                    found.append(child)
    except FileNotFoundError:
        pass
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def reap(process) -> None:
    """Kill a test's process and its workers if the test left them running."""
    if process.poll() is None:
        for child in children(process.pid):
            os.kill(child, signal.SIGKILL)
        process.kill()
        process.communicate()


# -- item 7: outputs written whole ----------------------------------------------------------------

def test_a_write_failing_midway_keeps_the_previous_output_whole(tmp_path):
    """A real write failure (EFBIG from the kernel: the file size limit stands in for a full
    disk) while compiling over a previous compile: exit 3 naming the file, the previous outputs
    byte for byte, no temporary left anywhere."""
    out = tmp_path / "out"
    r = subprocess.run(ALOHAC + ["compile", "zoo:lenet5", "--target", "host-cpu", "-o", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    before = snapshot(out)
    assert os.path.getsize(out / "code" / "weights.bin") > 200_000  # bigger than the limit

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
    r = subprocess.run(ALOHAC + ["compile", "zoo:lenet5", "--target", "neuraghe-losa", "-o",
                                 str(out)], capture_output=True, text=True, timeout=600,
                       preexec_fn=small_files)
    assert r.returncode == 3, r.stderr
    assert "output error" in r.stderr and "file too large" in r.stderr, r.stderr
    assert f"{out} is as it was" in r.stderr
    assert snapshot(out) == before
    assert leftovers(tmp_path) == []


def test_a_full_disk_is_exit_3_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    """ENOSPC while writing the generated code's weights (injected where the backend writes):
    before, a code folder without weights.bin and an internal error (exit 1)."""
    import backends.api
    real = backends.api.write_bytes

    def full_disk(path, data, *rest):
        if path.endswith("weights.bin"):
            with open(path + ".partial.tmp", "wb") as f:  # what a write cut short leaves
                f.write(data[:100])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path + ".partial.tmp")
        return real(path, data, *rest)
    monkeypatch.setattr(backends.api, "write_bytes", full_disk)
    out = tmp_path / "out"
    assert main(["compile", "zoo:lenet5", "--target", "host-cpu", "-o", str(out)]) == 3
    err = capsys.readouterr().err
    assert "no space left on device" in err and "free some space" in err, err
    assert f"{out}/code/weights.bin.partial.tmp" in err  # the place, as the user will see it
    assert not out.exists() and leftovers(tmp_path) == []


def test_ctrl_c_while_writing_keeps_the_previous_output(tmp_path, monkeypatch, capsys):
    """Interrupted after the new code is written but before the rest: before, the folder held
    the new IR beside the old code/ and report, which `make` then built."""
    out = tmp_path / "out"
    assert main(["compile", "zoo:lenet5", "--target", "host-cpu", "-o", str(out)]) == 0
    before = snapshot(out)
    import backends.api
    generate = backends.api.Backend.generate

    def interrupted(self, *args, **kwargs):
        generate(self, *args, **kwargs)
        raise KeyboardInterrupt
    monkeypatch.setattr(backends.api.Backend, "generate", interrupted)
    assert main(["compile", "zoo:lenet5", "--target", "neuraghe-losa", "-o", str(out)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert snapshot(out) == before
    assert leftovers(tmp_path) == []


def test_a_compile_replaces_the_previous_compile_and_nothing_else(tmp_path, capsys):
    """Outputs of the previous compile that this one does not write go (the old code/ would
    otherwise pass for this model's); a file the user put there stays."""
    out = tmp_path / "out"
    assert main(["compile", "zoo:lenet5", "--target", "host-cpu", "-o", str(out)]) == 0
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(["compile", "zoo:lenet5", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert sorted(os.listdir(out)) == sorted([MANIFEST, "lenet5.mlir", "lenet5.weights.npz",
                                              "notes.txt", "report.md"])
    assert f"removed {out}/code" in err and f"removed {out}/report.json" in err
    assert "host-cpu" not in (out / "report.md").read_text()
    assert (out / "notes.txt").read_text() == "mine"


def test_commands_sharing_a_folder_keep_each_others_outputs(tmp_path):
    out = str(tmp_path / "out")
    for command, names in (("compile", ["m.mlir", "report.md"]), ("secure", ["security.json"]),
                           ("compile", ["m.mlir"])):
        with Staged(out, command, log=open(os.devnull, "w")) as staged:
            for name in names:
                write_text(staged.path(name), command)
    assert sorted(os.listdir(out)) == sorted([MANIFEST, "m.mlir", "security.json"])
    with open(os.path.join(out, MANIFEST)) as f:
        recorded = json.load(f)["commands"]
    assert {c: v["entries"] for c, v in recorded.items()} == {"compile": ["m.mlir"],
                                                               "secure": ["security.json"]}


def test_a_file_written_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(str(target)) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half of the ne")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.bin"]


def test_output_error_says_what_happened_and_what_to_do():
    for code, said, todo in ((errno.ENOSPC, "no space left on device",
                              "free some space, or write elsewhere"),
                             (errno.EROFS, "read-only file system", "give a writable place"),
                             (errno.EACCES, "permission denied", "give a writable place")):
        e = output_error(OSError(code, os.strerror(code)), "out/report.md", kept="out")
        assert e.exit_code == 3
        assert e.one_line() == f"out/report.md: cannot write: {said} (out is as it was; {todo})"


def _bad_outputs(tmp_path):
    """(argv, the path the message must name) for every command writing outputs, each given a
    path it cannot write to."""
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    a_folder = tmp_path / "m.onnx"
    a_folder.mkdir()
    f = str(a_file)
    return [
        (["compile", "zoo:lenet5", "-o", f], f),
        (["compile", "zoo:lenet5", "-o", f"{f}/sub"], f"{f}/sub"),
        (["compile", "zoo:lenet5", "--target", "host-cpu", "--gantt", str(a_folder), "-o",
          str(tmp_path / "o")], str(a_folder)),
        (["analyze", "zoo:lenet5", "--target", "host-cpu", "--gantt", str(a_folder)],
         str(a_folder)),
        (["opt", "missing.mlir", "-o", str(a_folder)], str(a_folder)),
        (["train", "zoo:digits_cnn", "--data", "digits", "-o", str(a_folder)], str(a_folder)),
        (["quantize", "zoo:digits_cnn", "--data", "digits", "-o", f], f),
        (["prune", "zoo:digits_cnn", "--data", "digits", "-o", f], f),
        (["secure", "zoo:digits_cnn", "--data", "digits", "-o", f], f),
        (["explore", "space:seed-example", "--target", "host-cpu", "--objectives",
          "latency,params", "-o", f], f),
        (["explore-mapping", "zoo:lenet5", "--target", "host-cpu", "-o", f], f),
        (["compare", "zoo:lenet5", "--target", "host-cpu", "-o", f], f),
    ]


def test_an_output_path_that_cannot_be_written_is_exit_3_before_any_work(tmp_path, capsys):
    """Before: exit 1 (FileExistsError, NotADirectoryError: "internal error"), after minutes of
    work for train, quantize, prune, secure and explore."""
    for argv, shown in _bad_outputs(tmp_path):
        start = time.monotonic()
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 3, (argv, err)
        assert f"alohac: output error: {shown}" in err, (argv, err)
        assert time.monotonic() - start < 30, argv  # refused before the work, not after
    assert sorted(os.listdir(tmp_path)) == ["a-file", "m.onnx"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux's /sys")
def test_an_unwritable_place_is_exit_3_even_for_root(capsys):
    """/sys refuses new folders to everyone; os.access would have said yes to root."""
    assert main(["compile", "zoo:lenet5", "-o", "/sys/aloha-test-dir"]) == 3
    assert "alohac: output error: /sys/aloha-test-dir: cannot write" in capsys.readouterr().err


def test_secure_with_a_bad_option_creates_nothing(tmp_path, capsys):
    out = tmp_path / "sec"
    assert main(["secure", "zoo:digits_cnn", "--eps", "0:x", "-o", str(out)]) == 2
    assert not out.exists()


# -- item 8: Ctrl-C --------------------------------------------------------------------------------

def test_ctrl_c_stops_explore_workers_in_the_middle_of_a_point(tmp_path):
    """The workers' evaluations read the .arch file, here a FIFO this test answers once (for
    the main process) and then holds open without writing: the workers' points never finish,
    like a long training. Before, Ctrl-C waited for them (here: forever)."""
    from archdesc.loader import PLATFORM_DIR
    with open(os.path.join(PLATFORM_DIR, "host-cpu.arch"), encoding="utf-8") as f:
        arch = f.read()
    fifo = str(tmp_path / "slow.arch")
    os.mkfifo(fifo)
    out = tmp_path / "dse"
    p = subprocess.Popen(ALOHAC + ["explore", "space:seed-example", "--target", fifo,
                                   "--objectives", "latency,params", "--algorithm", "random",
                                   "--budget", "4", "--workers", "2", "-o", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    held = None
    try:
        def writer():
            try:
                return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                if e.errno != errno.ENXIO:  # ENXIO: nobody reads it yet
                    raise
                return None
        fd = until(writer, 300, "read of the platform file by alohac", p)
        os.write(fd, arch.encode())
        os.close(fd)
        # alohac reads the platform before it starts workers: once they exist, the next
        # reader is a worker evaluating a point
        workers = until(lambda: children(p.pid), 300, "worker processes", p)
        held = until(writer, 300, "evaluation started by a worker", p)
        workers = children(p.pid)
        start = time.monotonic()
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
        assert p.returncode == 130, err
        assert time.monotonic() - start < 60
        assert "interrupted; 0 points cached in" in err
        assert "run the same command again to resume" in err
        assert not any(alive(w) for w in workers)
        assert not (out / "pareto.json").exists() and leftovers(tmp_path) == []
    finally:
        if held is not None:
            os.close(held)
        reap(p)


def test_a_rerun_of_explore_says_what_comes_from_the_cache(tmp_path, capsys):
    argv = ["explore", "space:seed-example", "--target", "host-cpu", "--objectives",
            "latency,params", "--algorithm", "random", "--budget", "5", "--workers", "0",
            "--json", "-o", str(tmp_path / "dse")]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert "from the cache" not in first.err
    assert main(argv) == 0
    again = capsys.readouterr()
    assert "5 points from the cache" in again.err
    assert json.loads(again.out.splitlines()[-1])["new_evaluations"] == 0


def test_ctrl_c_in_training_keeps_the_last_epoch_and_a_rerun_resumes(tmp_path, capsys):
    """Ctrl-C during epoch 3 (raised where the user's would be, between batches of the epoch):
    the checkpoint holds epoch 2 whole, the message says so, and a rerun says it resumed."""
    import torch

    from aloha_ir.errors import Interrupted
    from runtime.torch.train import TrainConfig, train
    from frontends.datasets import load
    digits = load("digits")

    def cnn():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    ckpt = str(tmp_path / "run.ckpt")
    config = TrainConfig(epochs=4, batch_size=32, lr=1e-2, subset=200, progress=False,
                         checkpoint=ckpt)

    def ctrl_c_in_epoch_3(epoch, record):
        if epoch == 3:
            raise KeyboardInterrupt
    with pytest.raises(Interrupted, match=f"{ckpt} holds epoch 2; run the same command"):
        train(cnn(), digits, config, on_epoch=ctrl_c_in_epoch_3)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    assert os.listdir(tmp_path) == ["run.ckpt"]
    capsys.readouterr()
    resumed = train(cnn(), digits, config)
    assert f"resumed from epoch 2 ({ckpt})" in capsys.readouterr().err
    assert [r.epoch for r in resumed.history] == [1, 2, 3, 4]


@pytest.mark.slow
def test_ctrl_c_in_alohac_train_and_the_rerun_that_resumes(tmp_path):
    """The same through the command line, with a real SIGINT once a checkpoint exists."""
    import re

    import onnx
    ckpt, model = tmp_path / "run.ckpt", tmp_path / "m.onnx"
    argv = ALOHAC + ["train", "zoo:digits_cnn", "--data", "digits", "--subset", "256",
                     "--checkpoint", str(ckpt), "-o", str(model)]
    p = subprocess.Popen(argv + ["--epochs", "100000"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        until(ckpt.exists, 600, "checkpoint", p)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        reap(p)
    assert p.returncode == 130, err
    held = int(re.search(rf"{ckpt} holds epoch (\d+); run the same command again", err)[1])
    assert held >= 1 and sorted(os.listdir(tmp_path)) == ["run.ckpt"]
    r = subprocess.run(argv + ["--epochs", str(held + 1)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    assert f"resumed from epoch {held} ({ckpt})" in r.stderr
    onnx.checker.check_model(onnx.load(str(model)))
    assert len(json.loads((tmp_path / "m.curves.json").read_text())["history"]) == held + 1
    assert leftovers(tmp_path) == []


SECURE_SCRIPT = """
import signal, sys, time
import numpy as np
import exec_tasks
from security import evaluate as security
from frontends.loader import load_model
security._worker = exec_tasks.start_and_hang
module = load_model("zoo:digits_cnn")
x = np.random.default_rng(0).uniform(0, 1, (4 * security.CHUNK, 1, 8, 8)).astype(np.float32)
try:
    security.evaluate(module, x, np.zeros(len(x), np.int64),
                      security.SecurityConfig(workers=2, sanity=False), input_range=(0.0, 1.0))
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_ctrl_c_stops_secure_workers_in_the_middle_of_a_chunk(tmp_path):
    """Before, the process pool waited for the running chunks (minutes in slow mode)."""
    env = {**os.environ, "ALOHA_TEST_FLAGS": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([os.path.dirname(TESTS), TESTS])}
    p = subprocess.Popen([sys.executable, "-c", SECURE_SCRIPT], env=env, cwd=TESTS,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        until(lambda: len([n for n in os.listdir(tmp_path) if n.endswith(".started")]) == 2,
              300, "chunks started by both workers", p)
        workers = children(p.pid)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
        assert p.returncode == 130, err
        started = [int(n.split(".")[0]) for n in os.listdir(tmp_path)]
        assert set(started) <= set(workers) and not any(alive(w) for w in started)
    finally:
        reap(p)


# -- item 13: the Gantt chart ---------------------------------------------------------------------

def _schedule(spans: list[tuple[str, int, float, float]]):
    from aloha_ir.selftimed import Firing
    timeline = [Firing(f"a{i}", unit, frame, 0, start, end)
                for i, (unit, frame, start, end) in enumerate(spans)]
    return SimpleNamespace(timeline=timeline, latency_s=spans[0][3], period_s=spans[0][3] / 2)


@pytest.mark.parametrize("scale, label", [(1.0, "s"), (1e-3, "ms"), (1e-6, "\u00b5s"),
                                          (1e-9, "ns")])
def test_gantt_time_axis_is_in_the_runs_unit_and_shows_the_last_firing(scale, label):
    from flows.report import gantt_figure
    spans = [("ce", 0, 0.0, 3.0 * scale), ("arm0", 0, 3.0 * scale, 4.5 * scale),
             ("ce", 1, 3.0 * scale, 6.0 * scale), ("arm0", 1, 6.0 * scale, 7.25 * scale),
             ("@input", 0, 0.0, 9.0 * scale)]  # a pseudo-unit: not drawn
    ax = gantt_figure(_schedule(spans), "t").axes[0]
    assert ax.get_xlabel() == f"time ({label})"
    left, right = ax.get_xlim()
    assert left == 0 and 7.25 < right <= 7.25 * 1.05  # the last firing ends inside the axes
    assert f"latency 3 {label}" in ax.get_title()


def test_gantt_draws_one_collection_per_unit_holding_all_its_busy_time():
    """zoo:lenet5 on LOSA: 225 firings a frame, run until the schedule repeats (898 firings of 5
    frames begun); before, one artist each."""
    from archdesc.loader import load_platform
    from flows.report import gantt_figure
    from flows.target import TargetFlow
    from frontends.loader import load_model
    schedule = TargetFlow(load_platform("neuraghe-losa"), timeline=True).run(
        load_model("zoo:lenet5")).schedule
    busy = {}
    for f in schedule.timeline:
        if not f.unit.startswith("@"):
            busy[f.unit] = busy.get(f.unit, 0.0) + f.end - f.start
    assert len(schedule.timeline) > 3 * len(schedule.frame_timeline)
    ax = gantt_figure(schedule, "lenet5").axes[0]
    assert ax.get_xlabel() == "time (\u00b5s)" and len(ax.patches) == 0
    assert len(ax.collections) == len(busy) == 3
    for unit, collection in zip([t.get_text() for t in ax.get_yticklabels()], ax.collections):
        drawn = sum(p.vertices[:, 0].max() - p.vertices[:, 0].min()
                    for p in collection.get_paths())
        assert drawn * 1e-6 == pytest.approx(busy[unit], rel=1e-9)
    last = max(f.end for f in schedule.timeline if not f.unit.startswith("@"))
    assert last * 1e6 < ax.get_xlim()[1]
