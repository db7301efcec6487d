/* Host emulation of the NEURAghe middleware API (neuraghe_api.h), built on aloha_kernels.
 *
 * How the emulated CE computes a job's row share (output row oy, maps [co_lo, co_hi)):
 * - channel padding is real: ng_stage_input copies the firing's input rows into a PL buffer whose
 *   maps are padded with zeros to IF (the CE granularity), the weights are copied at init into a
 *   [OF_pad][IF_pad][kh][kw] tensor with zero rows and columns, and the CE computes all N_ROW maps
 *   of every output group, padded ones included, into a row of OF_pad maps; only the layer's own
 *   maps are copied out. The padded maps and channels add zero terms, so the results are the
 *   unpadded ones exactly (the tests compare them bit for bit with the reference);
 * - bias, ReLU (or the layer's fused activation) and requantisation (shift qf, or the per-channel
 *   shifts) are fused: a share is one aloha_conv_row_q / _f32 call over the job's maps;
 * - stride: the hardware computes the stride-1 rows of the tile (r_lo..r_hi) and subsamples; the
 *   emulation computes the kept rows and columns directly at stride s, which gives identical
 *   values (subsampling keeps exactly the stride-1 outputs at multiples of s);
 * - a split kernel (7x7 as four 5x5 jobs) computes partial sums without bias and activation over
 *   the job's taps (ky0.., kx0..; the 5x5's zero taps beyond the 7x7 are skipped: they add 0) in
 *   int64 (fixed point) or float; ng_arm_merge sums them, adds the bias and requantises, so the
 *   result equals the unsplit convolution exactly in fixed point.
 * Carrying the partials: the CE actor's FIFO row is a marker (word 0 = the row's running number,
 * the rest 0) and the partial sums themselves go to a side ring of FIFO capacity in rows + 2 slots
 * indexed by the running row number (DDR buffers the CE writes and the ARM reads). The FIFO's
 * back-pressure makes it safe: when the CE writes row n, rows up to n - 1 are in the FIFO or read,
 * at most `capacity` rows wait in the FIFO and the merge works on at most one row it took out, so
 * rows n - capacity - 1 .. n are the only ones alive: capacity + 2 slots. The merge checks the
 * marker and stops with an error if a row arrives out of order.
 * - the "PL controller" runs the slots in ring order, on the CE thread, when the ARM side waits
 *   (ng_ce_wait) or submits into a full ring. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aloha_rt.h"
#include "neuraghe_api.h"

static void *ng_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        aloha_fatal("neuraghe: out of memory");
    return p;
}

void ng_ce_init(ng_ce_t *ce, const char *name)
{
    memset(ce, 0, sizeof *ce);
    ce->name = name;
}

void ng_ce_clock(ng_ce_t *ce, int on)
{
    if (on && !ce->clock_on)
        ce->ungated++;
    if (!on && ce->clock_on) {
        if (ce->pending)
            aloha_fatal("neuraghe: %s gated with %d jobs pending", ce->name, ce->pending);
        ce->gated++;
    }
    ce->clock_on = on;
}

void ng_layer_init(ng_layer_t *l)
{
    const aloha_conv_t *g = &l->geom;
    size_t taps = (size_t)g->kh * g->kw, p, c, ow = (size_t)g->ow;
    const uint32_t *w = (const uint32_t *)l->w;
    if (l->padded) {
        uint32_t *wp = ng_calloc((size_t)l->of_pad * l->if_pad * taps, 4);
        for (p = 0; p < (size_t)l->cout; p++)
            for (c = 0; c < (size_t)g->cin; c++)
                memcpy(wp + (p * l->if_pad + c) * taps, w + ((l->co_base + p) * g->cin + c) * taps,
                       taps * 4);
        l->w_pad = wp;
        if (l->bias) {
            uint32_t *bp = ng_calloc(l->of_pad, 4);
            memcpy(bp, (const uint32_t *)l->bias + l->co_base, (size_t)l->cout * 4);
            l->b_pad = bp;
        }
        l->geom_pad = *g;
        l->geom_pad.cin = l->if_pad;
        l->geom_pad.cout = l->of_pad;
        if (l->fixed) {
            l->rq_pad = *l->rq;
            if (l->rq->shift) {
                l->shift_pad = ng_calloc(l->of_pad, sizeof(int32_t));
                for (p = 0; p < (size_t)l->of_pad; p++)
                    l->shift_pad[p] = l->rq->shift[l->co_base + (p < (size_t)l->cout ? p : 0)];
                l->rq_pad.shift = l->shift_pad;
            }
        }
        l->in_stage = ng_calloc((size_t)l->in_stage_rows * l->if_pad * g->w, 4);
    }
    l->out_stage = ng_calloc((size_t)l->of_pad * ow, 4);
    if (l->merges > 1)
        l->partials = ng_calloc((size_t)l->ring_slots * l->merges * l->of_pad * ow,
                                l->fixed ? sizeof(int64_t) : sizeof(float));
}

void ng_layer_free(ng_layer_t *l)
{
    if (l->dump)
        fclose(l->dump);
    l->dump = NULL;
    free(l->w_pad);
    free(l->b_pad);
    free(l->shift_pad);
    free(l->in_stage);
    free(l->out_stage);
    free(l->partials);
    l->w_pad = l->b_pad = l->in_stage = l->out_stage = l->partials = NULL;
    l->shift_pad = NULL;
}

void ng_stage_input(ng_layer_t *l, const aloha_win_t *x)
{
    int r, c;
    if (!l->padded) {
        l->win = *x;
        return;
    }
    if (x->rows > l->in_stage_rows)
        aloha_fatal("neuraghe: %s: %d input rows exceed the PL buffer", l->name, x->rows);
    for (r = 0; r < x->rows; r++)
        for (c = 0; c < x->c; c++)  /* maps c .. if_pad - 1 stay zero from ng_layer_init */
            memcpy((uint32_t *)l->in_stage + ((size_t)r * l->if_pad + c) * x->w,
                   (const uint32_t *)x->p + ((size_t)r * x->c + c) * x->w, (size_t)x->w * 4);
    l->win = (aloha_win_t){ l->in_stage, x->base, x->rows, l->if_pad, x->h, x->w };
}

