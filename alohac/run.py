"""Running passes as the command line asks: shared by the driver's commands (compile, analyze,
opt, compare, explore-mapping): the --input-shape values, the instruments, the -p passes, the
--target flow with --bits/--opp/--mapping."""

from __future__ import annotations

import contextlib

from aloha_ir.errors import UsageError


def input_shapes(values: list[str] | None) -> dict[str, list[int]]:
    """The --input-shape options (NAME=d0,d1,...) as {input name: dims}."""
    shapes = {}
    for v in values or []:
        name, _, dims = v.rpartition("=")
        try:
            shapes[name] = [int(d) for d in dims.split(",")]
            if not name or min(shapes[name]) < 1:
                raise ValueError
        except ValueError:
            raise UsageError(f"--input-shape '{v}' must be NAME=d0,d1,... with positive dims"
                             ) from None
    return shapes


def instruments(args) -> dict:
    """The PassManager's instruments the command line asked for."""
    return {"time_passes": args.time_passes, "verify_full": args.verify_full,
            "print_ir_after_all": args.print_ir_after_all, "dump_dir": args.dump_dir}


def user_passes(text: str, default: str = "") -> list:
    """The -p pipeline as pass objects (the only pipeline text the driver reads); the
    command's default pipeline is subsumed by the target flow, so it gives none."""
    from aloha_ir.passmanager import PassManager
    if text.strip() in ("", default):
        return []
    return PassManager.parse(text).passes


def run_passes(args, module, passes: list):
    """Run `passes` (no target: the target flow has its own, `run_target`)."""
    from aloha_ir.passmanager import PassManager
    return PassManager(passes, **instruments(args)).run(module)


def mapping_file(args):
    """The --mapping file, checked against --target, the model, --bits and --opp (None if none)."""
    if not getattr(args, "mapping", None):
        return None
    if not args.target:
        raise UsageError("--mapping needs --target (the platform the mapping was made for)")
    from archdesc.loader import load_platform
    from explore.system.mapping_file import load_mapping
    m = load_mapping(args.mapping, load_platform(args.target).name, args.model)
    if args.bits and args.bits != m.bits:
        raise UsageError(f"--bits {args.bits}, but {args.mapping} was made for {m.bits} bits",
                         hint="drop --bits")
    if args.opp and args.opp != m.opp:
        raise UsageError(f"--opp {args.opp}, but {args.mapping} was made at operating point "
                         f"{m.opp}", hint="drop --opp")
    return m


def check_opp(args) -> None:
    """--opp names one of the target's operating points: a usage error now, with the declared
    ones, rather than a failure of the partition pass later."""
    if not getattr(args, "opp", None):
        return
    if not args.target:
        raise UsageError("--opp needs --target (an operating point of that platform)")
    from archdesc.loader import load_platform
    from aloha_ir.errors import did_you_mean
    platform = load_platform(args.target)
    if args.opp not in platform.operating_points:
        raise UsageError(f"--opp {args.opp}: {platform.name} has no such operating point",
                         hint=did_you_mean(args.opp, platform.operating_points, "declared")
                         if platform.operating_points else "it declares none; drop --opp")


def target_flow(args, timeline: bool = False, deploy: bool = True):
    """The --target flow of the command line (--bits, --opp, --mapping, --allow-overflow,
    --buffers);
    `deploy` (commands that generate code) binds it to the backend (--backend, else the
    platform's; the generic one when that is not registered), whose passes quantize a float model
    bound for a platform that computes in fixed point (with --data)."""
    from archdesc.loader import load_platform
    from flows.target import TargetFlow
    check_opp(args)
    m = mapping_file(args)
    platform = load_platform(args.target)
    backend = None
    if deploy:
        from backends.api import Backend
        from backends.registry import registered
        backend = registered().get(getattr(args, "backend", None) or platform.backend, Backend)
    bits, opp = (args.bits or 0, args.opp or "") if m is None else (m.bits, m.opp or "")
    return TargetFlow(platform, bits, opp, None if m is None else m.placement(args.mapping),
                      args.allow_overflow, timeline, backend, getattr(args, "data", None) or "",
                      getattr(args, "buffers", None) or "schedule")


def run_target(args, module, user: list | tuple = (), timeline: bool = False,
               deploy: bool = True):
    """Run the --target flow with the user's passes merged in; returns its TargetReport."""
    flow = target_flow(args, timeline, deploy)
    if flow.placement is not None and {p.name for p in user} & flow.PLACED:
        # the flow refuses it in its own words (TargetFlow.passes); here in the flags'
        raise UsageError("--mapping decides partition and map; the pipeline names them too",
                         hint="drop them from -p, or drop --mapping")
    return flow.run(module, user=user, **instruments(args))


@contextlib.contextmanager
def in_flags(flags: dict[str, str]):
    """Within: a UsageError about a library parameter (its `where`, a key of `flags`) names the
    command's flag for it instead (the library speaks its API's words)."""
    try:
        yield
    except UsageError as e:
        if e.where in flags:
            e.where = flags[e.where]
            e.args = (e.one_line(),)
        raise
