"""`host`: portable C99 + pthreads for the build machine (the host-cpu platform).

The executable proof of the pipeline: the common templates (backends/templates) as they are, with
the float and fixed-point kernel library. Its output must match onnxruntime (float) and the
bit-exact fixed-point reference (quantized)."""

from __future__ import annotations

from backends.api import Backend


class HostBackend(Backend):
    name = "host"
    default_platform = "host-cpu"
    description = "portable C99 + pthreads: one thread per core, float and fixed-point kernels"
