/* ALOHA host backend kernels (C99); see aloha_kernels.h for the conventions.
 *
 * Integer sums that could exceed int64 are computed in uint64 and converted back, which wraps
 * modulo 2^64 exactly like numpy's int64 arithmetic in backends/reference.py and never overflows a
 * signed type (the uint64 -> int64 conversion is implementation-defined, modulo 2^64 in gcc and
 * clang). Negative values are never shifted left and right shifts of negative values use an
 * explicit floor formulation.
 */
#include "aloha_kernels.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

/* ---- integer helpers (numpy int64 semantics) ------------------------------------------------- */

static int64_t wrap_add(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }

static int64_t wrap_mul(int64_t a, int64_t b) { return (int64_t)((uint64_t)a * (uint64_t)b); }

/* numpy left_shift: a * 2^s modulo 2^64; 0 when s is negative or >= 64. */
static int64_t wrap_shl(int64_t a, int64_t s)
{
    return (uint64_t)s < 64 ? (int64_t)((uint64_t)a << s) : 0;
}

/* numpy right_shift: floor(a / 2^s); the sign (0 or -1) when s >= 64. */
static int64_t floor_shr(int64_t a, int64_t s)
{
    if (s >= 64)
        return a < 0 ? -1 : 0;
    return a >= 0 ? a >> s : -1 - ((-1 - a) >> s);
}

int64_t aloha_shift_round(int64_t acc, int64_t s)
{
    if (s > 0)
        return floor_shr(wrap_add(acc, wrap_shl(1, s - 1)), s);
    if (s < 0)
        return s < -63 ? 0 : wrap_shl(acc, -s);
    return acc;
}

static int64_t floor_div(int64_t n, int64_t d)
{
    int64_t q = n / d;
    if (n % d != 0 && ((n < 0) != (d < 0)))
        q -= 1;
    return q;
}

int64_t aloha_round_div(int64_t total, int64_t count)
{
    int64_t d = wrap_mul(count, 2);
    if (d == 0)
        return 0; /* numpy's floor_divide by zero */
    return floor_div(wrap_add(wrap_mul(total, 2), count), d);
}

static int32_t saturate(int64_t v, const aloha_rq_t *rq)
{
    return v < rq->qmin ? rq->qmin : v > rq->qmax ? rq->qmax : (int32_t)v;
}

int32_t aloha_requant(int64_t acc, int channel, const aloha_rq_t *rq)
{
    int64_t s = rq->shift ? rq->shift[channel] : rq->shift0;
    int32_t v;
    switch (rq->kind) {
    case ALOHA_ACT_RELU:
        return saturate(aloha_shift_round(acc < 0 ? 0 : acc, s), rq);
    case ALOHA_ACT_LEAKY:
        if (acc < 0)
            return saturate(aloha_shift_round(wrap_mul(acc, rq->leaky_mult), s + ALOHA_LEAKY_FRAC),
                            rq);
        return saturate(aloha_shift_round(acc, s), rq);
    case ALOHA_ACT_CLIP:
        v = saturate(aloha_shift_round(acc, s), rq);
        if (v < rq->clip_lo)
            v = rq->clip_lo;
        if (v > rq->clip_hi)
            v = rq->clip_hi;
        return v;
    default:
        return saturate(aloha_shift_round(acc, s), rq);
    }
}

int32_t aloha_to_fixed(double y, int frac, int32_t qmin, int32_t qmax)
{
    double v = floor(y * ldexp(1.0, frac) + 0.5);
    if (!(v >= (double)qmin))
        return qmin;
    if (v > (double)qmax)
        return qmax;
    return (int32_t)v;
}

float aloha_act1_f32(float v, const aloha_act_t *act)
{
    if (!act)
        return v;
    switch (act->kind) {
    case ALOHA_ACT_RELU:
        return v < 0.0f ? 0.0f : v;
    case ALOHA_ACT_LEAKY:
        return v < 0.0f ? act->alpha * v : v;
    case ALOHA_ACT_CLIP:
        return v < act->lo ? act->lo : v > act->hi ? act->hi : v;
    case ALOHA_ACT_SIGMOID:
        return 1.0f / (1.0f + expf(-v));
    case ALOHA_ACT_TANH:
        return tanhf(v);
    default:
        return v;
    }
}

