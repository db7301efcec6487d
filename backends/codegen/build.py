"""build_view: walk the mapped csdf graph once and return the CodegenView its templates render."""

from __future__ import annotations

import math

from aloha_ir import fixedpoint as fp
from aloha_ir import rle
from aloha_ir.analysis import repetition
from aloha_ir.dialects import csdf, nn
from aloha_ir.errors import UnsupportedError
from backends.codegen.context import BuildContext
from backends.codegen.kernels import check_kernels, kernel_record
from backends.codegen.names import c_identifier
from backends.codegen.ports import input_ports, mark_batch_items
from backends.codegen.threads import choose_runtime, flat_thread, unit_threads
from backends.codegen.view import ActorView, CodegenView, FifoView, IoView
from passes.analyze_memory import BOUNDARY_KINDS, Deployment, channel_storage


def build_view(module, platform, *, weights: str = "file",
               fifo_override: dict[str, int] | None = None,
               runtime: str = "threads") -> CodegenView:
    graphs = csdf.csdf_graphs(module)
    if len(graphs) != 1:
        raise UnsupportedError(f"code generation needs one mapped csdf.graph, found {len(graphs)}",
                               hint="compile a single network")
    graph = graphs[0]
    if graph.channels()[0].buffer is None:
        raise UnsupportedError("the csdf graph has no FIFO sizes", hint="run analyze-schedule")
    unordered = [a.sym_name.data for a in graph.actors() if a.order is None]
    if unordered:  # none: never scheduled; some: a transform added actors after the schedule
        raise UnsupportedError(f"the csdf graph has no static order (csdf.order) for actor "
                               f"@{unordered[0]}", hint="run analyze-schedule")
    b = BuildContext(module, graph)
    check_kernels(graph, b.blocks)
    phases, edges = graph.dataflow_graph()
    q = repetition(phases, edges).firings
    for a, n in q.items():
        if n != phases[a]:
            raise UnsupportedError(f"actor @{a} fires {n} times per frame over {phases[a]} phases;"
                                   " the generator handles one phase cycle per frame")
    datatype = graph.datatype or platform.default_datatype
    if not b.fixed and datatype != "f32":
        raise UnsupportedError(f"the model is float but {platform.name} deploys {datatype} (it has "
                               "no float data type): the generated code would not be what the "
                               "report predicts", hint="quantize it first (the quantize pass), or "
                               "compile it with a TargetFlow bound to this backend, whose "
                               "quantize-for-target does (alohac compile --target)")
    dep = Deployment(datatype, b.fixed)
    actor_map = graph.actor_map()
    fifo_override = dict(fifo_override or {})
    fifos, fifo_index = [], {}
    for i, ch in enumerate(graph.channels()):
        name = ch.sym_name.data
        analysed = ch.buffer
        cap = fifo_override.pop(name, analysed)
        most = max(max(rle.expand(ch.prod_runs)), max(rle.expand(ch.cons_runs)))
        storage, per_token = channel_storage(ch, actor_map, b.blocks, dep)
        fifos.append(FifoView(i, name, c_identifier(name, i, "f"), ch.src_name, ch.dst_name, cap,
                              analysed, ch.is_self_loop, most, storage, per_token))
        fifo_index[name] = i
    if fifo_override:
        raise UnsupportedError(f"no channel {', '.join(fifo_override)} to resize")
    actors: list[ActorView] = []
    index = {a.sym_name.data: i for i, a in enumerate(graph.actors())}
    inputs: dict[str, ActorView] = {}  # by their nn.input's name
    outputs: dict[str, ActorView] = {}  # by the model output's port
    for i, actor in enumerate(graph.actors()):
        name = actor.sym_name.data
        block = actor.block_in(b.blocks)
        kind = actor.kind.data
        if block is not None and kind not in BOUNDARY_KINDS and actor.reads is None:
            raise UnsupportedError(f"actor @{name} has no record of how it reads its inputs "
                                   "(csdf.reads)",
                                   hint="lower the nn graph again with convert-nn-to-csdf")
        outs = [fifo_index[c.sym_name.data] for c in graph.channels()
                if c.src_name == name and not c.is_self_loop]
        prods = {tuple(rle.expand(c.prod_runs)) for c in graph.channels()
                 if c.src_name == name and not c.is_self_loop}
        if len(prods) > 1:
            raise UnsupportedError(f"actor @{name} produces differently on its outputs")
        prod = list(prods.pop()) if prods else [0] * actor.phase_count
        ports = input_ports(graph, actor, fifo_index)
        for p in ports:
            p.storage, p.per_token = fifos[p.fifo].storage, fifos[p.fifo].per_token
        view = ActorView(i, name, c_identifier(name, i), kind, "", actor.pe or "",
                         actor.pe_kind or "", actor.phase_count, ports, outs, prod,
                         block=actor.block_name, cost_s=actor.cost_s or 0.0,
                         work=rle.total(actor.work_runs))
        if outs:
            view.out, view.out_per_token = fifos[outs[0]].storage, fifos[outs[0]].per_token
        kernel_record(b, view, actor, block)
        mark_batch_items(view, actor, block)
        if kind in ("input", "output"):
            (inputs if kind == "input" else outputs)[actor.block_name] = view
        actors.append(view)
    choice = None
    if runtime == "static":
        threads = flat_thread(graph, index)
    else:
        threads = unit_threads(graph, actors, fifos, index, platform)
    if runtime == "auto":
        handover_s = max([pe.handover_s for pe in platform.pes if pe.kind == "cpu"] + [0.0])
        flat = flat_thread(graph, index)
        choice = choose_runtime(actors, fifos, threads, flat, graph.period_s or 0.0, handover_s)
        runtime = choice.runtime
        if runtime == "static":
            threads = flat
    return CodegenView(
        graph.sym_name.data.removesuffix("_csdf"), platform.name, datatype, b.fixed, weights,
        actors, fifos, threads, b.weights.tensors, _inputs(b, inputs),
        _outputs(b, outputs), graph.latency_s or 0.0, graph.period_s or 0.0, runtime=runtime,
        runtime_choice=choice)


