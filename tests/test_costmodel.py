"""The cost models' mechanisms, each against a hand computation on NEURAghe LOSA
(_neuraghe.arch, labels from hardware.md): a 4x4 CE of 27-multiplier SoPs at 140 MHz, 2 output
pixels per cycle, 16 cycles of pipeline fill per pass [E], 1.5 us per job [E], a 1 MiB TCDM, DMAs
of 0.8 GB/s for activations and for weights [C]; ARM cores at 800 MHz, 1.25 16-bit ops per cycle
[C][D], 4.26 GB/s [C], 1 us per call [E]. The report's "how" column says which mechanism bound."""

from __future__ import annotations

import pytest

from archdesc.costmodel import Layer, cost, merge_layer
from archdesc.loader import load_platform

LOSA = load_platform("neuraghe-losa")
CE, ARM = LOSA.pe("ce"), LOSA.pe("arm")
F_CE, JOB, FILL, DMA = 140e6, 1.5e-6, 16, 0.8e9
F_ARM, RATE, MEM, CALL = 800e6, 1.25, 4.26e9, 1e-6


def conv(cin, h, w, cout, k, stride=1, pad=0, batch=1) -> Layer:
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    return Layer("conv", cin, h, w, cout, ho, wo, (k, k), (stride, stride), (pad,) * 4,
                 macs=batch * cout * ho * wo * cin * k * k, params=cout * cin * k * k,
                 batch=batch)


def test_a_small_3x3_layer_is_dma_bound_and_pays_one_job():
    """3x3, 12 -> 4 maps, 8x8, pad 1: one input group (3 maps x 4 columns), one output group
    (4 rows). Streamed: 10 rows of 10 columns (the padded width), 2 pixels a cycle, + fill:
    66 cycles, + one job. DMA: 12 x 10 x 10 x 2 B in + 4 x 8 x 8 x 2 B out at 0.8 GB/s."""
    c = cost(LOSA, CE, conv(12, 8, 8, 4, 3, pad=1), "fixed16")
    compute = (10 * 10 / 2 + FILL) / F_CE + JOB
    transfer = (12 * 10 * 10 * 2 + 4 * 8 * 8 * 2) / DMA
    assert c.compute_s == pytest.approx(compute)
    assert c.transfer_s == pytest.approx(transfer)
    assert c.seconds == pytest.approx(max(compute, transfer)) and transfer > compute
    assert c.jobs == 1 and "DMA-bound" in c.note and "1 job(s)" in c.note


def test_channel_padding_to_the_grid():
    """13 input maps need two input groups of 12 (padded to 24), 5 output maps two output groups
    of 4: four passes of the same 66 cycles, two jobs (one per output group)."""
    c = cost(LOSA, CE, conv(13, 8, 8, 5, 3, pad=1), "fixed16")
    assert c.compute_s == pytest.approx(4 * (10 * 10 / 2 + FILL) / F_CE + 2 * JOB)
    assert "input maps padded 13->24, output maps padded 5->8" in c.note


def test_1x1_runs_as_a_zero_padded_3x3():
    """[C] a 1x1 kernel is a 3x3 with 8 zero taps: the same stream as a 3x3 over the same output
    (8 + 2 rows of 8 + 2 columns), 1/9 of it useful."""
    one = cost(LOSA, CE, conv(12, 8, 8, 4, 1), "fixed16")
    three = cost(LOSA, CE, conv(12, 8, 8, 4, 3, pad=1), "fixed16")
    assert one.compute_s == pytest.approx(three.compute_s)
    assert one.compute_s == pytest.approx((10 * 10 / 2 + FILL) / F_CE + JOB)
    assert one.note.startswith("1x1 as 1 x 3x3")


def test_stride_2_is_computed_at_stride_1_and_subsampled():
    """[C] stride s costs the stride-1 output: 4x the useful work at s = 2; only the DMA of the
    output shrinks (4 x 4 x 4 x 2 B)."""
    s2 = cost(LOSA, CE, conv(12, 8, 8, 4, 3, stride=2, pad=1), "fixed16")
    s1 = cost(LOSA, CE, conv(12, 8, 8, 4, 3, pad=1), "fixed16")
    assert s2.compute_s == pytest.approx(s1.compute_s)
    assert s2.transfer_s == pytest.approx((12 * 10 * 10 * 2 + 4 * 4 * 4 * 2) / DMA)
    assert "subsampled 2x2" in s2.note


def test_7x7_runs_as_four_5x5_jobs_and_a_merge_on_the_arm():
    """[C] 7x7 over 4 -> 4 maps, 8x8, pad 3: four 5x5 passes (5x5: one map per column, 4 columns)
    each streaming 12 rows of 12 columns; four jobs; the four partial outputs go out by DMA and an
    ARM adds them: 4 x 256 additions (1.25 per cycle at 800 MHz, or 4 x 256 + 256 elements of 2 B
    at 4.26 GB/s, whichever is longer) + one call."""
    layer = conv(4, 8, 8, 4, 7, pad=3)
    c = cost(LOSA, CE, layer, "fixed16")
    assert c.compute_s == pytest.approx(4 * (12 * 12 / 2 + FILL) / F_CE + 4 * JOB)
    assert c.transfer_s == pytest.approx((4 * 12 * 12 * 2 + 4 * (4 * 8 * 8 * 2)) / DMA)
    assert c.jobs == 4
    merge = cost(LOSA, ARM, merge_layer(layer, 4), "fixed16")
    n = 4 * 8 * 8
    assert merge.seconds == pytest.approx(max(4 * n / (RATE * F_ARM), (5 * n * 2) / MEM) + CALL)


