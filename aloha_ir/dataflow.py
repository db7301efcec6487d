"""CSDF algorithms on a plain graph description: balance (repetition vector) and liveness.

Kept free of xDSL so the verifier, the analyses and the exporters share one implementation, and a
test can feed it graphs written by hand. Definitions follow reference/csdf.md: an actor with P phases
fires cyclically; channel u carries x_u(k) tokens from firing k of its source (phase k mod P) and
y_u(k) to its destination. Balance: r_src * X_u(P_src) = r_dst * Y_u(P_dst) with r the smallest
positive integer solution; an iteration is q_i = P_i * r_i firings of every actor.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from fractions import Fraction

from aloha_ir import rle


@dataclass(frozen=True)
class Edge:
    name: str
    src: str
    dst: str
    prod: rle.Runs
    cons: rle.Runs
    initial: int = 0


class DataflowError(Exception):
    """An inconsistent or deadlocking graph; names the channel and the actors involved."""

    def __init__(self, message: str, channel: str | None = None, actors: tuple[str, ...] = ()):
        super().__init__(message)
        self.channel = channel
        self.actors = actors


def repetition_vector(phases: dict[str, int], edges: list[Edge]) -> dict[str, int]:
    """r_i: how many full phase cycles actor i runs per graph iteration (minimal, per component).

    Raises DataflowError naming the first channel whose balance equation contradicts the others.
    """
    adjacency: dict[str, list[tuple[str, Fraction, Edge]]] = {a: [] for a in phases}
    for e in edges:
        for end in (e.src, e.dst):
            if end not in phases:
                raise DataflowError(f"channel @{e.name} references unknown actor @{end}", e.name,
                                    (end,))
        p, c = rle.total(e.prod), rle.total(e.cons)
        if p == 0 and c == 0:
            continue  # carries nothing: no constraint
        if p == 0 or c == 0:
            raise DataflowError(
                f"channel @{e.name} from @{e.src} to @{e.dst} is unbalanced: one cycle of @{e.src} "
                f"produces {p} tokens and one cycle of @{e.dst} consumes {c}", e.name, (e.src, e.dst))
        # r_dst = r_src * p / c
        adjacency[e.src].append((e.dst, Fraction(p, c), e))
        adjacency[e.dst].append((e.src, Fraction(c, p), e))
    rate: dict[str, Fraction] = {}
    result: dict[str, int] = {}
    for root in phases:
        if root in rate:
            continue
        component = [root]
        rate[root] = Fraction(1)
        todo = deque([root])
        while todo:
            a = todo.popleft()
            for b, factor, e in adjacency[a]:
                want = rate[a] * factor
                if b not in rate:
                    rate[b] = want
                    component.append(b)
                    todo.append(b)
                elif rate[b] != want:
                    raise DataflowError(
                        f"inconsistent graph: channel @{e.name} from @{e.src} to @{e.dst} "
                        f"({rle.total(e.prod)} tokens produced per cycle of @{e.src}, "
                        f"{rle.total(e.cons)} consumed per cycle of @{e.dst}) contradicts the rates "
                        "fixed by the other channels", e.name, (e.src, e.dst))
        scale = math.lcm(*(rate[a].denominator for a in component))
        ints = [int(rate[a] * scale) for a in component]
        g = math.gcd(*ints)
        for a, v in zip(component, ints):
            result[a] = v // g
    return result


def firings(phases: dict[str, int], r: dict[str, int]) -> dict[str, int]:
    """q_i = P_i * r_i: firings of each actor in one iteration."""
    return {a: phases[a] * r[a] for a in phases}


def check_live(phases: dict[str, int], edges: list[Edge], r: dict[str, int] | None = None) -> None:
    """Raise DataflowError naming a blocked actor and the channel it waits on unless one iteration
    (q_i firings of every actor) completes from the initial marking.

    When the channels between distinct actors form a DAG (every lowered DNN), upstream actors always
    complete, so the graph is live iff each self-loop is live on its own: an O(q) check per loop.
    Graphs with cycles are executed token by token.
    """
    r = r if r is not None else repetition_vector(phases, edges)
    q = firings(phases, r)
    for e in edges:
        if e.initial < 0:
            raise DataflowError(f"channel @{e.name} has {e.initial} initial tokens", e.name,
                                (e.src, e.dst))
    if _acyclic(phases, edges):
        for e in edges:
            if e.src == e.dst:
                _check_self_loop(e, phases[e.src], q[e.src])
        return
    _simulate(phases, edges, q)


def _acyclic(phases: dict[str, int], edges: list[Edge]) -> bool:
    indegree = dict.fromkeys(phases, 0)
    succ: dict[str, list[str]] = {a: [] for a in phases}
    for e in edges:
        if e.src != e.dst:
            indegree[e.dst] += 1
            succ[e.src].append(e.dst)
    ready = [a for a, d in indegree.items() if d == 0]
    seen = 0
    while ready:
        a = ready.pop()
        seen += 1
        for b in succ[a]:
            indegree[b] -= 1
            if indegree[b] == 0:
                ready.append(b)
    return seen == len(phases)


def _check_self_loop(e: Edge, period: int, q: int) -> None:
    prod, cons = rle.expand(e.prod), rle.expand(e.cons)
    tokens = e.initial
    for n in range(q):
        ph = n % period
        if tokens < cons[ph]:
            raise DataflowError(
                f"deadlock: actor @{e.src} blocks at firing {n} (phase {ph}) on its self-loop "
                f"@{e.name}: it needs {cons[ph]} tokens, the loop holds {tokens}", e.name, (e.src,))
        tokens += prod[ph] - cons[ph]


def _simulate(phases: dict[str, int], edges: list[Edge], q: dict[str, int]) -> None:
    tokens = {e.name: e.initial for e in edges}
    inputs: dict[str, list[tuple[Edge, rle.Indexed]]] = {a: [] for a in phases}
    outputs: dict[str, list[tuple[Edge, rle.Indexed]]] = {a: [] for a in phases}
    for e in edges:
        inputs[e.dst].append((e, rle.Indexed(e.cons)))
        outputs[e.src].append((e, rle.Indexed(e.prod)))
    fired = dict.fromkeys(phases, 0)
    todo = deque(phases)
    queued = set(phases)
    while todo:
        a = todo.popleft()
        queued.discard(a)
        start, period, ins, outs = fired[a], phases[a], inputs[a], outputs[a]
        n = start
        while n < q[a]:
            ph = n % period
            if any(tokens[e.name] < seq[ph] for e, seq in ins):
                break
            for e, seq in ins:
                tokens[e.name] -= seq[ph]
            for e, seq in outs:
                tokens[e.name] += seq[ph]
            n += 1
        fired[a] = n
        if n > start:
            for e, _ in outs:
                if e.dst not in queued and fired[e.dst] < q[e.dst]:
                    queued.add(e.dst)
                    todo.append(e.dst)
    stuck = [a for a in phases if fired[a] < q[a]]
    if stuck:
        a = stuck[0]
        ph = fired[a] % phases[a]
        for e, seq in inputs[a]:
            if tokens[e.name] < seq[ph]:
                raise DataflowError(
                    f"deadlock: actor @{a} stops after {fired[a]} of {q[a]} firings; phase {ph} "
                    f"needs {seq[ph]} tokens on channel @{e.name} from @{e.src}, which holds "
                    f"{tokens[e.name]} ({len(stuck)} actors blocked)", e.name, (e.src, a))
        raise DataflowError(f"deadlock: actor @{a} cannot complete its iteration", None, (a,))
