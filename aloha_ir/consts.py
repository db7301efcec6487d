"""Between `nn.const` ops and `ConstTensor` values (see weights.py for the three kinds)."""

from __future__ import annotations

import numpy as np
from xdsl.dialects.builtin import FloatAttr, StringAttr, TensorType, f32

from aloha_ir.dialects.nn import ConstOp, int_attr, shape_of
from aloha_ir.errors import IRVerifyError
from aloha_ir.weights import ConstTensor, WeightStore, c_float32


def const_tensor(op: ConstOp, store: WeightStore) -> ConstTensor:
    shape = shape_of(op.output)
    if op.splat is not None:
        return ConstTensor(shape, splat=op.splat.value.data)
    if op.seed is not None:
        mean = op.mean.value.data if op.mean is not None else 0.0
        std = op.std.value.data if op.std is not None else 1.0
        return ConstTensor(shape, random=(op.seed.value.data, mean, std))
    array = store[op.blob.data]
    if tuple(array.shape) != shape:
        raise IRVerifyError(f"weight blob '{op.blob.data}' has shape {list(array.shape)}, its "
                            f"nn.const says {list(shape)}", hint="the .weights.npz does not belong "
                                                                 "to this .mlir")
    return ConstTensor(shape, array=array)


_F32_CACHE: dict[float, FloatAttr] = {}


def _f32(value: float) -> FloatAttr:
    # f32 prints short and exact for float32 values (f64 would show 0.019999999552965164)
    value = float(np.float32(value))
    attr = _F32_CACHE.get(value)
    if attr is None:
        attr = _F32_CACHE[value] = FloatAttr(value, f32)
    return attr


def make_const(value: ConstTensor, store: WeightStore, hint: str = "w", element_type=f32) -> ConstOp:
    """An nn.const for `value`; dense arrays go to `store` under a key derived from `hint`."""
    props: dict = {}
    if value.splat is not None:
        props["splat"] = _f32(value.splat)
    elif value.random is not None:
        seed, mean, std = value.random
        props["seed"] = int_attr(seed)
        if mean:
            props["mean"] = _f32(mean)
        props["std"] = _f32(std)
    else:
        array = value.array
        assert array is not None
        props["blob"] = StringAttr(store.add(np.asarray(array, dtype=np.float32), hint))
    return ConstOp.create(result_types=[TensorType(element_type, value.shape)], properties=props)


def set_blob(op: ConstOp, store: WeightStore, array: np.ndarray, hint: str = "w") -> None:
    """Give `op` new values: its own blob is overwritten in place, a splat or seeded constant
    becomes a blob (the shape stays; the caller keeps it equal to the op's type)."""
    blob = op.properties.get("blob")
    if isinstance(blob, StringAttr) and blob.data in store:
        store.arrays[blob.data] = c_float32(array)
        return
    for k in ("splat", "seed", "mean", "std"):
        op.properties.pop(k, None)
    op.properties["blob"] = StringAttr(store.add(array, hint))