static double dequant(int32_t q, int frac) { return (double)q * ldexp(1.0, -frac); }

/* ---- windows and window geometry ------------------------------------------------------------- */

static size_t win_offset(const aloha_win_t *x, int y)
{
    assert(y >= x->base && y - x->base < x->rows);
    return (size_t)(y - x->base) * (size_t)x->c * (size_t)x->w;
}

static const float *row_f(const aloha_win_t *x, int y)
{
    return (const float *)x->p + win_offset(x, y);
}

static const int32_t *row_q(const aloha_win_t *x, int y)
{
    return (const int32_t *)x->p + win_offset(x, y);
}

/* Taps t in [*lo, *hi) of [0, k) whose position base + t * d lies in [a, b). */
static void tap_range(int base, int d, int k, int a, int b, int *lo, int *hi)
{
    int l = 0, h = k;
    if (base < a)
        l = (a - base + d - 1) / d;
    if (base >= b)
        h = 0;
    else if ((b - 1 - base) / d + 1 < k)
        h = (b - 1 - base) / d + 1;
    if (l > h)
        l = h;
    *lo = l;
    *hi = h;
}

/* Outputs ox in [*lo, *hi) of [0, ow) whose input column ox * s + off lies in [0, w). */
static void out_range(int off, int s, int w, int ow, int *lo, int *hi)
{
    tap_range(off, s, ow, 0, w, lo, hi);
}

/* ---- convolution ----------------------------------------------------------------------------- */
/* Both convolutions compute a tile of up to CO_BLOCK output channels (of one group) by OX_BLOCK
 * output columns in local accumulators, looping over the valid kernel rows, then per kernel
 * column over the input channels. A tile whose columns all read inside the input (stride 1) takes
 * a fixed-trip-count loop the compiler vectorises; edges use the hoisted valid column range. */

#define CO_BLOCK 4
#define OX_BLOCK 16

/* The number of output channels of the tile starting at co: at most CO_BLOCK, within co's group. */
static int co_block(int co, int co_hi, int cog)
{
    int n = co_hi - co, group_end = (co / cog + 1) * cog - co;
    if (n > group_end)
        n = group_end;
    return n < CO_BLOCK ? n : CO_BLOCK;
}

/* Kernel column taps [*lo, *hi) of output columns clipped to the tile [ox0, ox0 + n). */
static void tile_range(int off, int s, int w, int ow, int ox0, int n, int *lo, int *hi)
{
    out_range(off, s, w, ow, lo, hi);
    if (*lo < ox0)
        *lo = ox0;
    if (*hi > ox0 + n)
        *hi = ox0 + n;
}

/* acc[j][i] += w[j * wco] * xs[i] for a full tile (CO_BLOCK channels, OX_BLOCK columns). */
static void tile_full_f32(float (*restrict acc)[OX_BLOCK], const float *restrict xs,
                          const float *restrict w, size_t wco)
{
    const float w0 = w[0], w1 = w[wco], w2 = w[2 * wco], w3 = w[3 * wco];
    int i;
    for (i = 0; i < OX_BLOCK; i++) {
        acc[0][i] += w0 * xs[i];
        acc[1][i] += w1 * xs[i];
        acc[2][i] += w2 * xs[i];
        acc[3][i] += w3 * xs[i];
    }
}

/* acc[j][ox - ox0] += w[j * wco] * xr[ox * s + off] for j < nco, ox in [lo, hi). */
static void tile_edge_f32(float (*restrict acc)[OX_BLOCK], const float *restrict xr,
                          const float *restrict w, size_t wco, int nco, int off, int s, int lo,
                          int hi, int ox0)
{
    int j, ox;
    if (nco == CO_BLOCK) {
        const float w0 = w[0], w1 = w[wco], w2 = w[2 * wco], w3 = w[3 * wco];
        for (ox = lo; ox < hi; ox++) {
            const float v = xr[ox * s + off];
            acc[0][ox - ox0] += w0 * v;
            acc[1][ox - ox0] += w1 * v;
            acc[2][ox - ox0] += w2 * v;
            acc[3][ox - ox0] += w3 * v;
        }
        return;
    }
    for (j = 0; j < nco; j++)
        for (ox = lo; ox < hi; ox++)
            acc[j][ox - ox0] += w[j * wco] * xr[ox * s + off];
}

