/* Host emulation of the NEURAghe middleware API (neuraghe_api.h), built on aloha_kernels.
 *
 * How the emulated CE computes a job's row share (output row oy, maps [co_lo, co_hi)):
 * - channel padding: the job descriptors carry the padded map counts (IF, OF) the hardware works
 *   with; the padded maps and channels add zero terms, so the emulation computes the layer's own
 *   maps from the actor's window and the layer's weights where the program keeps them (no copy),
 *   and the results equal the unpadded ones exactly (the tests compare them bit for bit);
 * - bias, ReLU (or the layer's fused activation) and requantisation (shift qf, or the per-channel
 *   shifts) are fused: a share is one aloha_conv_row_q / _f32 call over the job's maps;
 * - stride: the hardware computes the stride-1 rows of the tile (r_lo..r_hi) and subsamples; the
 *   emulation computes the kept rows and columns directly at stride s, which gives identical
 *   values (subsampling keeps exactly the stride-1 outputs at multiples of s);
 * - a split kernel (7x7 as four 5x5 jobs) computes partial sums without bias and activation over
 *   the job's taps (ky0.., kx0..; the 5x5's zero taps beyond the 7x7 are skipped: they add 0),
 *   exact in the accumulator the generator chose (int32 where the layer's fan-in and formats
 *   prove it cannot overflow, else int64; float for a float layer). The CE actor's output row is
 *   those partial sums, [cout][ow][merges], and the FIFO to the merge carries them (one token per
 *   output element; at batch N the actor and the merge run once per item, each item's row in
 *   turn); ng_arm_merge sums them, adds the bias and requantises, so the result equals
 *   the unsplit convolution exactly in fixed point.
 * - the "PL controller" runs the slots in ring order, on the CE thread, when the ARM side waits
 *   (ng_ce_wait) or submits into a full ring. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aloha_rt.h"
#include "neuraghe_api.h"

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

void ng_stage_input(ng_layer_t *l, const aloha_win_t *x)
{
    l->win = *x;
}

static void ce_execute(ng_slot_t *s)
{
    ng_layer_t *l = s->layer;
    const ng_job_t *j = s->job;
    const int ow = l->geom.ow;
    /* the job's maps of the actor's slice (padded maps beyond cout are zeros the CE drops) */
    const int lo = j->co_lo, hi = j->co_hi < l->cout ? j->co_hi : l->cout;
    l->shares++;
    if (s->oy == j->oy_hi - 1)
        l->jobs_done++;
    if (lo >= hi)
        ;
    else if (l->merges > 1) {
        const size_t at = (size_t)lo * ow * l->merges;
        if (l->fixed)
            aloha_conv_partial_q(&l->win, l->w, &l->geom, s->oy, l->co_base + lo,
                                 l->co_base + hi, j->ky0, j->kh, j->kx0, j->kw, l->merges, j->sub,
                                 (unsigned char *)s->out + at * (l->geom.acc32 ? 4 : 8));
        else
            aloha_conv_partial_f32(&l->win, (const float *)l->w, &l->geom, s->oy,
                                   l->co_base + lo, l->co_base + hi, j->ky0, j->kh, j->kx0, j->kw,
                                   l->merges, j->sub, (float *)s->out + at);
    } else if (l->fixed)
        aloha_conv_row_q(&l->win, l->w, l->qbias, &l->geom, l->rq, s->oy, l->co_base + lo,
                         l->co_base + hi,
                         (unsigned char *)s->out + (size_t)lo * ow * aloha_type_size(l->rq->type));
    else
        aloha_conv_row_f32(&l->win, (const float *)l->w, l->fbias, &l->geom, l->act, s->oy,
                           l->co_base + lo, l->co_base + hi, (float *)s->out + (size_t)lo * ow);
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

void ng_ce_row(ng_layer_t *l, const aloha_win_t *x, int oy, void *out)
{
    int k;
    ng_stage_input(l, x);
    for (k = 0; k < l->njobs; k++) {
        const ng_job_t *j = &l->jobs[k];
        if (oy < j->oy_lo || oy >= j->oy_hi)
            continue;
        ng_ce_submit(l->ce, l, j, oy, out);
    }
    ng_ce_wait(l->ce);
}

void ng_arm_merge(ng_layer_t *l, const void *partials, int oy, void *out)
{
    const int ow = l->geom.ow;
    int co, ox, k;
    for (co = 0; co < l->cout; co++)
        for (ox = 0; ox < ow; ox++) {
            const size_t at = (size_t)co * ow + ox;
            const int ch = l->co_base + co;  /* absolute map: the layer's bias and shifts */
            if (l->fixed) {
                int64_t acc = 0;
                for (k = 0; k < l->merges; k++)
                    acc += l->geom.acc32 ? ((const int32_t *)partials)[at * l->merges + k]
                                         : ((const int64_t *)partials)[at * l->merges + k];
                if (l->qbias)
                    acc += l->qbias[ch];
                aloha_store(out, l->rq->type, at, aloha_requant(acc, ch, l->rq));
            } else {
                float v = 0.0f;
                for (k = 0; k < l->merges; k++)
                    v += ((const float *)partials)[at * l->merges + k];
                if (l->fbias)
                    v += l->fbias[ch];
                ((float *)out)[at] = aloha_act1_f32(v, l->act);
            }
        }
    (void)oy;
    l->merged_rows++;
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
