"""Variable-length genetic operators on genotypes, and their pymoo wrappers.

Genotypes differ in length (a slot holds count_lo..count_hi layers), so the usual fixed-length
operators do not apply. Crossover works slot by slot, which keeps the space's layer order: for each
slot the children either swap the parents' whole segments or cut each parent's segment at its own
point and splice (cut-and-splice, so a child can hold more or fewer layers than either parent).
Mutation adds a layer, removes one, or alters one parameter to a neighbouring value. Every child is
brought back inside the count ranges and repaired (explore/space.py); a child that cannot be
repaired is replaced by a copy of its parent, so operators never emit an invalid genotype.
"""

from __future__ import annotations

import numpy as np
from pymoo.core.crossover import Crossover
from pymoo.core.duplicate import ElementwiseDuplicateElimination
from pymoo.core.mutation import Mutation
from pymoo.core.sampling import Sampling

from explore.space import SearchSpace
from frontends.genotype import Gene, Genotype, InvalidGenotype

MUTATIONS = ("add", "remove", "alter")


def segments(space: SearchSpace, genotype: Genotype) -> list[list[Gene]]:
    out: list[list[Gene]] = [[] for _ in space.slots]
    for g in genotype.layers:
        out[g.slot].append(g)
    return out


def _assemble(space: SearchSpace, segs: list[list[Gene]], rng: np.random.Generator,
              input_shape, fallback: Genotype) -> Genotype:
    """Counts clamped into range (extra layers cut at random, missing ones sampled), repaired;
    `fallback` when repair fails."""
    for i, (slot, seg) in enumerate(zip(space.slots, segs)):
        while len(seg) > slot.count[1]:
            seg.pop(int(rng.integers(len(seg))))
        while len(seg) < slot.count[0]:
            seg.insert(int(rng.integers(len(seg) + 1)), slot.sample(rng, i))
    try:
        return space.repair(Genotype(tuple(g for seg in segs for g in seg)), input_shape)[0]
    except InvalidGenotype:
        return fallback


def crossover(space: SearchSpace, a: Genotype, b: Genotype, rng: np.random.Generator,
              input_shape) -> tuple[Genotype, Genotype]:
    sa, sb = segments(space, a), segments(space, b)
    ca, cb = [], []
    for x, y in zip(sa, sb):
        if rng.random() < 0.5:  # swap whole segments
            ca.append(list(y))
            cb.append(list(x))
        else:  # cut-and-splice: each parent cut at its own point
            i, j = int(rng.integers(len(x) + 1)), int(rng.integers(len(y) + 1))
            ca.append(x[:i] + y[j:])
            cb.append(y[:j] + x[i:])
    return (_assemble(space, ca, rng, input_shape, a), _assemble(space, cb, rng, input_shape, b))


def mutate(space: SearchSpace, g: Genotype, rng: np.random.Generator, input_shape) -> Genotype:
    """One structural or parametric change (the kinds that are possible for this genotype)."""
    segs = segments(space, g)
    grow = [i for i, (s, seg) in enumerate(zip(space.slots, segs)) if len(seg) < s.count[1]]
    shrink = [i for i, (s, seg) in enumerate(zip(space.slots, segs)) if len(seg) > s.count[0]]
    tunable = [(i, k) for i, seg in enumerate(segs) for k, gene in enumerate(seg)
               if any(len(v) > 1 for v in space.slots[i].params.values())]
    kinds = [m for m, ok in zip(MUTATIONS, (grow, shrink, tunable)) if ok]
    if not kinds:
        return g
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "add":
        i = grow[int(rng.integers(len(grow)))]
        seg = segs[i]
        # a copy of a neighbour is a better guess than a random layer (layers in a slot are alike)
        new = seg[int(rng.integers(len(seg)))] if seg and rng.random() < 0.5 else \
            space.slots[i].sample(rng, i)
        seg.insert(int(rng.integers(len(seg) + 1)), new)
    elif kind == "remove":
        i = shrink[int(rng.integers(len(shrink)))]
        segs[i].pop(int(rng.integers(len(segs[i]))))
    else:
        i, k = tunable[int(rng.integers(len(tunable)))]
        gene = segs[i][k]
        params = [p for p, v in space.slots[i].params.items() if len(v) > 1]
        p = params[int(rng.integers(len(params)))]
        values = space.slots[i].params[p]
        at = values.index(gene[p])
        # a small step usually (local search), a jump sometimes (escape)
        if rng.random() < 0.7:
            step = max(1, len(values) // 8)
            at = int(np.clip(at + int(rng.choice([-step, step])), 0, len(values) - 1))
        else:
            at = int(rng.integers(len(values)))
        segs[i][k] = gene.with_params(**{p: values[at]})
    return _assemble(space, segs, rng, input_shape, g)


# --- pymoo wrappers: a population is an (n, 1) object array of Genotype ---------------------------
class GenotypeSampling(Sampling):
    def __init__(self, space: SearchSpace, input_shape):
        super().__init__()
        self.space, self.input_shape = space, input_shape

    def _do(self, problem, n_samples, *args, random_state=None, **kwargs):
        out = np.empty((n_samples, 1), dtype=object)
        seen = set()
        picks = []
        tries = 0
        while len(picks) < n_samples and tries < 50 * n_samples:
            tries += 1
            g = self.space.sample(random_state, self.input_shape)
            if g.key() not in seen:
                seen.add(g.key())
                picks.append(g)
        while len(picks) < n_samples:  # a tiny space: duplicates are eliminated later
            picks.append(self.space.sample(random_state, self.input_shape))
        for i, g in enumerate(picks):
            out[i, 0] = g
        return out


class GenotypeCrossover(Crossover):
    def __init__(self, space: SearchSpace, input_shape, prob: float = 0.9):
        super().__init__(2, 2, prob=prob)
        self.space, self.input_shape = space, input_shape

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        _, n_matings, _ = X.shape
        Y = np.empty((2, n_matings, 1), dtype=object)
        for k in range(n_matings):
            Y[0, k, 0], Y[1, k, 0] = crossover(self.space, X[0, k, 0], X[1, k, 0], random_state,
                                               self.input_shape)
        return Y


class GenotypeMutation(Mutation):
    def __init__(self, space: SearchSpace, input_shape, prob: float = 0.9):
        super().__init__(prob=prob)
        self.space, self.input_shape = space, input_shape

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        for i in range(len(X)):
            X[i, 0] = mutate(self.space, X[i, 0], random_state, self.input_shape)
        return X


class GenotypeDuplicates(ElementwiseDuplicateElimination):
    def is_equal(self, a, b) -> bool:
        return a.X[0] == b.X[0]