void aloha_conv_row_f32(const aloha_win_t *x, const float *w, const float *bias,
                        const aloha_conv_t *g, const aloha_act_t *act, int oy, int co_lo,
                        int co_hi, float *out)
{
    const int cig = g->cin / g->group, cog = g->cout / g->group;
    const int ow = g->ow, ksz = g->kh * g->kw, iy0 = oy * g->sh - g->pt;
    const size_t wco = (size_t)cig * ksz;
    float acc[CO_BLOCK][OX_BLOCK];
    int co, nco, ox0, ky, kx, ci, j, i, ky_lo, ky_hi;
    tap_range(iy0, g->dh, g->kh, 0, g->h, &ky_lo, &ky_hi);
    for (co = co_lo; co < co_hi; co += nco) {
        const size_t cbase = (size_t)(co / cog) * cig;
        nco = co_block(co, co_hi, cog);
        for (ox0 = 0; ox0 < ow; ox0 += OX_BLOCK) {
            const int n = ow - ox0 < OX_BLOCK ? ow - ox0 : OX_BLOCK;
            memset(acc, 0, sizeof acc);
            for (ky = ky_lo; ky < ky_hi; ky++) {
                const float *row = row_f(x, iy0 + ky * g->dh) + cbase * g->w;
                for (kx = 0; kx < g->kw; kx++) {
                    const int off = kx * g->dw - g->pl;
                    const float *wk = w + co * wco + ky * g->kw + kx;
                    int lo, hi, full;
                    tile_range(off, g->sw, g->w, ow, ox0, n, &lo, &hi);
                    full = nco == CO_BLOCK && g->sw == 1 && lo == ox0 && hi == ox0 + OX_BLOCK;
                    for (ci = 0; lo < hi && ci < cig; ci++) {
                        const float *xr = row + (size_t)ci * g->w;
                        if (full)
                            tile_full_f32(acc, xr + (ox0 + off), wk + ci * ksz, wco);
                        else
                            tile_edge_f32(acc, xr, wk + ci * ksz, wco, nco, off, g->sw, lo, hi,
                                          ox0);
                    }
                }
            }
            for (j = 0; j < nco; j++) {
                float *o = out + (size_t)(co + j - co_lo) * ow + ox0;
                for (i = 0; i < n; i++)
                    o[i] = aloha_act1_f32(bias ? acc[j][i] + bias[co + j] : acc[j][i], act);
            }
        }
    }
}

/* The integer tiles: products are exact in int64, sums wrap modulo 2^64 (uint64). */
static void tile_full_q(uint64_t (*restrict acc)[OX_BLOCK], const int32_t *restrict xs,
                        const int32_t *restrict w, size_t wco)
{
    const int64_t w0 = w[0], w1 = w[wco], w2 = w[2 * wco], w3 = w[3 * wco];
    int i;
    for (i = 0; i < OX_BLOCK; i++) {
        acc[0][i] += (uint64_t)(w0 * xs[i]);
        acc[1][i] += (uint64_t)(w1 * xs[i]);
        acc[2][i] += (uint64_t)(w2 * xs[i]);
        acc[3][i] += (uint64_t)(w3 * xs[i]);
    }
}

static void tile_edge_q(uint64_t (*restrict acc)[OX_BLOCK], const int32_t *restrict xr,
                        const int32_t *restrict w, size_t wco, int nco, int off, int s, int lo,
                        int hi, int ox0)
{
    int j, ox;
    for (j = 0; j < nco; j++) {
        const int64_t wv = w[j * wco];
        for (ox = lo; ox < hi; ox++)
            acc[j][ox - ox0] += (uint64_t)(wv * xr[ox * s + off]);
    }
}