/* the partial sums of a split kernel: the job's taps only, no bias, no activation */
static void partial_row(const ng_layer_t *l, const ng_job_t *j, int oy, void *out)
{
    const aloha_conv_t *g = &l->geom_pad;
    const aloha_win_t *x = &l->win;
    int co, ox, c, ky, kx;
    for (co = j->co_lo; co < j->co_hi; co++)
        for (ox = 0; ox < g->ow; ox++) {
            int64_t qacc = 0;
            float facc = 0.0f;
            for (c = 0; c < g->cin; c++)
                for (ky = j->ky0; ky < j->ky0 + j->kh; ky++) {
                    int iy = oy * g->sh - g->pt + ky * g->dh;
                    size_t wrow = (((size_t)co * g->cin + c) * g->kh + ky) * g->kw;
                    size_t xrow;
                    if (iy < 0 || iy >= g->h)
                        continue;
                    if (iy < x->base || iy >= x->base + x->rows)
                        aloha_fatal("neuraghe: %s: row %d not in the window", l->name, iy);
                    xrow = ((size_t)(iy - x->base) * x->c + c) * x->w;
                    for (kx = j->kx0; kx < j->kx0 + j->kw; kx++) {
                        int ix = ox * g->sw - g->pl + kx * g->dw;
                        if (ix < 0 || ix >= g->w)
                            continue;
                        if (l->fixed)
                            qacc += (int64_t)((const int32_t *)x->p)[xrow + ix]
                                * ((const int32_t *)l->w_pad)[wrow + kx];
                        else
                            facc += ((const float *)x->p)[xrow + ix]
                                * ((const float *)l->w_pad)[wrow + kx];
                    }
                }
            if (l->fixed)
                ((int64_t *)out)[(size_t)co * g->ow + ox] = qacc;
            else
                ((float *)out)[(size_t)co * g->ow + ox] = facc;
        }
}

