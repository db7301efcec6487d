"""The flow job: the seeds' orchestrator, as a sequence of child jobs.

    explore (algorithm level: a Pareto front per scenario, its chosen point as ONNX)
      -> explore-mapping (system level: the chosen network's partitioning and mapping)
      -> compile (that mapping applied: report, IR, generated code)

The runner calls `advance` on a running flow at every tick: when its last stage succeeded the next
is submitted with the previous stage's outputs as its inputs (job:ID/PATH references), and when
the last stage is compile the flow succeeds with every stage's result. A stage that fails or is
cancelled ends the flow the same way. Stages go through the queue like any job, so a flow run
again with the same parameters is answered by the cache stage by stage.
"""

from __future__ import annotations

STAGES = ("explore", "explore-mapping", "compile")


def advance(queue, flow) -> None:
    """One step of the running flow job `flow` (a service.store.Job) on `queue` (the
    service.jobs.Queue that runs its stages)."""
    from service.kinds import FlowParams
    from service.resources import BadReference
    p = FlowParams.model_validate(flow.params)
    flow = queue.store.get(flow.id)  # with its children (a listing's rows have none)
    if flow is None or flow.state != "running":
        return
    children = [queue.store.get(c) for c in flow.children]
    children = [c for c in children if c is not None]
    if children and not children[-1].final:
        return
    if children and children[-1].state != "succeeded":
        last = children[-1]
        queue.fail(flow.id, f"stage {last.stage or last.kind} {last.state}"
                   + (f": {last.error}" if last.error else ""))
        return
    done = {c.stage: c for c in children}
    if len(children) == len(STAGES):
        queue.succeed(flow.id, {
            "stages": {c.stage: c.id for c in children},
            "chosen": done["explore"].result.get("chosen"),
            "mapping": done["explore-mapping"].result.get("chosen"),
            "figures": done["compile"].result})
        return
    stage = STAGES[len(children)]
    try:
        params = _stage_params(stage, p, done)
        queue.submit(stage, params, parent=flow.id, stage=stage, timeout=flow.timeout)
    except (BadReference, KeyError, TypeError) as e:
        queue.fail(flow.id, f"stage {stage} could not start: {getattr(e, 'message', e)}")


def _stage_params(stage: str, p, done: dict) -> dict:
    explore = p.explore
    if stage == "explore":
        return explore.model_dump(mode="json")
    scenario = p.scenario or next(iter(done["explore"].result["scenarios"]))
    model = f"job:{done['explore'].id}/scenarios/{scenario}.onnx"
    if stage == "explore-mapping":
        return {"model": model, "target": explore.target, "bits": explore.bits,
                "budget": p.mapping_budget, "refine": p.refine, "seed": explore.seed}
    return {"model": model, "target": explore.target,
            "mapping": f"job:{done['explore-mapping'].id}/mapping.json"}