void aloha_conv_row_q(const aloha_win_t *x, const int32_t *w, const int32_t *bias,
                      const aloha_conv_t *g, const aloha_rq_t *rq, int oy, int co_lo, int co_hi,
                      int32_t *out)
{
    const int cig = g->cin / g->group, cog = g->cout / g->group;
    const int ow = g->ow, ksz = g->kh * g->kw, iy0 = oy * g->sh - g->pt;
    const size_t wco = (size_t)cig * ksz;
    uint64_t acc[CO_BLOCK][OX_BLOCK];
    int co, nco, ox0, ky, kx, ci, j, i, ky_lo, ky_hi;
    tap_range(iy0, g->dh, g->kh, 0, g->h, &ky_lo, &ky_hi);
    for (co = co_lo; co < co_hi; co += nco) {
        const size_t cbase = (size_t)(co / cog) * cig;
        nco = co_block(co, co_hi, cog);
        for (ox0 = 0; ox0 < ow; ox0 += OX_BLOCK) {
            const int n = ow - ox0 < OX_BLOCK ? ow - ox0 : OX_BLOCK;
            memset(acc, 0, sizeof acc);
            for (ky = ky_lo; ky < ky_hi; ky++) {
                const int32_t *row = row_q(x, iy0 + ky * g->dh) + cbase * g->w;
                for (kx = 0; kx < g->kw; kx++) {
                    const int off = kx * g->dw - g->pl;
                    const int32_t *wk = w + co * wco + ky * g->kw + kx;
                    int lo, hi, full;
                    tile_range(off, g->sw, g->w, ow, ox0, n, &lo, &hi);
                    full = nco == CO_BLOCK && g->sw == 1 && lo == ox0 && hi == ox0 + OX_BLOCK;
                    for (ci = 0; lo < hi && ci < cig; ci++) {
                        const int32_t *xr = row + (size_t)ci * g->w;
                        if (full)
                            tile_full_q(acc, xr + (ox0 + off), wk + ci * ksz, wco);
                        else
                            tile_edge_q(acc, xr, wk + ci * ksz, wco, nco, off, g->sw, lo, hi,
                                        ox0);
                    }
                }
            }
            for (j = 0; j < nco; j++) {
                int32_t *o = out + (size_t)(co + j - co_lo) * ow + ox0;
                for (i = 0; i < n; i++)
                    o[i] = aloha_requant(wrap_add((int64_t)acc[j][i], bias ? bias[co + j] : 0),
                                         co + j, rq);
            }
        }
    }
}

/* ---- pooling --------------------------------------------------------------------------------- */

/* Pooling runs channel by channel along the row. Outputs whose window lies inside the input on x
 * (in_lo <= ox < in_hi) skip the bounds arithmetic; the divisor of an average window counts
 * positions inside the input, or inside the padded area with count_include_pad, never the
 * ceil-mode overhang, and factors into a per-row y count and a per-column x count. */
typedef struct pool_row {
    int iy0, ky_lo, ky_hi, in_lo, in_hi, ycount;
    size_t ystep; /* words between the window rows of consecutive kernel taps */
} pool_row;

static pool_row pool_row_setup(const aloha_win_t *x, const aloha_pool_t *p, int oy)
{
    pool_row r;
    int lo, hi;
    r.iy0 = oy * p->sh - p->pt;
    tap_range(r.iy0, p->dh, p->kh, 0, p->h, &r.ky_lo, &r.ky_hi);
    out_range(-p->pl, p->sw, p->w - (p->kw - 1) * p->dw, p->ow, &r.in_lo, &r.in_hi);
    if (p->count_include_pad)
        tap_range(r.iy0, p->dh, p->kh, -p->pt, p->h + p->pb, &lo, &hi);
    else {
        lo = r.ky_lo;
        hi = r.ky_hi;
    }
    r.ycount = hi - lo;
    r.ystep = (size_t)p->dh * (size_t)x->c * (size_t)x->w;
    return r;
}

/* the valid taps [*lo, *hi) of column ox, and its x count for an average */
static int pool_cols(const aloha_pool_t *p, const pool_row *r, int ox, int *lo, int *hi)
{
    int a, b, ix0 = ox * p->sw - p->pl;
    if (ox >= r->in_lo && ox < r->in_hi) {
        *lo = 0;
        *hi = p->kw;
        return p->kw;
    }
    tap_range(ix0, p->dw, p->kw, 0, p->w, lo, hi);
    if (!p->count_include_pad)
        return *hi - *lo;
    tap_range(ix0, p->dw, p->kw, -p->pl, p->w + p->pr, &a, &b);
    return b - a;
}

