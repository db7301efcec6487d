"""The codegen view: the mapped csdf graph as plain data a C template can render.

Templates never walk the IR; this package does, once (build.py), and hands them lists of the
plain objects of view.py. It reads what the IR records and runs neither the lowering nor the
schedule again: a graph without the lowering's row plans or analyze-schedule's FIFO sizes and
static order is refused (UnsupportedError naming the pass to run).

- `fifos`: every csdf channel with its capacity = the `buffer` analyze-schedule wrote (tokens);
- `actors`: per actor its input ports (the FIFO it reads, its reuse self-loop, per firing how many
  rows it reads new, takes back from the loop and puts into it: the row calculus of the row plan
  the lowering recorded on the channel, `rows` and `shape`, and on the actor, `reads`, which the
  csdf verifier has checked against the rates; ports.py), its output FIFOs with the tokens
  produced per firing, and a `kernel` record (which kernel, its geometry, weights, fused activation or
  requantisation: kernels/, one record builder per nn op class);
- `threads`: one per processing unit (the boundary actors the mapping leaves unplaced -- input,
  output, gather -- join the nearest programmable unit's), each with its static order for one
  frame: the per-unit firing order of the one-frame self-timed schedule, as analyze-schedule
  recorded it on the actors (`order`: each firing's position in the start order), run-length
  encoded as (actor, firings) runs (threads.py); with the static-order runtime
  (`runtime="static"`, a microcontroller's: no pthreads) one thread whose order is every firing of
  the frame in that start order;
- `tensors`: the weights blob (weights.py), every tensor in its storage type
  (aloha_ir.fixedpoint.storage_of: float32, or int8/int16/int32 integers of the fixed-point
  formats, biases and per-channel shifts int32 in their accumulator formats), written as
  weights.bin or embedded as C arrays (C identifiers and literals: names.py);
- `inputs`, `outputs`: the program's files, one per model input and then one per output in the
  model's order (build.py), each streamed by its input or output actor; with several outputs a
  frame has left once every output actor has written it;
- storage: every FIFO, window and output buffer holds the element type of the tensor it carries;
  conv and dense name their accumulator (int32 where fixedpoint.accumulator_of proves it enough);
  `memory()` is what the program allocates, part by part, which analyze-memory predicts (a
  per-item kernel's one-item copies of its windows and output, below, count as windows and
  output buffers).

A batch of N items is one frame, folded into the rows as the lowering folds it (a row of an
[N, C, H, W] tensor is N x C x W tokens): row y holds x[n][c][y][:] at (n * C + c) * W, the rows of
an [N * C, H, W] tensor. Kernels that treat channels independently (pooling, activations,
reshapes, softmax along C) run on the folded tensor as they are; kernels that mix the channels of
one item (conv, dense, elementwise with broadcasting, batch norm, concat, LRN, channel shuffle, the
gathers and merges of split actors) run once per item (`items`) on that item's slice of their
windows (analyze_memory.batch_items says which; a NEURAghe split kernel's CE actor and its merge
among them, so every item's partial sums go through the FIFO to the merge). A reshape across the
batch axis stays exact (rows are read back in NCHW order), and an op that would mix items in its
kernel (softmax or concat along N) has no kernel and is refused.

Why the static order and the FIFO sizes agree: the program is a Kahn network with blocking reads and
writes (a bounded FIFO is a data channel plus a credit channel), so whether it completes does not
depend on timing. The `buffer` on a channel is one of two sizes. By default analyze-schedule's:
running frame after frame in the one-frame schedule's order is one execution, and it needs no more
than that schedule's occupancy, which the analysed `buffer` covers (analyze-schedule takes the
larger of the one-frame and the stream occupancy). With size-buffers (TargetFlow buffers="minimal",
`alohac compile --buffers minimal`): the least capacities with which the threads as built here
(aloha_ir.threads) run for ever, at their best period, in a simulation of exactly this program --
each thread's static order repeated, a read freeing its space when the firing starts, a write
claiming it when the firing ends and waiting for room with its thread held (aloha_rt.c) -- which is
one execution of the program. Either way every run completes, whatever the real timing, and a FIFO
made smaller than a firing's own production fails at once.
"""

from backends.codegen.build import build_view
from backends.codegen.kernels import KERNEL_RECORDS
from backends.codegen.names import C_KEYWORDS, c_identifier
from backends.codegen.view import CodegenView

__all__ = ["C_KEYWORDS", "CodegenView", "KERNEL_RECORDS", "build_view", "c_identifier"]
