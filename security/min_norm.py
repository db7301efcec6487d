"""The security evaluation curve from one minimum-norm attack (FMN, runtime/torch/fmn.py): every
sample's smallest adversarial distance d_i; the accuracy at epsilon is the fraction of samples with
d_i > epsilon (0 for a sample misclassified already, inf for one never fooled), so one run gives
every point of the curve, and the median distance is a scalar summary (the epsilon where the
curve crosses one half).

The PGD check. A minimum-norm attack can stop short where a fixed-epsilon attack succeeds. At every
grid epsilon, the samples FMN leaves robust there are attacked by PGD-k warm-started from their
FMN point (projected onto the epsilon ball: the best start there is). A sample it fools has its
distance lowered to that of PGD's adversarial input, so the curve takes the worse case of the two
attacks at every epsilon and stays monotone; the report counts those samples per epsilon.

Cost bookkeeping (the attack-effectiveness metrics): the FMN run's forward and backward passes and
time are spread evenly over the grid's points (one run serves them all), the PGD check's are
charged to the epsilon it ran at.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

CHECK_STEPS = {"fast": 5, "slow": 10}


def min_norm_chunk(model, xt: torch.Tensor, yt: torch.Tensor, cfg) -> dict:
    """One chunk of samples, the whole grid: per epsilon the correct flags, adversarial inputs
    and effectiveness figures, and per sample the distance (after the PGD check)."""
    from runtime.torch.attacks import Attack, lp_norm, run_attack
    from runtime.torch.fmn import FMN, run_fmn
    n, points = len(xt), len(cfg.eps)
    t0 = time.perf_counter()
    r = run_fmn(model, xt, yt, FMN(cfg.norm, cfg.steps))
    share_s = (time.perf_counter() - t0) / points
    dist, best, conf = r.distance.clone(), r.x_adv.clone(), r.confidence.clone()
    clean = r.clean_correct
    check = Attack("pgd", cfg.norm, cfg.check_steps) if cfg.check_steps else None
    out = {"attack": [], "adv": [], "metrics": [], "check_found": []}
    for eps in cfg.eps:
        t = time.perf_counter()
        fwd, bwd = r.forward_passes / points, r.backward_passes / points
        robust = dist > eps
        found = 0
        last = torch.where(robust.reshape([-1] + [1] * (xt.dim() - 1)), xt, best)
        if check is not None and eps > 0 and bool(robust.any()):
            idx = torch.nonzero(robust).squeeze(1)
            pr = run_attack(model, xt[idx], yt[idx], eps, check, init=best[idx])
            fooled = ~pr.correct
            last[idx] = pr.x_adv
            hit = idx[fooled]
            found = int(len(hit))
            if found:
                d = lp_norm(pr.x_adv[fooled].double() - xt[hit].double(), cfg.norm)
                dist[hit] = torch.minimum(dist[hit], d)
                best[hit] = pr.x_adv[fooled]
                conf[hit] = pr.confidence[fooled]
            fwd += len(idx) / n * (cfg.check_steps + 1)
            bwd += len(idx) / n * cfg.check_steps
            robust = dist > eps
        broken = clean & ~robust
        out["attack"].append(robust.numpy())
        out["adv"].append(last.numpy())
        out["check_found"].append(found)
        out["metrics"].append({"fooled": int(broken.sum()), "clean_correct": int(clean.sum()),
                               "confidence_sum": float(conf[broken].sum()),
                               "forward": fwd * n, "backward": bwd * n,
                               "seconds": share_s + time.perf_counter() - t})
    out["distance"] = dist.numpy()
    out["zero"] = r.zero_gradient.numpy()
    return out


def median_distance(distances: np.ndarray) -> float:
    """The median of the per-sample distances (inf when most samples were never fooled)."""
    if not len(distances):
        return math.nan
    return float(np.median(distances))