void aloha_pool_row_f32(const aloha_win_t *x, const aloha_pool_t *p, const aloha_act_t *act,
                        int oy, float *out)
{
    const pool_row r = pool_row_setup(x, p, oy);
    int ch, ox, ky, kx, lo, hi;
    if (r.ky_lo >= r.ky_hi) { /* a window entirely in the padding */
        for (ch = 0; ch < p->c * p->ow; ch++)
            out[ch] = aloha_act1_f32(0.0f, act);
        return;
    }
    for (ch = 0; ch < p->c; ch++) {
        const float *base = row_f(x, r.iy0 + r.ky_lo * p->dh) + (size_t)ch * p->w;
        float *o = out + (size_t)ch * p->ow;
        for (ox = 0; ox < p->ow; ox++) {
            const int count = pool_cols(p, &r, ox, &lo, &hi);
            const ptrdiff_t ix0 = ox * p->sw - p->pl;
            float v = 0.0f;
            if (lo >= hi) {
                o[ox] = aloha_act1_f32(0.0f, act);
                continue;
            }
            if (p->kind == 0) {
                v = base[ix0 + lo * p->dw];
                for (ky = 0; ky < r.ky_hi - r.ky_lo; ky++)
                    for (kx = lo; kx < hi; kx++)
                        if (base[(ptrdiff_t)(ky * r.ystep) + ix0 + kx * p->dw] > v)
                            v = base[(ptrdiff_t)(ky * r.ystep) + ix0 + kx * p->dw];
            } else {
                double sum = 0.0;
                for (ky = 0; ky < r.ky_hi - r.ky_lo; ky++)
                    for (kx = lo; kx < hi; kx++)
                        sum += base[(ptrdiff_t)(ky * r.ystep) + ix0 + kx * p->dw];
                v = (float)(sum / (r.ycount * count));
            }
            o[ox] = aloha_act1_f32(v, act);
        }
    }
}

void aloha_pool_row_q(const aloha_win_t *x, const aloha_pool_t *p, const aloha_rq_t *rq, int oy,
                      int32_t *out)
{
    const pool_row r = pool_row_setup(x, p, oy);
    int ch, ox, ky, kx, lo, hi;
    if (r.ky_lo >= r.ky_hi) {
        for (ch = 0; ch < p->c * p->ow; ch++)
            out[ch] = aloha_requant(0, 0, rq);
        return;
    }
    for (ch = 0; ch < p->c; ch++) {
        const int32_t *base = row_q(x, r.iy0 + r.ky_lo * p->dh) + (size_t)ch * p->w;
        int32_t *o = out + (size_t)ch * p->ow;
        for (ox = 0; ox < p->ow; ox++) {
            const int count = pool_cols(p, &r, ox, &lo, &hi);
            const ptrdiff_t ix0 = ox * p->sw - p->pl;
            int64_t v = 0;
            if (lo >= hi) {
                o[ox] = aloha_requant(0, 0, rq);
                continue;
            }
            if (p->kind == 0) {
                v = base[ix0 + lo * p->dw];
                for (ky = 0; ky < r.ky_hi - r.ky_lo; ky++)
                    for (kx = lo; kx < hi; kx++)
                        if (base[(ptrdiff_t)(ky * r.ystep) + ix0 + kx * p->dw] > v)
                            v = base[(ptrdiff_t)(ky * r.ystep) + ix0 + kx * p->dw];
            } else {
                for (ky = 0; ky < r.ky_hi - r.ky_lo; ky++)
                    for (kx = lo; kx < hi; kx++)
                        v += base[(ptrdiff_t)(ky * r.ystep) + ix0 + kx * p->dw];
                v = aloha_round_div(v, (int64_t)r.ycount * count);
            }
            o[ox] = aloha_requant(v, 0, rq);
        }
    }
}

void aloha_gpool_f32(const float *x, int c, int hw, int kind, const aloha_act_t *act, float *out)
{
    int ch, i;
    for (ch = 0; ch < c; ch++) {
        const float *r = x + (size_t)ch * hw;
        float v = r[0];
        if (kind == 0) {
            for (i = 1; i < hw; i++)
                if (r[i] > v)
                    v = r[i];
        } else {
            double sum = 0.0;
            for (i = 0; i < hw; i++)
                sum += r[i];
            v = (float)(sum / hw);
        }
        out[ch] = aloha_act1_f32(v, act);
    }
}

