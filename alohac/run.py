"""Running a pipeline as the command line asks: shared by the driver's commands (compile, analyze,
opt, compare, explore-mapping)."""

from __future__ import annotations

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


def pass_manager(args, pipeline: str):
    """The PassManager for `pipeline` with the instruments the command line asked for."""
    from aloha_ir.passmanager import PassManager
    return PassManager.parse(pipeline, time_passes=args.time_passes, verify_full=args.verify_full,
                             print_ir_after_all=args.print_ir_after_all, dump_dir=args.dump_dir)


def run_pipeline(args, module, pipeline: str):
    """Run `pipeline` with the --target platform (if any) in the context."""
    from aloha_ir.context import make_context
    from aloha_ir.errors import InputFileError, PassError
    ctx = make_context()
    if getattr(args, "target", None):
        from archdesc.loader import load_platform
        ctx.target = load_platform(args.target)
    try:
        return pass_manager(args, pipeline).run(module, ctx)
    except PassError as e:
        # what the mapping file decides fails in these two passes (their messages name them)
        if getattr(args, "mapping", None) and e.message.startswith(("partition:", "map:")):
            raise InputFileError(f"does not fit {args.model}: {e.message}", where=args.mapping,
                                 hint=(f"{e.hint}; " if e.hint else "") + "make a mapping for "
                                 "this model with alohac explore-mapping") from None
        raise
