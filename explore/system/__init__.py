"""System-level design-space exploration: how to partition and map one network on one platform.

The paper's system-level DSE (section 3.2.6) explores partitionings of the DNN actors into
sub-actors and mappings of them on the processing elements, coarse models first (AOW finds the
sweet spots) and a precise simulation to refine them (Sesame fine-tunes and verifies). Here:

- a design point (`Design`, space.py) is a partition plan (parts per splittable conv/dense
  actor, 1 = whole), a PE per actor (`ce` or `arm`: the actor, or all its parts, run there; none
  = the greedy rule's choice among all PEs), an allocation (the units the greedy rule may use:
  fewer processors) and an operating point when the platform declares several;
- the coarse model (estimate.py, a few ms on inception_v1 against ~1 s for the real pipeline)
  places every actor of the DAG the plan would give with the `map` pass's own function
  (passes.map.place_actor on a ListSchedule), without building IR, so a point's estimated
  assignment is the one `map` makes by construction. Then: latency = `pipelined_latency` (rows
  flow between units: an actor starts when its producers' first rows are out; the list
  schedule's own makespan, whole actors one after another, misranks the best points: measured in
  tests and the benchmark); period = the
  busiest unit's seconds per frame (no stream is faster); energy = analyze-energy's own formula
  (passes.analyze_energy.span_energy) over that period plus the link transfers; processors =
  units used;
- the search (search.py) is NSGA-II (pymoo) on an integer genome, minimising the three estimates,
  with the greedy default (auto partition, no pins, all units) seeded into the first population; the
  last quarter of the budget is a first-improvement local search from its fastest estimated point;
- the refinement (refine.py) runs the real pipeline (partition, map with the assignment,
  analyze-schedule, -memory, -energy, -processors) on the best `refine` estimated
  points: the self-timed latency and the stream's period and energy. The Pareto front, the greedy
  baseline and the chosen point are refined figures. The chosen point is the fastest refined point
  (ties by energy, then processors) among those that fit the platform's memories, and the fastest
  of all refined points when none fits (its `fits` is then false). The greedy point is refined too,
  so the chosen point is never slower than greedy *when greedy fits*; when greedy does not fit but
  another point does, the fitting point is chosen even if it is slower.

A mapping file (mapping_file.py, `aloha-mapping/1`, JSON) records the chosen point: the plan and
every actor's unit as the refined `map` assigned them (and the units the greedy rule may use), so
`alohac compile --mapping` reproduces its figures exactly; also whether it `fits` and the model's
input shapes it was made for (`inputs`, checked by load_mapping).
"""