def test_a_layer_larger_than_the_tcdm_is_tiled_with_halos():
    """384 -> 8 maps, 3x3, 96x96, pad 1. A row of input is 384 x 98 x 2 B = 75,264 B; with both
    output groups' 32-bit partial sums (2 x 4 x 96 x 4 B) a tile holds (1 MiB - 2 rows) / (75,264
    + 3,072) = 11 rows: 9 tiles, whose 8 inner borders stream 2 halo rows again (114 rows of 98
    columns), 32 input groups x 2 output groups passes, 18 jobs; each tile loads the weights again.
    Loading the input once for both output groups (2 per pass) is faster than once per group."""
    c = cost(LOSA, CE, conv(384, 96, 96, 8, 3, pad=1), "fixed16")
    tiles, rows_in, passes = 9, 95 + 3 + 8 * 2, 32 * 2
    compute = passes * (rows_in * 98 / 2 + FILL * tiles) / F_CE + 18 * JOB
    in_bytes, out_bytes, w_bytes = 384 * rows_in * 98 * 2, 8 * 96 * 96 * 2, 8 * 384 * 9 * 2
    transfer = max(w_bytes * tiles / DMA, (in_bytes + out_bytes) / DMA)
    assert (c.tiles, c.tile_rows, c.jobs) == (tiles, 11, 18)
    assert c.compute_s == pytest.approx(compute)
    assert c.seconds == pytest.approx(max(compute, transfer))
    assert "2 output groups per pass" in c.note


def test_8_bit_packs_two_macs_per_dsp_but_not_the_fill():
    """[C] 8-bit mode: 4 pixels a cycle; the pipeline fill and the job stay."""
    c = cost(LOSA, CE, conv(12, 8, 8, 4, 3, pad=1), "fixed8")
    assert c.compute_s == pytest.approx((10 * 10 / 4 + FILL) / F_CE + JOB)


def test_a_batch_is_one_pass_of_the_job_table_per_item():
    one = cost(LOSA, CE, conv(12, 8, 8, 4, 3, pad=1), "fixed16")
    three = cost(LOSA, CE, conv(12, 8, 8, 4, 3, pad=1, batch=3), "fixed16")
    assert three.seconds == pytest.approx(3 * one.seconds) and three.jobs == 3


def test_arm_dense_is_compute_bound_and_a_residual_add_memory_bound():
    """A 4096 -> 1000 dense: 2 x 4,096,000 ops at 1.25 x 800 MHz (8.19 ms) against 8.2 MB of
    weights at 4.26 GB/s (1.93 ms). A residual add of 1M elements: 1M ops (1 ms) against two
    inputs and an output of 2 B each (6 MB: 1.41 ms). Each + one call of 1 us."""
    dense = Layer("dense", 4096, 1, 1, 1000, 1, 1, macs=4096 * 1000,
                  params=4096 * 1000 + 1000, in_elems=4096, out_elems=1000)
    c = cost(LOSA, ARM, dense, "fixed16")
    assert c.seconds == pytest.approx(2 * 4096 * 1000 / (RATE * F_ARM) + CALL)
    assert c.note.startswith("compute-bound")
    n = 1 << 20
    add = Layer("add", work=n, in_elems=2 * n, out_elems=n)
    c = cost(LOSA, ARM, add, "fixed16")
    assert c.seconds == pytest.approx(3 * n * 2 / MEM + CALL)
    assert c.note.startswith("memory-bound")


def test_the_ces_of_a_multi_ce_platform_share_the_clusters_dmas():
    """ARRUBIU: two 4x2 CEs in one cluster, whose two DMAs and 1 MiB TCDM [C] they share: the
    .arch gives each CE half of each (0.4 GB/s, 512 KiB [D]), a static split (pessimistic when the
    other CE is idle). Compute: one input group of 3 x 2 maps, one output group of 4: 66 cycles
    and a job, as on one 4x4 CE; DMA at half the bandwidth."""
    arr = load_platform("neuraghe-arrubiu")
    ce = arr.pe("ce")
    assert ce.count == 2 and ce.grid == (4, 2)
    c = cost(arr, ce, conv(6, 8, 8, 4, 3, pad=1), "fixed16")
    assert c.compute_s == pytest.approx((10 * 10 / 2 + FILL) / F_CE + JOB)
    assert c.transfer_s == pytest.approx((6 * 10 * 10 * 2 + 4 * 8 * 8 * 2) / (DMA / 2))