static void ce_execute(ng_slot_t *s)
{
    ng_layer_t *l = s->layer;
    const ng_job_t *j = s->job;
    int ow = l->geom.ow;
    int base = l->padded ? 0 : l->co_base;
    l->shares++;
    if (s->oy == j->oy_hi - 1)
        l->jobs_done++;
    if (l->merges > 1)
        partial_row(l, j, s->oy, s->out);
    else if (l->fixed)
        aloha_conv_row_q(&l->win, l->padded ? l->w_pad : l->w, l->padded ? l->b_pad : l->bias,
                         l->padded ? &l->geom_pad : &l->geom, l->padded ? &l->rq_pad : l->rq,
                         s->oy, base + j->co_lo, base + j->co_hi,
                         (int32_t *)s->out + (size_t)j->co_lo * ow);
    else
        aloha_conv_row_f32(&l->win, l->padded ? l->w_pad : l->w, l->padded ? l->b_pad : l->bias,
                           l->padded ? &l->geom_pad : &l->geom, l->act, s->oy, base + j->co_lo,
                           base + j->co_hi, (float *)s->out + (size_t)j->co_lo * ow);
    s->run = 0;  /* the PL controller clears `run` */
}

static void run_oldest(ng_ce_t *ce)
{
    ng_slot_t *s = &ce->ring[ce->head];
    if (!s->run)
        aloha_fatal("neuraghe: %s: ring slot %d pending without run", ce->name, ce->head);
    ce_execute(s);
    ce->head = (ce->head + 1) % NG_RING_SLOTS;
    ce->pending--;
    ce->executed++;
}

void ng_ce_submit(ng_ce_t *ce, ng_layer_t *l, const ng_job_t *job, int oy, void *out)
{
    ng_slot_t *s;
    if (!ce->clock_on)
        aloha_fatal("neuraghe: job submitted to %s while its clock is gated", ce->name);
    if (ce->pending == NG_RING_SLOTS) {
        ce->ring_full_waits++;
        run_oldest(ce);
    }
    s = &ce->ring[(ce->head + ce->pending) % NG_RING_SLOTS];
    s->layer = l;
    s->job = job;
    s->oy = oy;
    s->out = out;
    s->run = 1;
    ce->pending++;
    ce->submitted++;
}

void ng_ce_wait(ng_ce_t *ce)
{
    while (ce->pending)
        run_oldest(ce);
}

/* the layer's own maps of each job's partial sums of one ring slot, [merges][cout][ow] */
static void dump_partials(const ng_layer_t *l, size_t slot)
{
    size_t ow = (size_t)l->geom.ow, row = (size_t)l->of_pad * ow, i;
    int k;
    for (k = 0; k < l->merges; k++)
        for (i = 0; i < (size_t)l->cout * ow; i++) {
            size_t at = (slot * l->merges + k) * row + i;
            float v = l->fixed ? (float)((const int64_t *)l->partials)[at]
                               : ((const float *)l->partials)[at];
            if (fwrite(&v, sizeof v, 1, l->dump) != 1)
                aloha_fatal("neuraghe: %s: cannot write its debug dump", l->name);
        }
}