void aloha_gpool_q(const int32_t *x, int c, int hw, int kind, const aloha_rq_t *rq,
                   int32_t *out)
{
    int ch, i;
    for (ch = 0; ch < c; ch++) {
        const int32_t *r = x + (size_t)ch * hw;
        int64_t v = r[0];
        if (kind == 0) {
            for (i = 1; i < hw; i++)
                if (r[i] > v)
                    v = r[i];
        } else {
            for (i = 1; i < hw; i++)
                v += r[i];
            v = aloha_round_div(v, hw);
        }
        out[ch] = aloha_requant(v, 0, rq);
    }
}

/* ---- dense ----------------------------------------------------------------------------------- */

void aloha_dense_f32(const float *x, const float *w, const float *bias, int k, int m_lo,
                     int m_hi, const aloha_act_t *act, float *out)
{
    int j, i;
    for (j = m_lo; j < m_hi; j++) {
        const float *wr = w + (size_t)j * k;
        float s[8] = {0, 0, 0, 0, 0, 0, 0, 0}, t;
        for (i = 0; i + 8 <= k; i += 8) {
            int l;
            for (l = 0; l < 8; l++)
                s[l] += x[i + l] * wr[i + l];
        }
        for (; i < k; i++)
            s[0] += x[i] * wr[i];
        t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
        if (bias)
            t += bias[j];
        out[j - m_lo] = aloha_act1_f32(t, act);
    }
}

void aloha_dense_q(const int32_t *x, const int32_t *w, const int32_t *bias, int k, int m_lo,
                   int m_hi, const aloha_rq_t *rq, int32_t *out)
{
    int j, i;
    for (j = m_lo; j < m_hi; j++) {
        const int32_t *wr = w + (size_t)j * k;
        uint64_t acc = 0;
        for (i = 0; i < k; i++)
            acc += (uint64_t)((int64_t)x[i] * wr[i]);
        out[j - m_lo] = aloha_requant(wrap_add((int64_t)acc, bias ? bias[j] : 0), j, rq);
    }
}

/* ---- binary elementwise with broadcasting ---------------------------------------------------- */

/* Operand geometry of one output row: the row's element offset, channel and column strides. */
typedef struct { size_t off, cs; int xs; } bcast_t;

static bcast_t bcast(const aloha_win_t *a, int oy)
{
    bcast_t b;
    b.off = win_offset(a, a->h == 1 ? 0 : oy);
    b.cs = a->c == 1 ? 0 : (size_t)a->w;
    b.xs = a->w == 1 ? 0 : 1;
    return b;
}

#define BINARY_ROW(T, EXPR, STORE)                                                               \
    do {                                                                                          \
        const bcast_t ba = bcast(a, oy), bb = bcast(b, oy);                                       \
        int ch, xx;                                                                               \
        for (ch = 0; ch < c; ch++) {                                                              \
            const T *pa = (const T *)a->p + ba.off + ch * ba.cs;                                  \
            const T *pb = (const T *)b->p + bb.off + ch * bb.cs;                                  \
            for (xx = 0; xx < w; xx++) {                                                          \
                T va = pa[xx * ba.xs], vb = pb[xx * bb.xs];                                       \
                out[(size_t)ch * w + xx] = STORE(EXPR);                                           \
            }                                                                                     \
        }                                                                                         \
    } while (0)

void aloha_add_row_f32(const aloha_win_t *a, const aloha_win_t *b, int oy, int c, int w,
                       const aloha_act_t *act, float *out)
{
#define STORE_F(v) aloha_act1_f32((v), act)
    BINARY_ROW(float, va + vb, STORE_F);
}

void aloha_mul_row_f32(const aloha_win_t *a, const aloha_win_t *b, int oy, int c, int w,
                       const aloha_act_t *act, float *out)
{
    BINARY_ROW(float, va * vb, STORE_F);
#undef STORE_F
}

void aloha_add_row_q(const aloha_win_t *a, int la, const aloha_win_t *b, int lb, int oy, int c,
                     int w, const aloha_rq_t *rq, int32_t *out)
{
#define STORE_Q(v) aloha_requant((v), ch, rq)
    BINARY_ROW(int32_t, wrap_add(wrap_shl(va, la), wrap_shl(vb, lb)), STORE_Q);
}

void aloha_mul_row_q(const aloha_win_t *a, const aloha_win_t *b, int oy, int c, int w,
                     const aloha_rq_t *rq, int32_t *out)
{
    BINARY_ROW(int32_t, (int64_t)va * vb, STORE_Q);
#undef STORE_Q
}

