"""Training-time mitigations that are not data augmentation: the input-gradient penalty.

Input-gradient regularisation (Ross and Doshi-Velez, "Improving the Adversarial Robustness and
Interpretability of Deep Neural Networks by Regularizing their Input Gradients", AAAI 2018; the
double backpropagation of Drucker and LeCun 1992) adds to the cross-entropy the squared L2 norm of
each sample's input gradient of its own cross-entropy:

    objective = CE + lambda * mean_n || d CE(x_n, y_n) / d x_n ||_2^2

A small input gradient means that a small perturbation changes the loss little (to first order,
an L2 perturbation of size eps changes it by at most eps ||g||_2, an L-inf one by eps ||g||_1), so
the penalty flattens the loss around the training points. The gradient is taken in the attack
space [0, 1] (the model's input range [lo, hi] is mapped onto it), so lambda means the same for a
model taking 0..255 as for one taking [0, 1]. It costs one extra backward pass through the graph of
the gradient per batch (about twice a plain step), against 1 + k passes for PGD-k adversarial
training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from aloha_ir.errors import UsageError


class InputGradientPenalty:
    """A training-engine `penalty(x, logits, y)`: `weight` x the batch mean of the squared L2 norm
    of the per-sample input gradient of the cross-entropy, in [0, 1] attack space for a model taking
    inputs in [lo, hi]. x must require a gradient and logits must be computed from it (the engine
    does both). With batch normalisation in training mode the samples of a batch are coupled, so
    the gradient of the summed loss is the per-sample gradient plus the (small) coupling terms."""

    def __init__(self, weight: float, *, lo: float = 0.0, hi: float = 1.0):
        if not weight > 0:
            raise UsageError(f"the input-gradient penalty weight must be > 0, got {weight}",
                             where="weight")
        if not hi > lo:
            raise UsageError(f"the input range needs lo < hi, got {lo}..{hi}")
        self.weight, self.scale = float(weight), float(hi - lo)

    def __call__(self, x: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, y, reduction="sum")
        (g,) = torch.autograd.grad(ce, x, create_graph=True)
        return self.weight * (self.scale * g).pow(2).reshape(len(x), -1).sum(1).mean()