def _inputs(b: BuildContext, by_block: dict[str, ActorView]) -> list[IoView]:
    """The program's inputs in the model's input order (the nn graph's nn.input ops), each from
    the input actor that lowers it (`by_block`: input actors by their block's name)."""
    ops = [op for op in b.nn_graph.ops if isinstance(op, nn.InputOp)]
    return _ios("in", [(nn.block_label(op), op.port.data, op.output) for op in ops], by_block)


def _outputs(b: BuildContext, by_port: dict[str, ActorView]) -> list[IoView]:
    """The program's outputs in the model's output order (nn.output's operands), each from the
    output actor that names its port (`by_port`)."""
    out = b.nn_graph.ops.last
    ports = [p.data for p in out.ports.data]
    return _ios("out", [(p, p, v) for p, v in zip(ports, out.inputs)], by_port)


def _ios(way: str, model: list[tuple[str, str, object]], streamed: dict[str, ActorView]
         ) -> list[IoView]:
    """The IoViews of the model's inputs (`way` "in") or outputs ("out"), in its order: `model`
    gives each one's key into `streamed` (the boundary actors), its port and its value. Named
    g_in / IN.bin, or g_in0 / IN0.bin ... when there are several."""
    keys = [key for key, _, _ in model]
    if sorted(keys) != sorted(streamed):
        raise UnsupportedError(f"the csdf graph's {way}put actors stream {sorted(streamed)}, the "
                               f"model's {way}puts are {keys}",
                               hint="lower the nn graph again with convert-nn-to-csdf")
    ios = []
    for i, (key, port, v) in enumerate(model):
        n = str(i) if len(model) > 1 else ""
        shape = nn.shape_of(v)
        ios.append(IoView(streamed[key].index, port, shape, math.prod(shape), fp.format_of(v),
                          f"g_{way}{n}", f"{way.upper()}{n}.bin"))
    return ios
