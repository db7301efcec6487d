"""The security evaluation curve from one minimum-norm attack (FMN, runtime/torch/fmn.py): every
sample's smallest adversarial distance d_i; the accuracy at epsilon is the fraction of samples with
d_i > epsilon (0 for a sample misclassified already, inf for one never fooled), so one run gives
every point of the curve, and the median distance is a scalar summary (the epsilon where the
curve crosses one half).

The PGD check. A minimum-norm attack can stop short where a fixed-epsilon attack succeeds. Only
the grid epsilon just below a sample's FMN distance decides whether the curve places the sample
right, so PGD-k attacks it there, from the clean input
(`runtime.torch.fmn.refine_on_grid`); where it wins, the sample's distance falls to PGD's
adversarial input's and the search goes on down the grid (galloping, then bisecting) until a run
fails. A sample FMN placed right costs one PGD run instead of one per grid epsilon. The curve is
the worse case of the two attacks and stays monotone; the report counts the samples the check
lowered, and per epsilon the samples it attacked and fooled there.

Cost bookkeeping (the attack-effectiveness metrics): the FMN run's forward and backward passes and
time are spread evenly over the grid's points (one run serves them all), the PGD check's are
charged to the epsilon each run attacked its samples at.

Adversarial inputs per epsilon: FMN's (or the check's) input where the sample is fooled there;
where it is not, FMN's point projected onto the epsilon ball (the input itself when FMN found
none). That projected point can fool the model too (FMN's path is not straight): the model is
asked once per epsilon, a sample it fools there counts as fooled at that epsilon and every larger
one (the point lies in their balls too), and its distance falls to the point's. One forward
pass per sample and epsilon, charged to the epsilon.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch



def min_norm_chunk(model, xt: torch.Tensor, yt: torch.Tensor, cfg) -> dict:
    """One chunk of samples, the whole grid: per epsilon the correct flags, adversarial inputs
    and effectiveness figures, and per sample the distance (after the PGD check)."""
    from runtime.torch.attacks import Attack, project, wrong_and_confidence
    from runtime.torch.fmn import FMN, refine_on_grid, run_fmn
    n, points = len(xt), len(cfg.eps)
    t0 = time.perf_counter()
    r = run_fmn(model, xt, yt, FMN(cfg.norm, cfg.steps))
    share_s = (time.perf_counter() - t0) / points
    zeros = [0] * points
    check = None
    if cfg.check_steps:
        check = refine_on_grid(model, xt, yt, r, cfg.eps, Attack("pgd", cfg.norm, cfg.check_steps))
        dist, best, conf = check.distance, check.x_adv, check.confidence
    else:
        dist, best, conf = r.distance, r.x_adv, r.confidence
    clean = r.clean_correct
    dist, best, conf = dist.clone(), best.clone(), conf.clone()
    out = {"attack": [], "adv": [], "metrics": [],
           "check_tests": check.tests if check else zeros,
           "check_found": check.found if check else zeros}
    shape = [-1] + [1] * (xt.dim() - 1)
    for j, eps in enumerate(cfg.eps):
        t1 = time.perf_counter()
        robust = dist > eps
        # a robust sample shows FMN's point pulled into the ball (x where FMN found none); where
        # the model gets that point wrong, the sample is fooled from this epsilon on
        inside = project(best, xt, eps, cfg.norm)
        with torch.no_grad():
            wrong, c_in = wrong_and_confidence(model(inside), yt)
        now = robust & clean & wrong
        if bool(now.any()):
            d_in = (inside - xt).reshape(n, -1).double().norm(
                p=math.inf if cfg.norm == "inf" else 2, dim=1).to(dist.dtype)
            # within the ball: at most eps as the distances' type holds it (rounded down)
            top = torch.tensor(eps, dtype=dist.dtype)
            if float(top) > eps:
                top = torch.nextafter(top, torch.tensor(-math.inf, dtype=dist.dtype))
            dist = torch.where(now, torch.minimum(torch.minimum(d_in, top), dist), dist)
            best = torch.where(now.reshape(shape), inside, best)
            conf = torch.where(now, c_in.to(conf.dtype), conf)
            robust = robust & ~now
        last = torch.where(robust.reshape(shape), inside, best)
        broken = clean & ~robust
        out["attack"].append(robust.numpy())
        out["adv"].append(last.numpy())
        out["metrics"].append({
            "fooled": int(broken.sum()), "clean_correct": int(clean.sum()),
            "confidence_sum": float(conf[broken].sum()),
            "forward": r.forward_passes * n / points + n + (check.forward[j] if check else 0),
            "backward": r.backward_passes * n / points + (check.backward[j] if check else 0),
            "seconds": share_s + time.perf_counter() - t1
            + (check.seconds[j] if check else 0.0)})
    out["distance"] = dist.numpy()
    out["lowered"] = check.lowered.numpy() if check else np.zeros(n, bool)
    out["zero"] = r.zero_gradient.numpy()
    return out


def median_distance(distances: np.ndarray) -> float:
    """The median of the per-sample distances (inf when most samples were never fooled)."""
    if not len(distances):
        return math.nan
    return float(np.median(distances))
