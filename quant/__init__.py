"""Quantization formats below passes: `quant.formats` (calibration ranges, format choice, the format
table) is shared by the quantize passes, the QDQ exporter and the executors, so none of them imports
another layer's module to get it."""
