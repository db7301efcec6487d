/* NEURAghe middleware API, as the generated program uses it (modelled on neuraghe/NEURAghe's
 * ARM-side stack; hardware.md "What a generated middleware looks like").
 *
 * The ARM side owns PL-visible buffers, writes Convolution Engine (CE) job descriptors into a ring
 * of NG_RING_SLOTS slots in shared DDR, and polls for completion; the PL controller polls the ring,
 * runs a job and clears its `run` flag. A job is a tile of output rows x one group of N_ROW output
 * maps (x one sub-job of a split kernel: a 7x7 runs as four 5x5 jobs whose partial outputs an ARM
 * core merges). The CE fuses bias, ReLU and requantisation (shift by qf), and computes a strided
 * convolution at stride 1 and subsamples. Input maps are padded to the CE granularity (3 x N_COL
 * for 3x3, N_COL for 5x5) and output maps to multiples of N_ROW.
 *
 * The ARM cores (two on the Z-7045/Z-7020) run everything else: padding, the 7x7 merge, pooling,
 * adds, fully connected layers, (de)interlacing; the generated program runs those with the common
 * kernel library (aloha_kernels.h), one thread per core, synchronised through the FIFOs.
 *
 * No vendor SDK exists here: neuraghe_api_host.c emulates this API on the host (see there for how
 * each job is computed). ALOHA_PLATFORM_LOG set in the environment prints per-layer job counts
 * and the CE clock gating at the end of a run. */
#ifndef NEURAGHE_API_H
#define NEURAGHE_API_H

#include <stdint.h>

#include "aloha_kernels.h"

#define NG_RING_SLOTS 15

/* A CE job descriptor: the fields hardware.md lists, and where the job sits in its layer. */
typedef struct ng_job {
    int IF, OF;          /* input maps (padded to the CE granularity), output maps (N_ROW) */
    int IH, IW;          /* input rows of the tile (halo included) and input width */
    int FS_h, FS_w;      /* the native filter the CE runs: 3x3 or 5x5 */
    int MAX_OG;          /* output groups kept in the TCDM (software knob) */
    int relu;            /* fused ReLU (0 for the partial jobs of a split kernel) */
    int subsample;       /* stride: stride-1 output subsampled by this factor */
    int qf;              /* requantisation shift (-1: per-channel shifts of the layer) */
    int precision8;      /* 8-bit mode */
    int zero_padding;    /* zero padding of the layer */
    int oy_lo, oy_hi;    /* the tile: output rows [oy_lo, oy_hi) */
    int r_lo, r_hi;      /* the stride-1 rows the CE computes for them */
    int og;              /* output group */
    int co_lo, co_hi;    /* output maps of the job (padded numbering for group-1 layers) */
    int sub;             /* partial index of a split kernel, 0 otherwise */
    int ky0, kx0, kh, kw;/* the taps of the layer's kernel the job covers (zero taps skipped) */
} ng_job_t;

struct ng_ce;

/* One conv layer (an actor's output-map slice) on the CE: its job table. The CE reads the actor's
 * input rows and the layer's weights where the program keeps them (the emulation needs no copy:
 * the zero maps the job descriptors pad to add zero terms), fuses bias, activation and
 * requantisation, and writes the row into the actor's output buffer; the jobs of a split kernel
 * write their partial sums instead, which the FIFO carries to the merge. */
typedef struct ng_layer {
    const char *name;
    struct ng_ce *ce;
    int fixed, precision8;
    aloha_conv_t geom;          /* the layer (wtype, acc32: its weights' type and accumulator) */
    int co_base, cout;          /* the actor's slice: output maps [co_base, co_base + cout) */
    int if_pad, of_pad, n_row;  /* padded map counts, N_ROW (the job descriptors' view) */
    int padded;                 /* 1: maps padded to the CE granularity (group-1 layers) */
    const void *w;              /* the layer's weights [cout][cin/group][kh][kw] */
    const int32_t *qbias;       /* fixed point: bias in the accumulator's format, or NULL */
    const float *fbias;         /* float: bias, or NULL */
    const aloha_rq_t *rq;       /* fixed point: requantisation (absolute channel numbering) */
    const aloha_act_t *act;     /* float: fused activation */
    const ng_job_t *jobs;
    int njobs, tiles;
    int merges;                 /* partial outputs per output row (1: the CE finishes the row) */
    aloha_win_t win;            /* the firing's input rows the jobs read */
    /* counters */
    long shares, jobs_done, merged_rows;
} ng_layer_t;

typedef struct ng_slot {
    ng_layer_t *layer;
    const ng_job_t *job;
    int oy;
    void *out;
    volatile int run;
} ng_slot_t;

/* One CE: the ring of job slots, its clock and its counters. */
typedef struct ng_ce {
    const char *name;
    ng_slot_t ring[NG_RING_SLOTS];
    int head, pending;
    int clock_on;
    long submitted, executed, ring_full_waits, gated, ungated;
} ng_ce_t;

/* ---- CE ---------------------------------------------------------------------------------- */
void ng_ce_init(ng_ce_t *ce, const char *name);
/* clock gating: on = 1 before a frame's jobs, 0 once they are all done */
void ng_ce_clock(ng_ce_t *ce, int on);
/* hand the firing's input rows to the layer's jobs */
void ng_stage_input(ng_layer_t *l, const aloha_win_t *x);
/* write the row share (output row oy) of `job` into a ring slot; waits for the oldest slot when
 * all NG_RING_SLOTS are taken */
void ng_ce_submit(ng_ce_t *ce, ng_layer_t *l, const ng_job_t *job, int oy, void *out);
/* poll until every submitted job has completed */
void ng_ce_wait(ng_ce_t *ce);

/* One CE firing of output row oy: stage the input, submit the row share of every job whose tile
 * holds oy, wait; out receives the layer's cout maps ([cout][ow], the output's type), or for a
 * split kernel the partial sums [cout][ow][merges] (int32 with geom.acc32, else int64; float). */
void ng_ce_row(ng_layer_t *l, const aloha_win_t *x, int oy, void *out);

/* ---- ARM kernels ------------------------------------------------------------------------- */
/* the 7x7 merge: sum the partial sums of one row (as ng_ce_row wrote them), add the bias,
 * ReLU/requantise into out */
void ng_arm_merge(ng_layer_t *l, const void *partials, int oy, void *out);

/* ---- reporting --------------------------------------------------------------------------- */
/* with ALOHA_PLATFORM_LOG set: per-layer job summary and CE gating counts on stderr */
void ng_report(ng_layer_t *const *layers, int nlayers, const ng_ce_t *ces, int nces, long frames);

#endif /* NEURAGHE_API_H */