void ng_ce_row(ng_layer_t *l, const aloha_win_t *x, int oy, void *out)
{
    int k, ow = l->geom.ow;
    size_t row = (size_t)l->of_pad * ow;
    size_t slot = l->merges > 1 ? (size_t)(l->rows_in % l->ring_slots) : 0;
    ng_stage_input(l, x);
    for (k = 0; k < l->njobs; k++) {
        const ng_job_t *j = &l->jobs[k];
        size_t at = (slot * l->merges + j->sub) * row;
        void *dst = l->out_stage;
        if (oy < j->oy_lo || oy >= j->oy_hi)
            continue;
        if (l->merges > 1)
            dst = l->fixed ? (void *)((int64_t *)l->partials + at)
                           : (void *)((float *)l->partials + at);
        ng_ce_submit(l->ce, l, j, oy, dst);
    }
    ng_ce_wait(l->ce);
    if (l->merges > 1 && l->dump)
        dump_partials(l, slot);
    if (l->merges > 1) {  /* the FIFO row is the marker; the partials are in the side ring */
        memset(out, 0, (size_t)l->cout * ow * 4);
        ((uint32_t *)out)[0] = (uint32_t)l->rows_in;
    } else {  /* de-interlace: the layer's own maps, padded maps dropped */
        memcpy(out, l->out_stage, (size_t)l->cout * ow * 4);
    }
    l->rows_in++;
}

void ng_arm_merge(ng_layer_t *l, const void *marker, int oy, void *out)
{
    int co, ox, k, ow = l->geom.ow;
    size_t row = (size_t)l->of_pad * ow;
    size_t slot = (size_t)(l->rows_out % l->ring_slots);
    if (((const uint32_t *)marker)[0] != (uint32_t)l->rows_out)
        aloha_fatal("neuraghe: %s: merge expected row %ld, the FIFO carries %u", l->name,
                    l->rows_out, ((const uint32_t *)marker)[0]);
    for (co = 0; co < l->cout; co++)
        for (ox = 0; ox < ow; ox++) {
            size_t at = (size_t)co * ow + ox;
            int ch = l->co_base + co;  /* absolute map: the layer's bias and shifts */
            if (l->fixed) {
                const int64_t *p = (const int64_t *)l->partials + slot * l->merges * row;
                int64_t acc = 0;
                for (k = 0; k < l->merges; k++)
                    acc += p[k * row + at];
                if (l->bias)
                    acc += ((const int32_t *)l->bias)[ch];
                ((int32_t *)out)[at] = aloha_requant(acc, ch, l->rq);
            } else {
                const float *p = (const float *)l->partials + slot * l->merges * row;
                float v = 0.0f;
                for (k = 0; k < l->merges; k++)
                    v += p[k * row + at];
                if (l->bias)
                    v += ((const float *)l->bias)[ch];
                ((float *)out)[at] = aloha_act1_f32(v, l->act);
            }
        }
    (void)oy;
    l->merged_rows++;
    l->rows_out++;
}

void ng_report(ng_layer_t *const *layers, int nlayers, const ng_ce_t *ces, int nces, long frames)
{
    int i;
    if (!getenv("ALOHA_PLATFORM_LOG"))
        return;
    for (i = 0; i < nlayers; i++) {
        const ng_layer_t *l = layers[i];
        fprintf(stderr, "neuraghe: layer %s on %s: %d CE jobs per frame (%d tile(s) x %d output "
                "group(s) of %d maps x %d sub-job(s); IF %d, OF %d); %ld jobs completed, %ld row "
                "shares over %ld frame(s)", l->name, l->ce->name, l->njobs, l->tiles,
                l->of_pad / l->n_row, l->n_row, l->merges, l->if_pad, l->of_pad, l->jobs_done,
                l->shares, frames);
        if (l->merges > 1)
            fprintf(stderr, "; %ld rows merged on the ARM", l->merged_rows);
        fprintf(stderr, "\n");
    }
    for (i = 0; i < nces; i++)
        fprintf(stderr, "neuraghe: %s: %ld row shares submitted, %ld executed, %ld waits on a "
                "full ring of %d slots; clock gated %ld time(s), ungated %ld time(s)\n",
                ces[i].name, ces[i].submitted, ces[i].executed, ces[i].ring_full_waits,
                NG_RING_SLOTS, ces[i].gated, ces[i].ungated);
}