/* ---- batch norm ------------------------------------------------------------------------------ */

void aloha_bn_row_f32(const aloha_win_t *x, const float *scale, const float *bias, int oy,
                      const aloha_act_t *act, float *out)
{
    const float *r = row_f(x, oy);
    const size_t w = (size_t)x->w;
    int ch;
    size_t i;
    for (ch = 0; ch < x->c; ch++)
        for (i = 0; i < w; i++) {
            float v = r[ch * w + i] * scale[ch];
            if (bias)
                v += bias[ch];
            out[ch * w + i] = aloha_act1_f32(v, act);
        }
}

void aloha_bn_row_q(const aloha_win_t *x, const int32_t *scale, const int32_t *bias, int oy,
                    const aloha_rq_t *rq, int32_t *out)
{
    const int32_t *r = row_q(x, oy);
    const size_t w = (size_t)x->w;
    int ch;
    size_t i;
    for (ch = 0; ch < x->c; ch++)
        for (i = 0; i < w; i++) {
            int64_t acc = wrap_add((int64_t)r[ch * w + i] * scale[ch], bias ? bias[ch] : 0);
            out[ch * w + i] = aloha_requant(acc, ch, rq);
        }
}

/* ---- elementwise ----------------------------------------------------------------------------- */

void aloha_act_f32(const float *x, int n, const aloha_act_t *act, float *out)
{
    int i;
    for (i = 0; i < n; i++)
        out[i] = aloha_act1_f32(x[i], act);
}

void aloha_requant_q(const int32_t *x, int n, const aloha_rq_t *rq, int32_t *out)
{
    int i;
    for (i = 0; i < n; i++)
        out[i] = aloha_requant(x[i], 0, rq);
}

void aloha_island_q(const int32_t *x, int n, int frac_in, int frac_out, int32_t qmin,
                    int32_t qmax, int kind, int32_t *out)
{
    int i;
    for (i = 0; i < n; i++) {
        double r = dequant(x[i], frac_in), y;
        if (kind == ALOHA_ACT_SIGMOID)
            y = 1.0 / (1.0 + exp(-r));
        else if (kind == ALOHA_ACT_TANH)
            y = tanh(r);
        else
            y = r;
        out[i] = aloha_to_fixed(y, frac_out, qmin, qmax);
    }
}

/* ---- softmax --------------------------------------------------------------------------------- */

void aloha_softmax_f32(const float *x, int outer, int n, int inner, float *out)
{
    int o, i, j;
    for (o = 0; o < outer; o++)
        for (i = 0; i < inner; i++) {
            const float *s = x + (size_t)o * n * inner + i;
            float *d = out + (size_t)o * n * inner + i, m = s[0];
            double sum = 0.0;
            for (j = 1; j < n; j++)
                if (s[(size_t)j * inner] > m)
                    m = s[(size_t)j * inner];
            for (j = 0; j < n; j++) {
                float e = expf(s[(size_t)j * inner] - m);
                d[(size_t)j * inner] = e;
                sum += e;
            }
            for (j = 0; j < n; j++)
                d[(size_t)j * inner] = (float)(d[(size_t)j * inner] / sum);
        }
}

/* exp(x[j] * 2^-frac - m) of a contiguous softmax slice. */
static double soft_exp(const int32_t *x, int j, int frac, double m)
{
    return exp(dequant(x[j], frac) - m);
}

/* numpy's pairwise summation (pairwise_sum of a contiguous float64 reduction) of soft_exp. */
static double pairwise_exp(const int32_t *x, int n, int frac, double m)
{
    double r[8], res;
    int i, l;
    if (n < 8) {
        res = 0.0;
        for (i = 0; i < n; i++)
            res += soft_exp(x, i, frac, m);
        return res;
    }
    if (n <= 128) {
        for (l = 0; l < 8; l++)
            r[l] = soft_exp(x, l, frac, m);
        for (i = 8; i < n - n % 8; i += 8)
            for (l = 0; l < 8; l++)
                r[l] += soft_exp(x, i + l, frac, m);
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++)
            res += soft_exp(x, i, frac, m);
        return res;
    }
    i = n / 2;
    i -= i % 8;
    return pairwise_exp(x, i, frac, m) + pairwise_exp(x + i, n - i, frac, m);
}

