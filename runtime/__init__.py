"""Executors: run an nn graph below the passes that need to execute it.

`runtime.reference` is the numpy fixed-point oracle (bit-exact integer arithmetic); `runtime.torch`
holds the torch executors: the float module, its bit-exact fixed-point twin, training, attacks, metrics
and quantization-aware fine-tuning. Passes (quantize, prune, analyze-security) and backends import them;
they import only the IR, the quantization formats (`quant`) and the dataset loaders (`frontends`).
torch is imported only by `runtime.torch`, so the compiler core never loads it.
"""