void aloha_softmax_q(const int32_t *x, int outer, int n, int inner, int frac_in, int frac_out,
                     int32_t qmin, int32_t qmax, int32_t *out)
{
    int o, i, j;
    for (o = 0; o < outer; o++)
        for (i = 0; i < inner; i++) {
            const int32_t *s = x + (size_t)o * n * inner + i;
            int32_t *d = out + (size_t)o * n * inner + i;
            int32_t qm = s[0];
            double m, sum = 0.0;
            for (j = 1; j < n; j++)
                if (s[(size_t)j * inner] > qm)
                    qm = s[(size_t)j * inner];
            m = dequant(qm, frac_in);
            if (inner == 1)
                sum = 0.0 + pairwise_exp(s, n, frac_in, m);
            else
                for (j = 0; j < n; j++)
                    sum += exp(dequant(s[(size_t)j * inner], frac_in) - m);
            for (j = 0; j < n; j++)
                d[(size_t)j * inner] = aloha_to_fixed(
                    exp(dequant(s[(size_t)j * inner], frac_in) - m) / sum, frac_out, qmin, qmax);
        }
}

/* ---- local response normalisation ------------------------------------------------------------ */

/* d^beta with numpy's fast paths of array ** scalar (sqrt for 0.5, square, reciprocal, ...). */
static double lrn_power(double d, double beta)
{
    if (beta == 0.5)
        return sqrt(d);
    if (beta == 2.0)
        return d * d;
    if (beta == 1.0)
        return d;
    if (beta == -1.0)
        return 1.0 / d;
    if (beta == 0.0)
        return 1.0;
    return pow(d, beta);
}

void aloha_lrn_row_f32(const float *x, int c, int w, int size, float alpha, float beta,
                       float bias, float *out)
{
    const double k = (double)alpha / size;
    int ch, xx, cc;
    for (ch = 0; ch < c; ch++) {
        int lo = ch - (size - 1) / 2, hi = ch + size / 2;
        if (lo < 0)
            lo = 0;
        if (hi > c - 1)
            hi = c - 1;
        for (xx = 0; xx < w; xx++) {
            double total = 0.0;
            for (cc = lo; cc <= hi; cc++) {
                double v = x[(size_t)cc * w + xx];
                total += v * v;
            }
            out[(size_t)ch * w + xx] =
                (float)(x[(size_t)ch * w + xx] / lrn_power(bias + k * total, beta));
        }
    }
}

void aloha_lrn_row_q(const int32_t *x, int c, int w, int size, double alpha, double beta,
                     double bias, int frac_in, int frac_out, int32_t qmin, int32_t qmax,
                     int32_t *out)
{
    const double k = alpha / size;
    int ch, xx, cc;
    for (ch = 0; ch < c; ch++) {
        int lo = ch - (size - 1) / 2, hi = ch + size / 2;
        if (lo < 0)
            lo = 0;
        if (hi > c - 1)
            hi = c - 1;
        for (xx = 0; xx < w; xx++) {
            double total = 0.0, r = dequant(x[(size_t)ch * w + xx], frac_in);
            for (cc = lo; cc <= hi; cc++) {
                double v = dequant(x[(size_t)cc * w + xx], frac_in);
                total += v * v;
            }
            out[(size_t)ch * w + xx] =
                aloha_to_fixed(r / lrn_power(bias + k * total, beta), frac_out, qmin, qmax);
        }
    }
}

/* ---- channel shuffle ------------------------------------------------------------------------- */

void aloha_shuffle_row_f32(const float *x, int c, int w, int groups, float *out)
{
    const int per = c / groups;
    int o;
    for (o = 0; o < c; o++)
        memcpy(out + (size_t)o * w, x + (size_t)((o % groups) * per + o / groups) * w,
               (size_t)w * sizeof *out);
}

void aloha_shuffle_row_q(const int32_t *x, int c, int w, int groups, const aloha_rq_t *rq,
                         int32_t *out)
{
    const int per = c / groups;
    int o, i;
    for (o = 0; o < c; o++) {
        const int32_t *src = x + (size_t)((o % groups) * per + o / groups) * w;
        for (i = 0; i < w; i++)
            out[(size_t)o * w + i] = aloha_requant(src[i], 0, rq);
    }
}
