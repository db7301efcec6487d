/* ALOHA host backend kernels (C99); see aloha_kernels.h for the conventions.
 *
 * Integer sums that could exceed int64 are computed in uint64 and converted back, which wraps
 * modulo 2^64 exactly like numpy's int64 arithmetic in runtime/reference.py and never overflows a
 * signed type (the uint64 -> int64 conversion is implementation-defined, modulo 2^64 in gcc and
 * clang). int32 sums (acc32, proven not to overflow) use uint32 the same way. Negative values are never shifted left and right shifts of negative values use an
 * explicit floor formulation.
 */
#include "aloha_kernels.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- storage --------------------------------------------------------------------------------- */

int aloha_type_size(int type)
{
    switch (type) {
    case ALOHA_I8:
    case ALOHA_U8:
        return 1;
    case ALOHA_I16:
    case ALOHA_U16:
        return 2;
    case ALOHA_I64:
        return 8;
    default:
        return 4;
    }
}

int64_t aloha_load(const void *p, int type, size_t i)
{
    switch (type) {
    case ALOHA_I8:
        return ((const int8_t *)p)[i];
    case ALOHA_U8:
        return ((const uint8_t *)p)[i];
    case ALOHA_I16:
        return ((const int16_t *)p)[i];
    case ALOHA_U16:
        return ((const uint16_t *)p)[i];
    case ALOHA_I64:
        return ((const int64_t *)p)[i];
    default:
        return ((const int32_t *)p)[i];
    }
}

void aloha_store(void *p, int type, size_t i, int32_t v)
{
    switch (type) {
    case ALOHA_I8:
        ((int8_t *)p)[i] = (int8_t)v;
        break;
    case ALOHA_U8:
        ((uint8_t *)p)[i] = (uint8_t)v;
        break;
    case ALOHA_I16:
        ((int16_t *)p)[i] = (int16_t)v;
        break;
    case ALOHA_U16:
        ((uint16_t *)p)[i] = (uint16_t)v;
        break;
    case ALOHA_I64:
        ((int64_t *)p)[i] = v;
        break;
    default:
        ((int32_t *)p)[i] = v;
        break;
    }
}

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

/* aloha_requant with the channel's shift s already looked up */
static int32_t requant_by(int64_t acc, int64_t s, const aloha_rq_t *rq)
{
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

int32_t aloha_requant(int64_t acc, int channel, const aloha_rq_t *rq)
{
    return requant_by(acc, rq->shift ? rq->shift[channel] : rq->shift0, rq);
}

/* v[i] = aloha_requant(acc[i], channel, rq) for i < n <= REQUANT_BLOCK when the activation is
 * none or relu and the shift s is in [1, 62] (the common case), in loops the compiler
 * vectorises: floor((a + 2^(s-1)) / 2^s) as a logical shift of a + 2^63 (computed modulo 2^64,
 * as numpy wraps), less 2^(63-s), then the saturation. Returns 0 (v untouched) otherwise. */
#define REQUANT_BLOCK 64
static int requant_fast(const int64_t *restrict acc, int n, int64_t s, const aloha_rq_t *rq,
                        int32_t *restrict v)
{
    const uint64_t sign = (uint64_t)1 << 63;
    const int64_t lo = rq->qmin, hi = rq->qmax;
    const int relu = rq->kind == ALOHA_ACT_RELU;
    uint64_t half, bias;
    int i;
    if (s < 1 || s > 62 || (rq->kind != ALOHA_ACT_NONE && !relu))
        return 0;
    half = (uint64_t)1 << (s - 1);
    bias = (uint64_t)1 << (63 - s);
    for (i = 0; i < n; i++) {
        const int64_t a = relu && acc[i] < 0 ? 0 : acc[i];
        const int64_t r = (int64_t)((((uint64_t)a + half) ^ sign) >> s) - (int64_t)bias;
        v[i] = (int32_t)(r < lo ? lo : r > hi ? hi : r);
    }
    return 1;
}

/* out[at + i] = aloha_requant(acc[i], channel, rq) for i < n, stored as rq->type: the epilogue of
 * a row of sums, with the shift and the storage type chosen once */
static void requant_row(const int64_t *restrict acc, int n, int channel, const aloha_rq_t *rq,
                        void *out, size_t at)
{
    const int64_t s = rq->shift ? rq->shift[channel] : rq->shift0;
    int32_t v[REQUANT_BLOCK];
    int i;
    assert(n <= REQUANT_BLOCK);
    if (!requant_fast(acc, n, s, rq, v))
        for (i = 0; i < n; i++)
            v[i] = requant_by(acc[i], s, rq);
    switch (rq->type) {
    case ALOHA_I8:
        for (i = 0; i < n; i++)
            ((int8_t *)out)[at + i] = (int8_t)v[i];
        break;
    case ALOHA_U8:
        for (i = 0; i < n; i++)
            ((uint8_t *)out)[at + i] = (uint8_t)v[i];
        break;
    case ALOHA_I16:
        for (i = 0; i < n; i++)
            ((int16_t *)out)[at + i] = (int16_t)v[i];
        break;
    case ALOHA_U16:
        for (i = 0; i < n; i++)
            ((uint16_t *)out)[at + i] = (uint16_t)v[i];
        break;
    default:
        for (i = 0; i < n; i++)
            aloha_store(out, rq->type, at + i, v[i]);
        break;
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

/* o[i] = act(a[i] + *bias) (a[i] alone when bias is NULL) for i < n: aloha_act1_f32 of each
 * value, with the activation chosen once so that the loops vectorise */
static void act_row_f32(const float *restrict a, int n, const float *bias, const aloha_act_t *act,
                        float *restrict o)
{
    int i;
    if (bias) {
        const float b = *bias;
        for (i = 0; i < n; i++)
            o[i] = a[i] + b;
    } else
        for (i = 0; i < n; i++)
            o[i] = a[i];
    switch (act ? act->kind : ALOHA_ACT_NONE) {
    case ALOHA_ACT_NONE:
        break;
    case ALOHA_ACT_RELU:
        for (i = 0; i < n; i++)
            o[i] = o[i] < 0.0f ? 0.0f : o[i];
        break;
    case ALOHA_ACT_LEAKY: {
        const float alpha = act->alpha;
        for (i = 0; i < n; i++)
            o[i] = o[i] < 0.0f ? alpha * o[i] : o[i];
        break;
    }
    case ALOHA_ACT_CLIP: {
        const float lo = act->lo, hi = act->hi;
        for (i = 0; i < n; i++)
            o[i] = o[i] < lo ? lo : o[i] > hi ? hi : o[i];
        break;
    }
    default:
        for (i = 0; i < n; i++)
            o[i] = aloha_act1_f32(o[i], act);
        break;
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
/* A convolution row is a small GEMM: output channels x output columns, summed over the input
 * channels of each kernel tap. Both convolutions compute a register tile of up to CO_BLOCK (4)
 * output channels (of one group) by OX_BLOCK output columns. A micro-kernel runs over the kernel
 * taps (ky, kx) and, per tap, over the input channels with the tile's sums in registers: one
 * contiguous load of OX_BLOCK input columns and four weights feed 4 x OX_BLOCK multiply-adds; a
 * tile of at most OX_BLOCK / 2 columns (a row's last) computes only those. The input
 * columns of a column tile are first staged (conv_stage below): copied once, for all the output
 * channels of the group, into contiguous runs per kernel row, channel and stride phase, with
 * zeros in the padding and past the row's end, so that every tap of every tile, whatever the
 * stride and however narrow the output, is one contiguous run. A convolution whose stage does not
 * fit ALOHA_CONV_STAGE_BYTES instead reads full stride-1 tiles from the input rows directly and
 * gathers any other tile's columns tap by tap into a panel of CONV_PANEL channels.
 * Adding those zero products never changes a sum: an integer trivially, and a float sum that
 * starts at +0 is never -0, so sum + (+-0) is the sum. Every output's sum runs over the taps in
 * one order, ky, then kx, then the input channel, so float results are bit for bit those of the
 * straightforward loop in that order, whatever the tile sizes and the vector width.
 *
 * With GCC or Clang the tile's sums are vectors of the compiler's generic vector extension
 * (portable: SSE, AVX, NEON, or plain registers where the target has none); the register tile
 * spans two vectors of ALOHA_VEC_BYTES per channel (32 where the target has AVX, else 16). Other
 * compilers, or -DALOHA_NO_VECTOR_EXT, get the same loops on plain arrays, and so do the float
 * sums on 32-bit ARM, whose NEON flushes denormals to zero (not IEEE), and every kernel on a
 * 32-bit ARM core without NEON (the Cortex-M class): there a generic vector is scalars spilled to
 * the stack, which took mnist-8 at 8 bits on a Cortex-M4 to 14.1 M instructions a frame against
 * 8.2 M for the plain loops (benchmarks/cross.py).
 *
 * On x86 with AVX2, integer convolutions summing in int32 stage their input channels in pairs and
 * run a micro-kernel of pair multiply-adds instead (ALOHA_PAIR_SUMS below): same tiles, same sums. */

#if (defined(__GNUC__) || defined(__clang__)) && !defined(ALOHA_NO_VECTOR_EXT) && \
    !(defined(__arm__) && !defined(__aarch64__) && !defined(__ARM_NEON))
#define ALOHA_VECTOR_EXT 1
#if !defined(__arm__) || defined(__aarch64__)
#define ALOHA_VECTOR_FLOAT 1
#endif
#endif
#ifndef ALOHA_VEC_BYTES
#if defined(__AVX__)
#define ALOHA_VEC_BYTES 32
#else
#define ALOHA_VEC_BYTES 16
#endif
#endif

/* The micro-kernel stays a function of its own: inlined into the tile loop, GCC ran out of
 * registers and kept two of its eight vector sums on the stack. */
#if defined(__GNUC__) || defined(__clang__)
#define ALOHA_NOINLINE __attribute__((noinline))
#define ALOHA_MAYBE_UNUSED __attribute__((unused))
#else
#define ALOHA_NOINLINE
#define ALOHA_MAYBE_UNUSED
#endif

/* A vector the micro-kernel multiplies by four weights: GCC otherwise folds its load into each
 * multiply, four loads where one does, and the loads, not the arithmetic, bound the loop (AMD
 * Zen 3: 12 loads against 8 multiplies and 8 adds a channel). */
#if defined(__GNUC__) && defined(__SSE2__)
#define ALOHA_IN_REGISTER(v) __asm__("" : "+x"(v))
#else
#define ALOHA_IN_REGISTER(v) (void)0
#endif

#define CO_BLOCK 4
#define OX_BLOCK (2 * ALOHA_VEC_BYTES / 4)
/* input channels gathered at a time: a panel of at most 32 x 16 x 4 = 2 KiB on the stack */
#define CONV_PANEL 32
/* kernel taps a staged tile's micro-kernel call runs with its sums held in registers */
#define CONV_TAPS 64

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

/* The staged input of one column tile: for each kernel row ky in [ky_lo, ky_hi), each input
 * channel of the group and each phase p < sw, `len` consecutive columns q holding input column
 * (ox0 + q) * sw + p - pl (0 in the padding). Tap kx of output column ox0 + i reads q = i +
 * kx * dw / sw of phase kx * dw % sw: every tap of every tile is then one contiguous run, and the
 * copy is made once per column tile for all the output channels of the group. */
typedef struct conv_stage { int cig, len; size_t elems; } conv_stage;

/* ALOHA_CONV_STAGE_BYTES bounds the stage (on the stack); a convolution whose stage does not
 * fit gathers its columns tap by tap instead. A microcontroller's stack is a few KiB; on an OS,
 * 256 KiB holds a 3x3 stage of 512 channels widened to double (16-bit operands) and stays
 * within a core's L2 cache; threads get the OS's default stack (8 MiB on Linux). */
#ifndef ALOHA_CONV_STAGE_BYTES
#if defined(__linux__) || defined(__APPLE__) || defined(_WIN32)
#define ALOHA_CONV_STAGE_BYTES (256 * 1024)
#else
#define ALOHA_CONV_STAGE_BYTES 2048
#endif
#endif

static conv_stage stage_shape(const aloha_conv_t *g, int nky)
{
    conv_stage s;
    s.cig = g->cin / g->group;
    s.len = OX_BLOCK + (g->kw - 1) * g->dw / g->sw;
    s.elems = (size_t)(nky > 0 ? nky : 0) * (size_t)s.cig * (size_t)g->sw * (size_t)s.len;
    return s;
}

/* The element offset of channel c, phase p of the stage's kernel row kyi. */
static size_t stage_at(const conv_stage *s, int kyi, int c, int p, int sw)
{
    return (((size_t)kyi * (size_t)s->cig + (size_t)c) * (size_t)sw + (size_t)p) * (size_t)s->len;
}

/* What a tile's epilogue needs: the bias, the float activation or the requantisation, and the
 * output row (channels from co_lo). */
typedef struct conv_post {
    const void *bias;
    const aloha_act_t *act;
    const aloha_rq_t *rq;
    void *out;
    int co_lo;
} conv_post;

static conv_post conv_post_of(const void *bias, const aloha_act_t *act, const aloha_rq_t *rq,
                              void *out, int co_lo)
{
    conv_post post;
    post.bias = bias;
    post.act = act;
    post.rq = rq;
    post.out = out;
    post.co_lo = co_lo;
    return post;
}

/* MK_VEC and MK_PLAIN define mk_NAME: acc[j][i] += w[j * wco + c * ws] * x[c * xs + i] for
 * c < n, j < nco, i < OX_BLOCK, for input elements XT and weights WT, products taken in AT and
 * summed in UT (float for the float convolution; for integers the wrapping unsigned type of the
 * accumulator, whose products agree with AT's modulo its width). */
#define MK_PLAIN(NAME, XT, WT, AT, UT)                                                           \
    static void mk_##NAME(UT (*restrict acc)[OX_BLOCK], const XT *restrict x, size_t xs,         \
                          const WT *restrict w, size_t ws, size_t wco, int n, int nco)           \
    {                                                                                            \
        int c, i, j;                                                                             \
        for (j = 0; j < nco; j++) {                                                              \
            UT a[OX_BLOCK];                                                                      \
            memcpy(a, acc[j], sizeof a);                                                         \
            for (c = 0; c < n; c++) {                                                            \
                const XT *restrict xc = x + (size_t)c * xs;                                      \
                const UT wv = (UT)(AT)w[j * wco + (size_t)c * ws];                               \
                for (i = 0; i < OX_BLOCK; i++)                                                   \
                    a[i] += wv * (UT)(AT)xc[i];                                                  \
            }                                                                                    \
            memcpy(acc[j], a, sizeof a);                                                         \
        }                                                                                        \
    }                                                                                            \
    enum { mkt_in_registers_##NAME = 0 }; /* mkt_NAME is mk_NAME tap by tap */                   \
    static ALOHA_MAYBE_UNUSED void mkt_##NAME(                                                   \
        UT (*restrict acc)[OX_BLOCK], const XT *restrict x, const ptrdiff_t *xo, size_t xs,      \
        const WT *restrict w, const ptrdiff_t *wo, size_t ws, size_t wco, int taps, int n,       \
        int nco, int cols)                                                                       \
    {                                                                                            \
        int t;                                                                                   \
        (void)cols;                                                                              \
        for (t = 0; t < taps; t++)                                                               \
            mk_##NAME(acc, x + xo[t], xs, w + wo[t], ws, wco, n, nco);                           \
    }
#ifdef ALOHA_VECTOR_EXT
#define MK_VEC(NAME, XT, WT, AT, UT)                                                             \
    typedef UT vec_##NAME __attribute__((vector_size(ALOHA_VEC_BYTES)));                         \
    static vec_##NAME load_##NAME(const XT *restrict p)                                          \
    {                                                                                            \
        UT t[ALOHA_VEC_BYTES / sizeof(UT)];                                                      \
        vec_##NAME v;                                                                            \
        unsigned l;                                                                              \
        if (sizeof(XT) == sizeof(UT)) /* the same bits: UT is XT or its unsigned twin */         \
            memcpy(&v, p, sizeof v);                                                             \
        else {                                                                                   \
            for (l = 0; l < ALOHA_VEC_BYTES / sizeof(UT); l++)                                   \
                t[l] = (UT)(AT)p[l];                                                             \
            memcpy(&v, t, sizeof v);                                                             \
        }                                                                                        \
        return v;                                                                                \
    }                                                                                            \
    enum { mkt_in_registers_##NAME = 1 };                                                        \
    static ALOHA_NOINLINE ALOHA_MAYBE_UNUSED MK_CONTRACT_##UT void mkt_##NAME(                   \
        UT (*restrict acc)[OX_BLOCK], const XT *restrict x, const ptrdiff_t *xo, size_t xs,      \
        const WT *restrict w, const ptrdiff_t *wo, size_t ws, size_t wco, int taps, int n,       \
        int nco, int cols)                                                                       \
    {                                                                                            \
        enum { L = ALOHA_VEC_BYTES / sizeof(UT), NV = OX_BLOCK / L };                            \
        vec_##NAME a0[NV], a1[NV], a2[NV], a3[NV];                                               \
        int t, c, v, j;                                                                          \
        if (nco != 4) { /* a group's last channels: one at a time, same order */                 \
            for (j = 0; j < nco; j++) {                                                          \
                memcpy(a0, acc[j], sizeof a0);                                                   \
                for (t = 0; t < taps; t++)                                                       \
                    for (c = 0; c < n; c++) {                                                    \
                        const UT wv = (UT)(AT)w[wo[t] + j * wco + (size_t)c * ws];               \
                        for (v = 0; v < NV; v++)                                                 \
                            a0[v] += wv * load_##NAME(x + xo[t] + (size_t)c * xs + v * L);       \
                    }                                                                            \
                memcpy(acc[j], a0, sizeof a0);                                                   \
            }                                                                                    \
            return;                                                                              \
        }                                                                                        \
        memcpy(a0, acc[0], sizeof a0);                                                           \
        memcpy(a1, acc[1], sizeof a1);                                                           \
        memcpy(a2, acc[2], sizeof a2);                                                           \
        memcpy(a3, acc[3], sizeof a3);                                                           \
        if (cols <= OX_BLOCK / 2)                                                                \
            MKT_TAPS(NAME, XT, WT, AT, UT, 0, NV / 2)                                            \
        else if (NV > 2) { /* 64-bit sums: 16 vectors of sums would not fit the registers */     \
            MKT_TAPS(NAME, XT, WT, AT, UT, 0, NV / 2)                                            \
            MKT_TAPS(NAME, XT, WT, AT, UT, NV / 2, NV)                                           \
        } else                                                                                   \
            MKT_TAPS(NAME, XT, WT, AT, UT, 0, NV)                                                \
        memcpy(acc[0], a0, sizeof a0);                                                           \
        memcpy(acc[1], a1, sizeof a1);                                                           \
        memcpy(acc[2], a2, sizeof a2);                                                           \
        memcpy(acc[3], a3, sizeof a3);                                                           \
    }                                                                                            \
    /* One tap: the gather path's call. */                                                       \
    static void mk_##NAME(UT (*restrict acc)[OX_BLOCK], const XT *restrict x, size_t xs,         \
                          const WT *restrict w, size_t ws, size_t wco, int n, int nco)           \
    {                                                                                            \
        static const ptrdiff_t origin = 0;                                                       \
        mkt_##NAME(acc, x, &origin, xs, w, &origin, ws, wco, 1, n, nco, OX_BLOCK);               \
    }
/* Sums in double hold exact integers (products below 2^31, sums below 2^53): a fused multiply-add
 * rounds nothing there, so GCC may contract them (ISO C mode keeps every multiply and add apart);
 * float sums stay uncontracted, the reference's order and roundings. */
#if defined(__GNUC__) && !defined(__clang__)
#define MK_CONTRACT_double __attribute__((optimize("fp-contract=fast")))
#else
#define MK_CONTRACT_double
#endif
#define MK_CONTRACT_float
#define MK_CONTRACT_uint32_t
#define MK_CONTRACT_uint64_t
/* The taps' sums into a0..a3 over the vectors [V0, V1) of the tile's columns. */
#define MKT_TAPS(NAME, XT, WT, AT, UT, V0, V1)                                                   \
    for (t = 0; t < taps; t++) {                                                                 \
        const XT *restrict xt = x + xo[t];                                                       \
        const WT *restrict wt = w + wo[t];                                                       \
        for (c = 0; c < n; c++) {                                                                \
            const XT *restrict xc = xt + (size_t)c * xs;                                         \
            const WT *restrict wc = wt + (size_t)c * ws;                                         \
            const UT w0 = (UT)(AT)wc[0], w1 = (UT)(AT)wc[wco], w2 = (UT)(AT)wc[2 * wco],         \
                     w3 = (UT)(AT)wc[3 * wco];                                                   \
            for (v = V0; v < V1; v++) {                                                          \
                vec_##NAME xv = load_##NAME(xc + v * L);                                         \
                ALOHA_IN_REGISTER(xv);                                                           \
                a0[v] += w0 * xv;                                                                \
                a1[v] += w1 * xv;                                                                \
                a2[v] += w2 * xv;                                                                \
                a3[v] += w3 * xv;                                                                \
            }                                                                                    \
        }                                                                                        \
    }
#else
#define MK_VEC MK_PLAIN
#endif

/* CONV_TILE instantiates mk_NAME with MK (MK_VEC, MK_PLAIN) and, for the same types:
 *   gather_NAME t[c][i] = xr[c * xs + (ox0 + i) * s + off] for ox0 + i in [lo, hi), else 0
 *   tile_NAME   acc = the sums of the tile (co .. co + nco) x (ox0 .. ox0 + OX_BLOCK) of row oy */
#ifdef ALOHA_VECTOR_FLOAT
#define MK_FLOAT MK_VEC
#else
#define MK_FLOAT MK_PLAIN
#endif
#define CONV_TILE(NAME, XT, WT, AT, UT, MK, EMIT, ST, SNAME)                                     \
    CONV_GATHER(NAME, XT, WT, AT, UT, MK)                                                        \
    CONV_TILE_ST(NAME, WT, UT, ST, SNAME)                                                        \
    CONV_STAGE(NAME, XT, AT, ST)                                                                 \
    CONV_ROWS(NAME, NAME, WT, UT, ST, EMIT, stage_shape)
/* CONV_GATHER: the micro-kernel mk_NAME and the gather path's tiles */
#define CONV_GATHER(NAME, XT, WT, AT, UT, MK)                                                    \
    MK(NAME, XT, WT, AT, UT)                                                                     \
    static void gather_##NAME(XT (*restrict t)[OX_BLOCK], const XT *restrict xr, size_t xs,      \
                              int n, int s, int off, int ox0, int lo, int hi)                    \
    {                                                                                            \
        int c, i;                                                                                \
        for (c = 0; c < n; c++) {                                                                \
            const XT *restrict xc = xr + (size_t)c * xs;                                         \
            for (i = 0; i < OX_BLOCK; i++)                                                       \
                t[c][i] = 0;                                                                     \
            for (i = lo - ox0; i < hi - ox0; i++)                                                \
                t[c][i] = xc[(ptrdiff_t)(ox0 + i) * s + off];                                    \
        }                                                                                        \
    }                                                                                            \
    static void tile_##NAME(UT (*restrict acc)[OX_BLOCK], const aloha_win_t *x, const WT *w,     \
                            const aloha_conv_t *g, int iy0, int ky_lo, int ky_hi, int co,        \
                            int nco, int ox0)                                                    \
    {                                                                                            \
        const int cig = g->cin / g->group, cog = g->cout / g->group, ksz = g->kh * g->kw;        \
        const size_t wco = (size_t)cig * ksz, cbase = (size_t)(co / cog) * cig;                  \
        XT t[CONV_PANEL][OX_BLOCK];                                                              \
        int ky, kx, c0, lo, hi;                                                                  \
        memset(acc, 0, sizeof(UT) * CO_BLOCK * OX_BLOCK);                                        \
        for (ky = ky_lo; ky < ky_hi; ky++) {                                                     \
            const XT *row = (const XT *)x->p + win_offset(x, iy0 + ky * g->dh) + cbase * g->w;   \
            for (kx = 0; kx < g->kw; kx++) {                                                     \
                const int off = kx * g->dw - g->pl;                                              \
                const WT *wk = w + co * wco + ky * g->kw + kx;                                   \
                tile_range(off, g->sw, g->w, g->ow, ox0, OX_BLOCK, &lo, &hi);                    \
                if (lo >= hi)                                                                    \
                    continue;                                                                    \
                if (g->sw == 1 && lo == ox0 && hi == ox0 + OX_BLOCK) {                           \
                    mk_##NAME(acc, row + (ox0 + off), (size_t)g->w, wk, (size_t)ksz, wco, cig,   \
                              nco);                                                              \
                    continue;                                                                    \
                }                                                                                \
                for (c0 = 0; c0 < cig; c0 += CONV_PANEL) {                                       \
                    const int nc = cig - c0 < CONV_PANEL ? cig - c0 : CONV_PANEL;                \
                    gather_##NAME(t, row + (size_t)c0 * g->w, (size_t)g->w, nc, g->sw, off, ox0, \
                                  lo, hi);                                                       \
                    mk_##NAME(acc, &t[0][0], OX_BLOCK, wk + (size_t)c0 * ksz, (size_t)ksz, wco,  \
                              nc, nco);                                                          \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
    }
/* CONV_TILE_ST: a staged tile's sums by SNAME's micro-kernel */
#define CONV_TILE_ST(NAME, WT, UT, ST, SNAME)                                                    \
    static void tile_st_##NAME(UT (*restrict acc)[OX_BLOCK], const ST *st, const WT *w,          \
                               const aloha_conv_t *g, const conv_stage *s, int ky_lo, int ky_hi, \
                               int co, int nco, int cols)                                        \
    {                                                                                            \
        const int ksz = g->kh * g->kw;                                                           \
        const size_t wco = (size_t)(g->cin / g->group) * ksz;                                    \
        ptrdiff_t xo[CONV_TAPS], wo[CONV_TAPS];                                                  \
        int ky, kx, n = 0;                                                                       \
        memset(acc, 0, sizeof(UT) * CO_BLOCK * OX_BLOCK);                                        \
        if (!mkt_in_registers_##SNAME) { /* plain loops: no tap list to build */                 \
            for (ky = ky_lo; ky < ky_hi; ky++)                                                   \
                for (kx = 0; kx < g->kw; kx++) {                                                 \
                    const int t = kx * g->dw;                                                    \
                    mk_##SNAME(acc, st + stage_at(s, ky - ky_lo, 0, t % g->sw, g->sw) + t / g->sw,\
                               (size_t)g->sw * s->len, w + co * wco + ky * g->kw + kx,           \
                               (size_t)ksz, wco, s->cig, nco);                                   \
                }                                                                                \
            return;                                                                              \
        }                                                                                        \
        for (ky = ky_lo; ky < ky_hi; ky++)                                                       \
            for (kx = 0; kx < g->kw; kx++) {                                                     \
                const int t = kx * g->dw;                                                        \
                xo[n] = (ptrdiff_t)(stage_at(s, ky - ky_lo, 0, t % g->sw, g->sw) + t / g->sw);   \
                wo[n++] = ky * g->kw + kx;                                                       \
                if (n == CONV_TAPS) {                                                            \
                    mkt_##SNAME(acc, st, xo, (size_t)g->sw * s->len, w + co * wco, wo,            \
                               (size_t)ksz, wco, n, s->cig, nco, cols);                          \
                    n = 0;                                                                       \
                }                                                                                \
            }                                                                                    \
        if (n)                                                                                   \
            mkt_##SNAME(acc, st, xo, (size_t)g->sw * s->len, w + co * wco, wo, (size_t)ksz, wco,  \
                       n, s->cig, nco, cols);                                                    \
    }
/* CONV_STAGE_OF: stage_NAME, PER input channels to a stage element ELEM(XT, AT, ST, xc, i, whole)
 * of channel run xc's column i (whole: the element's channels all exist). */
#define CONV_STAGE_OF(NAME, XT, AT, ST, PER, ELEM)                                               \
    static void stage_##NAME(ST *restrict st, const aloha_win_t *x, const aloha_conv_t *g,       \
                             const conv_stage *s, size_t cbase, int iy0, int ky_lo, int ky_hi,   \
                             int ox0)                                                            \
    {                                                                                            \
        const int cig = g->cin / g->group;                                                       \
        int ky, c, p, q, lo, hi;                                                                 \
        for (ky = ky_lo; ky < ky_hi; ky++) {                                                     \
            const XT *row = (const XT *)x->p + win_offset(x, iy0 + ky * g->dh) + cbase * g->w;   \
            for (p = 0; p < g->sw; p++) {                                                        \
                const int first = ox0 * g->sw + p - g->pl; /* the input column of q = 0 */       \
                tap_range(first, g->sw, s->len, 0, g->w, &lo, &hi);                              \
                for (c = 0; c < s->cig; c++) {                                                   \
                    ST *restrict d = st + stage_at(s, ky - ky_lo, c, p, g->sw);                  \
                    const XT *xc = row + (ptrdiff_t)(PER) * c * g->w + first;                    \
                    const int whole = (PER) * (c + 1) <= cig;                                    \
                    (void)whole;                                                                 \
                    for (q = 0; q < lo; q++)                                                     \
                        d[q] = 0;                                                                \
                    for (; q < hi; q++)                                                          \
                        d[q] = ELEM(XT, AT, ST, xc, (ptrdiff_t)q * g->sw, whole);                \
                    for (; q < s->len; q++)                                                      \
                        d[q] = 0;                                                                \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
    }
#define STAGE_ONE(XT, AT, ST, XC, I, WHOLE) (ST)(AT)(XC)[I]
#define CONV_STAGE(NAME, XT, AT, ST) CONV_STAGE_OF(NAME, XT, AT, ST, 1, STAGE_ONE)
/* CONV_ROWS: rows_RNAME, NAME's staged or gathered tiles over a row's column tiles */
#define CONV_ROWS(NAME, RNAME, WT, UT, ST, EMIT, SHAPE)                                          \
    static void rows_##RNAME(const aloha_win_t *x, const WT *w, const aloha_conv_t *g,           \
                            const conv_post *post, int oy, int co_lo, int co_hi)                 \
    {                                                                                            \
        const int cog = g->cout / g->group, iy0 = oy * g->sh - g->pt;                            \
        ST st[ALOHA_CONV_STAGE_BYTES / sizeof(ST)];                                              \
        UT acc[CO_BLOCK][OX_BLOCK];                                                              \
        conv_stage s;                                                                            \
        int gi, co, nco, ox0, ky_lo, ky_hi, staged;                                              \
        tap_range(iy0, g->dh, g->kh, 0, g->h, &ky_lo, &ky_hi);                                   \
        s = SHAPE(g, ky_hi - ky_lo);                                                             \
        staged = s.elems <= sizeof st / sizeof st[0];                                            \
        for (gi = co_lo / cog; gi * cog < co_hi; gi++) {                                         \
            const int ga = gi * cog > co_lo ? gi * cog : co_lo;                                  \
            const int gb = (gi + 1) * cog < co_hi ? (gi + 1) * cog : co_hi;                      \
            for (ox0 = 0; ox0 < g->ow; ox0 += OX_BLOCK) {                                        \
                const int n = g->ow - ox0 < OX_BLOCK ? g->ow - ox0 : OX_BLOCK;                   \
                if (staged)                                                                      \
                    stage_##NAME(st, x, g, &s, (size_t)gi * (g->cin / g->group), iy0, ky_lo,    \
                                  ky_hi, ox0);                                                   \
                for (co = ga; co < gb; co += nco) {                                              \
                    nco = co_block(co, gb, cog);                                                 \
                    if (staged)                                                                  \
                        tile_st_##NAME(acc, st, w, g, &s, ky_lo, ky_hi, co, nco, n);             \
                    else                                                                         \
                        tile_##NAME(acc, x, w, g, iy0, ky_lo, ky_hi, co, nco, ox0);              \
                    EMIT(acc, post, co, nco, ox0, n, g->ow);                                     \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
    }

/* The float epilogue of a tile: bias, then the activation, into the output row. */
static void emit_f32(float (*acc)[OX_BLOCK], const conv_post *post, int co, int nco, int ox0,
                     int n, int ow)
{
    const float *bias = (const float *)post->bias;
    int j;
    for (j = 0; j < nco; j++)
        act_row_f32(acc[j], n, bias ? bias + co + j : NULL, post->act,
                    (float *)post->out + (size_t)(co + j - post->co_lo) * ow + ox0);
}

CONV_TILE(f32, float, float, float, float, MK_FLOAT, emit_f32, float, f32)

void aloha_conv_row_f32(const aloha_win_t *x, const float *w, const float *bias,
                        const aloha_conv_t *g, const aloha_act_t *act, int oy, int co_lo,
                        int co_hi, float *out)
{
    const conv_post post = conv_post_of(bias, act, NULL, out, co_lo);
    rows_f32(x, w, g, &post, oy, co_lo, co_hi);
}

/* The integer convolutions, one per (input type, weight type, accumulator): CONV_Q instantiates
 * the tiles and the row loop for element types XT (input) and WT (weights) summing in AT with
 * wrapping unsigned UT. With AT = int32_t the generator proved that no sum of products leaves
 * int32 (and 16-bit operands' products always fit int), so the result equals the reference's
 * int64; with AT = int64_t products are exact and sums wrap modulo 2^64 like numpy's.
 *
 * 64-bit integer vectors have no multiply on most vector units (AVX2, NEON): for 8/16-bit
 * operands CONV_Q_NARROW64 sums in double instead where the hardware has it (ALOHA_DOUBLE_SUMS).
 * A product is then below 2^16 x 2^15 = 2^31 in magnitude, so every partial sum of up to
 * DOUBLE_FAN_IN (2^22) products is an integer below 2^53: exact in double, never wrapping, the
 * reference's int64 sum. A larger fan-in takes the int64 sums. The operands go to double through
 * int32_t (AT of the tiles), which vector units convert directly. */
#define CONV_EMIT(NAME, AT, UT)                                                                  \
    static void emit_##NAME(UT (*acc)[OX_BLOCK], const conv_post *post, int co, int nco,         \
                            int ox0, int n, int ow)                                              \
    {                                                                                            \
        const int32_t *bias = (const int32_t *)post->bias;                                       \
        int64_t sums[OX_BLOCK];                                                                  \
        int j, i;                                                                                \
        for (j = 0; j < nco; j++) {                                                              \
            for (i = 0; i < n; i++)                                                              \
                sums[i] = wrap_add((int64_t)(AT)acc[j][i], bias ? bias[co + j] : 0);             \
            requant_row(sums, n, co + j, post->rq, post->out,                                    \
                        (size_t)(co + j - post->co_lo) * ow + ox0);                              \
        }                                                                                        \
    }
/* The micro-kernel per accumulator: 32-bit sums in vectors; 64-bit ones in vectors only on a
 * 64-bit target: 32-bit ARM has no 64-bit vector multiply, and its NEON code for them took mnist-8
 * at 16 bits to 11.1 M instructions a frame against 7.2 M for the plain loops (benchmarks/cross.py). */
#define MK_ACC_uint32_t MK_VEC
#if defined(__arm__) && !defined(__aarch64__)
#define MK_ACC_uint64_t MK_PLAIN
#else
#define MK_ACC_uint64_t MK_VEC
#endif
/* CONV_TILE_WIDE stages the input converted to the sum type UT, once per column tile for all the
 * output channels, where the micro-kernel is vectorised: its loads are then plain vector loads
 * (widening lane by lane in the micro-kernel took a scalar load, convert and insert per lane,
 * for every channel block again). 32-bit sums only on 32-bit ARM: its 64-bit sums run plain loops,
 * where a staged element 8 times wider would only cost memory. */
#ifdef ALOHA_VECTOR_EXT
#define CONV_TILE_WIDE(NAME, XT, WT, AT, UT, MK, EMIT)                                           \
    MK(NAME##_s, UT, WT, AT, UT)                                                                 \
    CONV_TILE(NAME, XT, WT, AT, UT, MK, EMIT, UT, NAME##_s)
#else
#define CONV_TILE_WIDE(NAME, XT, WT, AT, UT, MK, EMIT) CONV_TILE(NAME, XT, WT, AT, UT, MK, EMIT, XT, NAME)
#endif
/* Multiply-adds of pairs (x86 AVX2 vpmaddwd: two 16-bit products summed into a 32-bit lane, 16
 * products an instruction against 8 for a 32-bit multiply) for the int32 sums of 8-bit and signed
 * 16-bit operands: the stage holds the input channels in pairs, (even, odd) as two 16-bit halves
 * of a 32-bit lane, and the micro-kernel multiplies each by the same pair of weights. The sums are
 * the reference's: a product of two 16-bit values is exact in 32 bits and every sum wraps modulo
 * 2^32 like the accumulator's (the one pair sum vpmaddwd wraps, (-2^15)^2 x 2, wraps the same).
 * Unsigned 16-bit inputs do not fit its signed halves and keep the wide path, and so does every
 * other target: the portable vector code had no form compilers turn into it. */
#if defined(ALOHA_VECTOR_EXT) && defined(__AVX2__) && ALOHA_VEC_BYTES == 32 && \
    !defined(ALOHA_NO_PAIR_SUMS)
#include <immintrin.h>
#define ALOHA_PAIR_SUMS 1

/* Two 16-bit values in a 32-bit lane, lo in the low half. */
static ALOHA_MAYBE_UNUSED uint32_t pair16(int32_t lo, int32_t hi)
{
    return (uint32_t)(uint16_t)lo | (uint32_t)(uint16_t)hi << 16;
}

/* The pair stage: conv_stage's layout with channel pairs for channels, a pair per element. */
static ALOHA_MAYBE_UNUSED conv_stage stage_shape_pair(const aloha_conv_t *g, int nky)
{
    conv_stage s = stage_shape(g, nky);
    s.cig = (s.cig + 1) / 2;
    s.elems = (size_t)(nky > 0 ? nky : 0) * (size_t)s.cig * (size_t)g->sw * (size_t)s.len;
    return s;
}

/* The pair micro-kernel, pairs_NAME, has mkt_NAME's contract over the pair stage: n channel pairs,
 * channel j's sums into acc[j]. Its weights are either packed in pairs (PACKED 1, pack_NAME below:
 * pair c of tap t of channel j at w[j * wco + c * ws + wo[t]]) or read in place (PACKED 0: the
 * layer's own weights, channel c's at w[j * wco + c * ws + wo[t]], paired as they are used; the
 * odd channel past the group's last, pair c >= full, is 0). */
#define PAIR_OF(WC, OFF, ODD)                                                                    \
    (PACKED ? (int32_t)(WC)[OFF] : (int32_t)pair16((WC)[OFF], (ODD) ? (WC)[(OFF) + ws] : 0))
#define PAIR_AT(T, C) (w + wo[T] + (size_t)(C) * (PACKED ? ws : 2 * ws))
#define PAIR_STEP(WT, TWO, ODD)                                                                  \
    {                                                                                            \
        const uint32_t *restrict xc = x + xo[t] + (size_t)c * xs;                                \
        const WT *restrict wc = PAIR_AT(t, c);                                                   \
        const __m256i b0 = _mm256_set1_epi32(PAIR_OF(wc, 0, ODD)),                               \
                      b1 = _mm256_set1_epi32(PAIR_OF(wc, wco, ODD)),                             \
                      b2 = _mm256_set1_epi32(PAIR_OF(wc, 2 * wco, ODD)),                         \
                      b3 = _mm256_set1_epi32(PAIR_OF(wc, 3 * wco, ODD));                         \
        __m256i xv = _mm256_loadu_si256((const __m256i *)xc);                                    \
        ALOHA_IN_REGISTER(xv);                                                                   \
        a00 = _mm256_add_epi32(a00, _mm256_madd_epi16(xv, b0));                                  \
        a10 = _mm256_add_epi32(a10, _mm256_madd_epi16(xv, b1));                                  \
        a20 = _mm256_add_epi32(a20, _mm256_madd_epi16(xv, b2));                                  \
        a30 = _mm256_add_epi32(a30, _mm256_madd_epi16(xv, b3));                                  \
        if (TWO) {                                                                               \
            xv = _mm256_loadu_si256((const __m256i *)(xc + 8));                                  \
            ALOHA_IN_REGISTER(xv);                                                               \
            a01 = _mm256_add_epi32(a01, _mm256_madd_epi16(xv, b0));                              \
            a11 = _mm256_add_epi32(a11, _mm256_madd_epi16(xv, b1));                              \
            a21 = _mm256_add_epi32(a21, _mm256_madd_epi16(xv, b2));                              \
            a31 = _mm256_add_epi32(a31, _mm256_madd_epi16(xv, b3));                              \
        }                                                                                        \
    }
#define PAIR_TAPS(WT, TWO)                                                                       \
    for (t = 0; t < taps; t++) {                                                                 \
        for (c = 0; c < full; c++)                                                               \
            PAIR_STEP(WT, TWO, 1)                                                                \
        if (c < n)                                                                               \
            PAIR_STEP(WT, TWO, 0)                                                                \
    }
#define PAIR_LOAD(J)                                                                             \
    a##J##0 = _mm256_loadu_si256((const __m256i *)acc[J]);                                       \
    a##J##1 = _mm256_loadu_si256((const __m256i *)(acc[J] + 8));
#define PAIR_STORE(J)                                                                            \
    _mm256_storeu_si256((__m256i *)acc[J], a##J##0);                                             \
    _mm256_storeu_si256((__m256i *)(acc[J] + 8), a##J##1);
#define PAIR_KERNEL(NAME, WT, PACKED_)                                                           \
    /* One channel's sums (a group's last channels, fewer than four to a tile). */               \
    static ALOHA_MAYBE_UNUSED void pairs1_##NAME(                                                \
        uint32_t *restrict acc, const uint32_t *restrict x, const ptrdiff_t *xo, size_t xs,      \
        const WT *restrict w, const ptrdiff_t *wo, size_t ws, int taps, int n, int full)         \
    {                                                                                            \
        enum { PACKED = PACKED_ };                                                               \
        __m256i s0 = _mm256_loadu_si256((const __m256i *)acc),                                   \
                s1 = _mm256_loadu_si256((const __m256i *)(acc + 8));                             \
        int t, c;                                                                                \
        for (t = 0; t < taps; t++)                                                               \
            for (c = 0; c < n; c++) {                                                            \
                const uint32_t *restrict xc = x + xo[t] + (size_t)c * xs;                        \
                const WT *restrict wc = PAIR_AT(t, c);                                           \
                const __m256i b = _mm256_set1_epi32(PAIR_OF(wc, 0, c < full)),                   \
                              x0 = _mm256_loadu_si256((const __m256i *)xc),                      \
                              x1 = _mm256_loadu_si256((const __m256i *)(xc + 8));               \
                s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(x0, b));                             \
                s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(x1, b));                             \
            }                                                                                    \
        _mm256_storeu_si256((__m256i *)acc, s0);                                                 \
        _mm256_storeu_si256((__m256i *)(acc + 8), s1);                                           \
    }                                                                                            \
    static ALOHA_NOINLINE ALOHA_MAYBE_UNUSED void pairs_##NAME(                                  \
        uint32_t (*restrict acc)[OX_BLOCK], const uint32_t *restrict x, const ptrdiff_t *xo,     \
        size_t xs, const WT *restrict w, const ptrdiff_t *wo, size_t ws, size_t wco, int taps,   \
        int n, int nco, int cols)                                                                \
    {                                                                                            \
        enum { PACKED = PACKED_ };                                                               \
        const int full = PACKED ? n : (int)(wco / ws) / 2; /* pairs of two channels */           \
        __m256i a00, a01, a10, a11, a20, a21, a30, a31;                                          \
        int t, c;                                                                                \
        if (nco != CO_BLOCK) {                                                                   \
            for (c = 0; c < nco; c++)                                                            \
                pairs1_##NAME(acc[c], x, xo, xs, w + (size_t)c * wco, wo, ws, taps, n, full);    \
            return;                                                                              \
        }                                                                                        \
        PAIR_LOAD(0) PAIR_LOAD(1) PAIR_LOAD(2) PAIR_LOAD(3)                                      \
        if (cols <= OX_BLOCK / 2)                                                                \
            PAIR_TAPS(WT, 0)                                                                     \
        else                                                                                     \
            PAIR_TAPS(WT, 1)                                                                     \
        PAIR_STORE(0) PAIR_STORE(1) PAIR_STORE(2) PAIR_STORE(3)                                  \
    }
PAIR_KERNEL(packed, uint32_t, 1)

/* The pair stage of one column tile: stage_NAME's, two channels to an element (the odd one 0 past
 * the group's last). */
#define STAGE_PAIR(XT, AT, ST, XC, I, WHOLE) pair16((XC)[I], (WHOLE) ? (XC)[(I) + g->w] : 0)
#define CONV_STAGE_PAIR(NAME, XT) CONV_STAGE_OF(NAME, XT, int32_t, uint32_t, 2, STAGE_PAIR)
/* The packed weights of a tile row of output channels: for each channel, each pair of input
 * channels and each kernel tap, the pair's two weights (the odd one 0 past the group's last
 * channel), in the order of the stage's pairs. Packed once per row call and chunk of channels,
 * they serve every column tile of the row. */
#define ALOHA_PAIR_PACK_BYTES (128 * 1024)
#define PAIR_TAPS_MAX 256 /* kernel taps of a row (a 16 x 16 kernel); more take the gather path */
#define CONV_PACK_PAIR(NAME, WT)                                                                 \
    static void pack_##NAME(uint32_t *restrict wp, const WT *restrict w, int cig, int ksz,       \
                            int c0, int c1)                                                      \
    {                                                                                            \
        const int half = cig / 2, cigh = (cig + 1) / 2;                                          \
        int co, cp, t;                                                                           \
        for (co = c0; co < c1; co++) {                                                           \
            const WT *restrict wc = w + (size_t)co * cig * ksz;                                  \
            uint32_t *restrict d = wp + (size_t)(co - c0) * cigh * ksz;                          \
            if (ksz == 1) /* a 1x1 kernel: adjacent weights pair */                              \
                for (cp = 0; cp < half; cp++)                                                    \
                    d[cp] = pair16(wc[2 * cp], wc[2 * cp + 1]);                                  \
            else                                                                                 \
                for (cp = 0; cp < half; cp++)                                                    \
                    for (t = 0; t < ksz; t++)                                                    \
                        d[cp * ksz + t] = pair16(wc[2 * cp * ksz + t], wc[(2 * cp + 1) * ksz + t]); \
            if (cig % 2)                                                                         \
                for (t = 0; t < ksz; t++)                                                        \
                    d[half * ksz + t] = pair16(wc[(cig - 1) * ksz + t], 0);                      \
        }                                                                                        \
    }
/* The pair path's row: stage each column tile and sum its channel tiles by the pair kernel. A row
 * of at least PAIR_PACK_TILES column tiles first packs its weights (in chunks of the group's
 * channels that fit ALOHA_PAIR_PACK_BYTES), once for all the tiles; a narrower one pairs them as
 * it reads them: packing them cost as much again as one tile's sums. A row whose stage does not
 * fit takes the gather path. */
#define PAIR_PACK_TILES 3
#define CONV_ROWS_PAIR(NAME, WT, UT, EMIT)                                                       \
    PAIR_KERNEL(NAME, WT, 0)                                                                     \
    static void rows_##NAME(const aloha_win_t *x, const WT *w, const aloha_conv_t *g,            \
                            const conv_post *post, int oy, int co_lo, int co_hi)                 \
    {                                                                                            \
        const int cig = g->cin / g->group, cog = g->cout / g->group, iy0 = oy * g->sh - g->pt;   \
        const int ksz = g->kh * g->kw, tiles = (g->ow + OX_BLOCK - 1) / OX_BLOCK;               \
        uint32_t st[ALOHA_CONV_STAGE_BYTES / sizeof(uint32_t)];                                  \
        uint32_t wp[ALOHA_PAIR_PACK_BYTES / sizeof(uint32_t)];                                   \
        UT acc[CO_BLOCK][OX_BLOCK];                                                              \
        ptrdiff_t xo[PAIR_TAPS_MAX], wo[PAIR_TAPS_MAX];                                          \
        conv_stage s;                                                                            \
        size_t wco;                                                                              \
        int gi, co, nco, ox0, ky, kx, ky_lo, ky_hi, c0, c1, chunk, taps = 0;                     \
        tap_range(iy0, g->dh, g->kh, 0, g->h, &ky_lo, &ky_hi);                                   \
        s = stage_shape_pair(g, ky_hi - ky_lo);                                                  \
        wco = (size_t)s.cig * ksz;                                                               \
        chunk = tiles < PAIR_PACK_TILES ? 0                                                      \
                : (int)(sizeof wp / sizeof wp[0] / (wco ? wco : 1)) / CO_BLOCK * CO_BLOCK;       \
        if (s.elems > sizeof st / sizeof st[0] || (ky_hi - ky_lo) * g->kw > PAIR_TAPS_MAX) {     \
            for (gi = co_lo / cog; gi * cog < co_hi; gi++) {                                     \
                const int ga = gi * cog > co_lo ? gi * cog : co_lo;                              \
                const int gb = (gi + 1) * cog < co_hi ? (gi + 1) * cog : co_hi;                  \
                for (ox0 = 0; ox0 < g->ow; ox0 += OX_BLOCK)                                      \
                    for (co = ga; co < gb; co += nco) {                                          \
                        nco = co_block(co, gb, cog);                                             \
                        tile_##NAME(acc, x, w, g, iy0, ky_lo, ky_hi, co, nco, ox0);              \
                        EMIT(acc, post, co, nco, ox0,                                            \
                             g->ow - ox0 < OX_BLOCK ? g->ow - ox0 : OX_BLOCK, g->ow);            \
                    }                                                                            \
            }                                                                                    \
            return;                                                                              \
        }                                                                                        \
        for (ky = ky_lo; ky < ky_hi; ky++) /* the taps of every tile */                          \
            for (kx = 0; kx < g->kw; kx++) {                                                     \
                const int t = kx * g->dw;                                                        \
                xo[taps] = (ptrdiff_t)(stage_at(&s, ky - ky_lo, 0, t % g->sw, g->sw) + t / g->sw); \
                wo[taps++] = ky * g->kw + kx;                                                    \
            }                                                                                    \
        for (gi = co_lo / cog; gi * cog < co_hi; gi++) {                                         \
            const int ga = gi * cog > co_lo ? gi * cog : co_lo;                                  \
            const int gb = (gi + 1) * cog < co_hi ? (gi + 1) * cog : co_hi;                      \
            for (c0 = ga; c0 < gb; c0 = c1) {                                                    \
                c1 = chunk == 0 || gb - c0 < chunk ? gb : c0 + chunk;                            \
                if (chunk)                                                                       \
                    pack_##NAME(wp, w, cig, ksz, c0, c1);                                        \
                for (ox0 = 0; ox0 < g->ow; ox0 += OX_BLOCK) {                                    \
                    const int n = g->ow - ox0 < OX_BLOCK ? g->ow - ox0 : OX_BLOCK;               \
                    stage_##NAME(st, x, g, &s, (size_t)gi * cig, iy0, ky_lo, ky_hi, ox0);        \
                    for (co = c0; co < c1; co += nco) {                                          \
                        nco = co_block(co, c1, cog);                                             \
                        memset(acc, 0, sizeof acc);                                              \
                        if (chunk)                                                               \
                            pairs_packed(acc, st, xo, (size_t)g->sw * s.len,                     \
                                         wp + (size_t)(co - c0) * wco, wo, (size_t)ksz, wco,     \
                                         taps, s.cig, nco, n);                                   \
                        else                                                                     \
                            pairs_##NAME(acc, st, xo, (size_t)g->sw * s.len,                     \
                                         w + (size_t)co * cig * ksz, wo, (size_t)ksz,            \
                                         (size_t)cig * ksz, taps, s.cig, nco, n);                \
                        EMIT(acc, post, co, nco, ox0, n, g->ow);                                 \
                    }                                                                            \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
    }
#define CONV_TILE_PAIR(NAME, XT, WT, AT, UT, MK, EMIT)                                           \
    CONV_GATHER(NAME, XT, WT, AT, UT, MK)                                                        \
    CONV_STAGE_PAIR(NAME, XT)                                                                    \
    CONV_PACK_PAIR(NAME, WT)                                                                     \
    CONV_ROWS_PAIR(NAME, WT, UT, EMIT)
#define CONV_TILE_uint32_t(NAME, XT, WT, AT, UT, MK, EMIT)                                       \
    CONV_TILE_PAIR_##XT(NAME, XT, WT, AT, UT, MK, EMIT)
#define CONV_TILE_PAIR_int8_t CONV_TILE_PAIR
#define CONV_TILE_PAIR_uint8_t CONV_TILE_PAIR
#define CONV_TILE_PAIR_int16_t CONV_TILE_PAIR
#define CONV_TILE_PAIR_uint16_t CONV_TILE_WIDE
#else
#define CONV_TILE_uint32_t CONV_TILE_WIDE
#endif
/* CONV_TILE_PACKED: CONV_TILE_WIDE's tiles, whose rows first convert the weights to the sum type
 * UT (in chunks of the group's channels that fit ALOHA_PACK_BYTES), once for all the row's column
 * tiles: the micro-kernel then broadcasts each weight straight from memory. For sums in double,
 * converting each weight where it is used (a load, a convert and a broadcast, four times a
 * channel) bounded the loop. A row whose stage does not fit, or whose chunks would be fewer than
 * PACK_CHUNK channels (restaging the input for each cost more than the conversion saves: a
 * 7 x 7 x 512 layer's 3x3 took 3x longer), runs the unconverted tiles. */
#define ALOHA_PACK_BYTES (256 * 1024)
#define PACK_CHUNK 16 /* channels a chunk at least (or all): each chunk stages the input again */
#define CONV_ROWS_PACKED(NAME, WT, AT, UT, EMIT)                                                 \
    static void rows_##NAME(const aloha_win_t *x, const WT *w, const aloha_conv_t *g,            \
                            const conv_post *post, int oy, int co_lo, int co_hi)                 \
    {                                                                                            \
        const int cig = g->cin / g->group, cog = g->cout / g->group, iy0 = oy * g->sh - g->pt;   \
        const size_t wco = (size_t)cig * g->kh * g->kw;                                          \
        UT st[ALOHA_CONV_STAGE_BYTES / sizeof(UT)];                                              \
        UT wp[ALOHA_PACK_BYTES / sizeof(UT)];                                                    \
        UT acc[CO_BLOCK][OX_BLOCK];                                                              \
        conv_stage s;                                                                            \
        size_t i;                                                                                \
        int gi, co, nco, ox0, ky_lo, ky_hi, c0, c1, chunk;                                       \
        tap_range(iy0, g->dh, g->kh, 0, g->h, &ky_lo, &ky_hi);                                   \
        s = stage_shape(g, ky_hi - ky_lo);                                                       \
        chunk = (int)(sizeof wp / sizeof wp[0] / wco) / CO_BLOCK * CO_BLOCK;                     \
        if (s.elems > sizeof st / sizeof st[0] || chunk == 0 ||                                  \
            (chunk < PACK_CHUNK && chunk < (co_hi - co_lo < cog ? co_hi - co_lo : cog))) {       \
            rows_##NAME##_u(x, w, g, post, oy, co_lo, co_hi);                                    \
            return;                                                                              \
        }                                                                                        \
        for (gi = co_lo / cog; gi * cog < co_hi; gi++) {                                         \
            const int ga = gi * cog > co_lo ? gi * cog : co_lo;                                  \
            const int gb = (gi + 1) * cog < co_hi ? (gi + 1) * cog : co_hi;                      \
            for (c0 = ga; c0 < gb; c0 = c1) {                                                    \
                c1 = gb - c0 < chunk ? gb : c0 + chunk;                                          \
                for (i = 0; i < (size_t)(c1 - c0) * wco; i++)                                    \
                    wp[i] = (UT)(AT)w[(size_t)c0 * wco + i];                                     \
                for (ox0 = 0; ox0 < g->ow; ox0 += OX_BLOCK) {                                    \
                    const int n = g->ow - ox0 < OX_BLOCK ? g->ow - ox0 : OX_BLOCK;               \
                    stage_##NAME(st, x, g, &s, (size_t)gi * cig, iy0, ky_lo, ky_hi, ox0);        \
                    for (co = c0; co < c1; co += nco) {                                          \
                        nco = co_block(co, c1, cog);                                             \
                        tile_st_##NAME##_w(acc, st, wp, g, &s, ky_lo, ky_hi, co - c0, nco, n);   \
                        EMIT(acc, post, co, nco, ox0, n, g->ow);                                 \
                    }                                                                            \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
    }
#define CONV_TILE_PACKED(NAME, XT, WT, AT, UT, MK, EMIT)                                         \
    MK(NAME##_s, UT, WT, AT, UT)                                                                 \
    MK(NAME##_sw, UT, UT, UT, UT)                                                                \
    CONV_GATHER(NAME, XT, WT, AT, UT, MK)                                                        \
    CONV_TILE_ST(NAME, WT, UT, UT, NAME##_s)                                                     \
    CONV_TILE_ST(NAME##_w, UT, UT, UT, NAME##_sw)                                                \
    CONV_STAGE(NAME, XT, AT, UT)                                                                 \
    CONV_ROWS(NAME, NAME##_u, WT, UT, UT, EMIT, stage_shape)                                     \
    CONV_ROWS_PACKED(NAME, WT, AT, UT, EMIT)
#if defined(__arm__) && !defined(__aarch64__)
#define CONV_TILE_uint64_t(NAME, XT, WT, AT, UT, MK, EMIT)                                       \
    CONV_TILE(NAME, XT, WT, AT, UT, MK, EMIT, XT, NAME)
#else
#define CONV_TILE_uint64_t CONV_TILE_WIDE
#endif
#define CONV_Q_PARTS(NAME, XT, WT, AT, UT)                                                       \
    CONV_EMIT(NAME, AT, UT)                                                                      \
    CONV_TILE_##UT(NAME, XT, WT, AT, UT, MK_ACC_##UT, emit_##NAME)                               \
    static void dense_##NAME(const XT *x, const WT *w, const int32_t *bias, int k, int m_lo,     \
                             int m_hi, const aloha_rq_t *rq, void *out)                          \
    {                                                                                            \
        int j, i;                                                                                \
        for (j = m_lo; j < m_hi; j++) {                                                          \
            const WT *wr = w + (size_t)j * k;                                                    \
            UT acc = 0;                                                                          \
            for (i = 0; i < k; i++)                                                              \
                acc += (UT)((AT)x[i] * wr[i]);                                                   \
            aloha_store(out, rq->type, (size_t)(j - m_lo),                                       \
                        aloha_requant(wrap_add((int64_t)(AT)acc, bias ? bias[j] : 0), j, rq));   \
        }                                                                                        \
    }
#define CONV_Q(NAME, XT, WT, AT, UT)                                                             \
    CONV_Q_PARTS(NAME, XT, WT, AT, UT)                                                           \
    static void conv_##NAME(const aloha_win_t *x, const WT *w, const int32_t *bias,              \
                            const aloha_conv_t *g, const aloha_rq_t *rq, int oy, int co_lo,      \
                            int co_hi, void *out)                                                \
    {                                                                                            \
        const conv_post post = conv_post_of(bias, NULL, rq, out, co_lo);                         \
        rows_##NAME(x, w, g, &post, oy, co_lo, co_hi);                                           \
    }

#if defined(ALOHA_VECTOR_EXT) && (defined(__x86_64__) || defined(__aarch64__))
#define ALOHA_DOUBLE_SUMS 1
#endif
#define DOUBLE_FAN_IN (1L << 22)

#ifdef ALOHA_DOUBLE_SUMS
/* NAME##_i sums in int64, NAME##_d in double; conv_NAME picks by the fan-in. The dense layers
 * keep their int64 sums, which compilers vectorise as widening 32-bit multiplies. */
#define CONV_Q_NARROW64(NAME, XT, WT)                                                            \
    CONV_Q(NAME##_i, XT, WT, int64_t, uint64_t)                                                  \
    CONV_EMIT(NAME##_d, int64_t, double)                                                         \
    CONV_TILE_PACKED(NAME##_d, XT, WT, int32_t, double, MK_VEC, emit_##NAME##_d)                 \
    static void conv_##NAME(const aloha_win_t *x, const WT *w, const int32_t *bias,              \
                            const aloha_conv_t *g, const aloha_rq_t *rq, int oy, int co_lo,      \
                            int co_hi, void *out)                                                \
    {                                                                                            \
        const conv_post post = conv_post_of(bias, NULL, rq, out, co_lo);                         \
        if ((long)(g->cin / g->group) * g->kh * g->kw <= DOUBLE_FAN_IN)                          \
            rows_##NAME##_d(x, w, g, &post, oy, co_lo, co_hi);                                   \
        else                                                                                     \
            conv_##NAME##_i(x, w, bias, g, rq, oy, co_lo, co_hi, out);                           \
    }                                                                                            \
    static void dense_##NAME(const XT *x, const WT *w, const int32_t *bias, int k, int m_lo,     \
                             int m_hi, const aloha_rq_t *rq, void *out)                          \
    {                                                                                            \
        dense_##NAME##_i(x, w, bias, k, m_lo, m_hi, rq, out);                                    \
    }
#else
#define CONV_Q_NARROW64(NAME, XT, WT) CONV_Q(NAME, XT, WT, int64_t, uint64_t)
#endif

typedef void (*conv_fn)(const aloha_win_t *, const void *, const int32_t *, const aloha_conv_t *,
                        const aloha_rq_t *, int, int, int, void *);
typedef void (*dense_fn)(const void *, const void *, const int32_t *, int, int, int,
                         const aloha_rq_t *, void *);
#define AS_CONV(N) (conv_fn)(void (*)(void))conv_##N
#define AS_DENSE(N) (dense_fn)(void (*)(void))dense_##N

/* The variants: 64-bit sums for every input x weight type, int32 sums for the 8/16-bit pairs (a
 * 32-bit operand alone may fill int32). A generated program compiles only those it calls: its
 * Makefile defines ALOHA_VARIANTS and ALOHA_V_<name> for each; without ALOHA_VARIANTS (a library
 * build) every variant is there. Table order: index = variant() below. */
#if !defined(ALOHA_VARIANTS) || defined(ALOHA_V_i8_i8_a64)
CONV_Q_NARROW64(i8_i8_a64, int8_t, int8_t)
#define CONV_i8_i8_a64 AS_CONV(i8_i8_a64)
#define DENSE_i8_i8_a64 AS_DENSE(i8_i8_a64)
#else
#define CONV_i8_i8_a64 NULL
#define DENSE_i8_i8_a64 NULL
#endif
#if !defined(ALOHA_VARIANTS) || defined(ALOHA_V_i8_i16_a64)
CONV_Q_NARROW64(i8_i16_a64, int8_t, int16_t)
#define CONV_i8_i16_a64 AS_CONV(i8_i16_a64)
#define DENSE_i8_i16_a64 AS_DENSE(i8_i16_a64)
#else
#define CONV_i8_i16_a64 NULL
#define DENSE_i8_i16_a64 NULL
#endif
#if !defined(ALOHA_VARIANTS) || defined(ALOHA_V_i8_i32_a64)
CONV_Q(i8_i32_a64, int8_t, int32_t, int64_t, uint64_t)
#define CONV_i8_i32_a64 AS_CONV(i8_i32_a64)
#define DENSE_i8_i32_a64 AS_DENSE(i8_i32_a64)
#else
#define CONV_i8_i32_a64 NULL
#define DENSE_i8_i32_a64 NULL
#endif
#if !defined(ALOHA_VARIANTS) || defined(ALOHA_V_u8_i8_a64)
CONV_Q_NARROW64(u8_i8_a64, uint8_t, int8_t)
#define CONV_u8_i8_a64 AS_CONV(u8_i8_a64)
#define DENSE_u8_i8_a64 AS_DENSE(u8_i8_a64)
#else
#define CONV_u8_i8_a64 NULL
#define DENSE_u8_i8_a64 NULL
#endif
#if !defined(ALOHA_VARIANTS) || defined(ALOHA_V_u8_i16_a64)
CONV_Q_NARROW64(u8_i16_a64, uint8_t, int16_t)
#define CONV_u8_i16_a64 AS_CONV(u8_i16_a64)
#define DENSE_u8_i16_a64 AS_DENSE(u8_i16_a64)
#else
#define CONV_u8_i16_a64 NULL
#define DENSE_u8_i16_a64 NULL
#endif
#if !defined(ALOHA_VARIANTS) || defined(ALOHA_V_u8_i32_a64)
CONV_Q(u8_i32_a64, uint8_t, int32_t, int64_t, uint64_t)
#define CONV_u8_i32_a64 AS_CONV(u8_i32_a64)
#define DENSE_u8_i32_a64 AS_DENSE(u8_i32_a64)
#else
#define CONV_u8_i32_a64 NULL
#define DENSE_u8_i32_a64 NULL
#endif
#if !defined(ALOHA_VARIANTS) || defined(ALOHA_V_i16_i8_a64)
CONV_Q_NARROW64(i16_i8_a64, int16_t, int8_t)
#define CONV_i16_i8_a64 AS_CONV(i16_i8_a64)
#define DENSE_i16_i8_a64 AS_DENSE(i16_i8_a64)
#else
#define CONV_i16_i8_a64 NULL
#define DENSE_i16_i8_a64 NULL
#endif
#if !defined(ALOHA_VARIANTS) || defined(ALOHA_V_i16_i16_a64)
CONV_Q_NARROW64(i16_i16_a64, int16_t, int16_t)
#define CONV_i16_i16_a64 AS_CONV(i16_i16_a64)
#define DENSE_i16_i16_a64 AS_DENSE(i16_i16_a64)
#else
#define CONV_i16_i16_a64 NULL
#define DENSE_i16_i16_a64 NULL
#endif
#if !defined(ALOHA_VARIANTS) || defined(ALOHA_V_i16_i32_a64)
CONV_Q(i16_i32_a64, int16_t, int32_t, int64_t, uint64_t)
#define CONV_i16_i32_a64 AS_CONV(i16_i32_a64)
#define DENSE_i16_i32_a64 AS_DENSE(i16_i32_a64)
#else
#define CONV_i16_i32_a64 NULL
#define DENSE_i16_i32_a64 NULL
#endif
#if !defined(ALOHA_VARIANTS) || defined(ALOHA_V_u16_i8_a64)
CONV_Q_NARROW64(u16_i8_a64, uint16_t, int8_t)
#define CONV_u16_i8_a64 AS_CONV(u16_i8_a64)
#define DENSE_u16_i8_a64 AS_DENSE(u16_i8_a64)
#else
#define CONV_u16_i8_a64 NULL
#define DENSE_u16_i8_a64 NULL
#endif
#if !defined(ALOHA_VARIANTS) || defined(ALOHA_V_u16_i16_a64)
CONV_Q_NARROW64(u16_i16_a64, uint16_t, int16_t)
#define CONV_u16_i16_a64 AS_CONV(u16_i16_a64)
#define DENSE_u16_i16_a64 AS_DENSE(u16_i16_a64)
#else
#define CONV_u16_i16_a64 NULL
#define DENSE_u16_i16_a64 NULL
#endif
#if !defined(ALOHA_VARIANTS) || defined(ALOHA_V_u16_i32_a64)
CONV_Q(u16_i32_a64, uint16_t, int32_t, int64_t, uint64_t)
#define CONV_u16_i32_a64 AS_CONV(u16_i32_a64)
#define DENSE_u16_i32_a64 AS_DENSE(u16_i32_a64)
#else
#define CONV_u16_i32_a64 NULL
#define DENSE_u16_i32_a64 NULL
#endif
#if !defined(ALOHA_VARIANTS) || defined(ALOHA_V_i32_i8_a64)
CONV_Q(i32_i8_a64, int32_t, int8_t, int64_t, uint64_t)
#define CONV_i32_i8_a64 AS_CONV(i32_i8_a64)
#define DENSE_i32_i8_a64 AS_DENSE(i32_i8_a64)
#else
#define CONV_i32_i8_a64 NULL
#define DENSE_i32_i8_a64 NULL
#endif
#if !defined(ALOHA_VARIANTS) || defined(ALOHA_V_i32_i16_a64)
CONV_Q(i32_i16_a64, int32_t, int16_t, int64_t, uint64_t)
#define CONV_i32_i16_a64 AS_CONV(i32_i16_a64)
#define DENSE_i32_i16_a64 AS_DENSE(i32_i16_a64)
#else
#define CONV_i32_i16_a64 NULL
#define DENSE_i32_i16_a64 NULL
#endif
#if !defined(ALOHA_VARIANTS) || defined(ALOHA_V_i32_i32_a64)
CONV_Q(i32_i32_a64, int32_t, int32_t, int64_t, uint64_t)
#define CONV_i32_i32_a64 AS_CONV(i32_i32_a64)
#define DENSE_i32_i32_a64 AS_DENSE(i32_i32_a64)
#else
#define CONV_i32_i32_a64 NULL
#define DENSE_i32_i32_a64 NULL
#endif
#if !defined(ALOHA_VARIANTS) || defined(ALOHA_V_i8_i8_a32)
CONV_Q(i8_i8_a32, int8_t, int8_t, int32_t, uint32_t)
#define CONV_i8_i8_a32 AS_CONV(i8_i8_a32)
#define DENSE_i8_i8_a32 AS_DENSE(i8_i8_a32)
#else
#define CONV_i8_i8_a32 NULL
#define DENSE_i8_i8_a32 NULL
#endif
#if !defined(ALOHA_VARIANTS) || defined(ALOHA_V_i8_i16_a32)
CONV_Q(i8_i16_a32, int8_t, int16_t, int32_t, uint32_t)
#define CONV_i8_i16_a32 AS_CONV(i8_i16_a32)
#define DENSE_i8_i16_a32 AS_DENSE(i8_i16_a32)
#else
#define CONV_i8_i16_a32 NULL
#define DENSE_i8_i16_a32 NULL
#endif
#if !defined(ALOHA_VARIANTS) || defined(ALOHA_V_u8_i8_a32)
CONV_Q(u8_i8_a32, uint8_t, int8_t, int32_t, uint32_t)
#define CONV_u8_i8_a32 AS_CONV(u8_i8_a32)
#define DENSE_u8_i8_a32 AS_DENSE(u8_i8_a32)
#else
#define CONV_u8_i8_a32 NULL
#define DENSE_u8_i8_a32 NULL
#endif
#if !defined(ALOHA_VARIANTS) || defined(ALOHA_V_u8_i16_a32)
CONV_Q(u8_i16_a32, uint8_t, int16_t, int32_t, uint32_t)
#define CONV_u8_i16_a32 AS_CONV(u8_i16_a32)
#define DENSE_u8_i16_a32 AS_DENSE(u8_i16_a32)
#else
#define CONV_u8_i16_a32 NULL
#define DENSE_u8_i16_a32 NULL
#endif
#if !defined(ALOHA_VARIANTS) || defined(ALOHA_V_i16_i8_a32)
CONV_Q(i16_i8_a32, int16_t, int8_t, int32_t, uint32_t)
#define CONV_i16_i8_a32 AS_CONV(i16_i8_a32)
#define DENSE_i16_i8_a32 AS_DENSE(i16_i8_a32)
#else
#define CONV_i16_i8_a32 NULL
#define DENSE_i16_i8_a32 NULL
#endif
#if !defined(ALOHA_VARIANTS) || defined(ALOHA_V_i16_i16_a32)
CONV_Q(i16_i16_a32, int16_t, int16_t, int32_t, uint32_t)
#define CONV_i16_i16_a32 AS_CONV(i16_i16_a32)
#define DENSE_i16_i16_a32 AS_DENSE(i16_i16_a32)
#else
#define CONV_i16_i16_a32 NULL
#define DENSE_i16_i16_a32 NULL
#endif
#if !defined(ALOHA_VARIANTS) || defined(ALOHA_V_u16_i8_a32)
CONV_Q(u16_i8_a32, uint16_t, int8_t, int32_t, uint32_t)
#define CONV_u16_i8_a32 AS_CONV(u16_i8_a32)
#define DENSE_u16_i8_a32 AS_DENSE(u16_i8_a32)
#else
#define CONV_u16_i8_a32 NULL
#define DENSE_u16_i8_a32 NULL
#endif
#if !defined(ALOHA_VARIANTS) || defined(ALOHA_V_u16_i16_a32)
CONV_Q(u16_i16_a32, uint16_t, int16_t, int32_t, uint32_t)
#define CONV_u16_i16_a32 AS_CONV(u16_i16_a32)
#define DENSE_u16_i16_a32 AS_DENSE(u16_i16_a32)
#else
#define CONV_u16_i16_a32 NULL
#define DENSE_u16_i16_a32 NULL
#endif

/* The variant of (input type, weight type, accumulator): an index into the tables below. */
static int variant(int xtype, int wtype, int acc32)
{
    int xi, wi;
    switch (xtype) {
    case ALOHA_I8: xi = 0; break;
    case ALOHA_U8: xi = 1; break;
    case ALOHA_I16: xi = 2; break;
    case ALOHA_U16: xi = 3; break;
    default: xi = 4; break;
    }
    wi = wtype == ALOHA_I8 ? 0 : wtype == ALOHA_I16 ? 1 : 2;
    if (acc32 && xi < 4 && wi < 2)
        return 15 + 2 * xi + wi;
    return 3 * xi + wi;
}

static const char *const variant_names[] = {
    "i8_i8_a64",
    "i8_i16_a64",
    "i8_i32_a64",
    "u8_i8_a64",
    "u8_i16_a64",
    "u8_i32_a64",
    "i16_i8_a64",
    "i16_i16_a64",
    "i16_i32_a64",
    "u16_i8_a64",
    "u16_i16_a64",
    "u16_i32_a64",
    "i32_i8_a64",
    "i32_i16_a64",
    "i32_i32_a64",
    "i8_i8_a32",
    "i8_i16_a32",
    "u8_i8_a32",
    "u8_i16_a32",
    "i16_i8_a32",
    "i16_i16_a32",
    "u16_i8_a32",
    "u16_i16_a32",
};

/* A variant the program's build left out: the generator and the build disagree. */
static void missing(int v)
{
    fprintf(stderr, "aloha_kernels: integer kernel variant %s was not compiled in (ALOHA_V_%s)\n",
            variant_names[v], variant_names[v]);
    abort();
}

void aloha_conv_row_q(const aloha_win_t *x, const void *w, const int32_t *bias,
                      const aloha_conv_t *g, const aloha_rq_t *rq, int oy, int co_lo, int co_hi,
                      void *out)
{
    static const conv_fn table[] = { CONV_i8_i8_a64, CONV_i8_i16_a64, CONV_i8_i32_a64, CONV_u8_i8_a64, CONV_u8_i16_a64, CONV_u8_i32_a64, CONV_i16_i8_a64, CONV_i16_i16_a64, CONV_i16_i32_a64, CONV_u16_i8_a64, CONV_u16_i16_a64, CONV_u16_i32_a64, CONV_i32_i8_a64, CONV_i32_i16_a64, CONV_i32_i32_a64, CONV_i8_i8_a32, CONV_i8_i16_a32, CONV_u8_i8_a32, CONV_u8_i16_a32, CONV_i16_i8_a32, CONV_i16_i16_a32, CONV_u16_i8_a32, CONV_u16_i16_a32 };
    const int v = variant(x->type, g->wtype, g->acc32);
    if (!table[v])
        missing(v);
    table[v](x, w, bias, g, rq, oy, co_lo, co_hi, out);
}

/* One partial sum (no bias) of a tap range, exact in int64. */
static int64_t partial_q(const aloha_win_t *x, const void *w, const aloha_conv_t *g, int oy,
                         int co, int ox, int ky0, int kh, int kx0, int kw)
{
    const int cig = g->cin / g->group, cog = g->cout / g->group;
    const size_t cbase = (size_t)(co / cog) * cig;
    uint64_t acc = 0;
    int c, ky, kx;
    for (c = 0; c < cig; c++)
        for (ky = ky0; ky < ky0 + kh; ky++) {
            const int iy = oy * g->sh - g->pt + ky * g->dh;
            const size_t wrow = (((size_t)co * cig + c) * g->kh + ky) * g->kw;
            size_t xrow;
            if (iy < 0 || iy >= g->h)
                continue;
            xrow = win_offset(x, iy) + (cbase + c) * (size_t)g->w;
            for (kx = kx0; kx < kx0 + kw; kx++) {
                const int ix = ox * g->sw - g->pl + kx * g->dw;
                if (ix >= 0 && ix < g->w)
                    acc += (uint64_t)(aloha_load(x->p, x->type, xrow + ix)
                                      * aloha_load(w, g->wtype, wrow + kx));
            }
        }
    return (int64_t)acc;
}

void aloha_conv_partial_q(const aloha_win_t *x, const void *w, const aloha_conv_t *g, int oy,
                          int co_lo, int co_hi, int ky0, int kh, int kx0, int kw, int stride,
                          int slot, void *out)
{
    int co, ox;
    for (co = co_lo; co < co_hi; co++)
        for (ox = 0; ox < g->ow; ox++) {
            const size_t at = ((size_t)(co - co_lo) * g->ow + ox) * stride + slot;
            const int64_t v = partial_q(x, w, g, oy, co, ox, ky0, kh, kx0, kw);
            if (g->acc32)
                ((int32_t *)out)[at] = (int32_t)v;
            else
                ((int64_t *)out)[at] = v;
        }
}

void aloha_conv_partial_f32(const aloha_win_t *x, const float *w, const aloha_conv_t *g, int oy,
                            int co_lo, int co_hi, int ky0, int kh, int kx0, int kw, int stride,
                            int slot, float *out)
{
    const int cig = g->cin / g->group, cog = g->cout / g->group;
    int co, ox, c, ky, kx;
    for (co = co_lo; co < co_hi; co++)
        for (ox = 0; ox < g->ow; ox++) {
            const size_t cbase = (size_t)(co / cog) * cig;
            float acc = 0.0f;
            for (c = 0; c < cig; c++)
                for (ky = ky0; ky < ky0 + kh; ky++) {
                    const int iy = oy * g->sh - g->pt + ky * g->dh;
                    const float *wr = w + (((size_t)co * cig + c) * g->kh + ky) * g->kw;
                    const float *xr;
                    if (iy < 0 || iy >= g->h)
                        continue;
                    xr = row_f(x, iy) + (cbase + c) * (size_t)g->w;
                    for (kx = kx0; kx < kx0 + kw; kx++) {
                        const int ix = ox * g->sw - g->pl + kx * g->dw;
                        if (ix >= 0 && ix < g->w)
                            acc += xr[ix] * wr[kx];
                    }
                }
            out[((size_t)(co - co_lo) * g->ow + ox) * stride + slot] = acc;
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

/* The first border column at or after ox: the interior columns [in_lo, in_hi), whose window
 * lies inside the input, are computed together (pool_in_NAME). */
static int pool_border(const pool_row *r, int ox)
{
    return ox >= r->in_lo && ox < r->in_hi ? r->in_hi : ox;
}

/* POOL_INTERIOR defines pool_in_NAME: v[ox - a] = the maximum (kind 0) or the sum of the taps of
 * the interior columns ox in [a, b) of one channel whose window row ky_lo starts at base, for
 * elements T widened to ST, taps in the order ky, kx (that of the border columns): loops over
 * the columns innermost, which the compiler vectorises. */
#define POOL_INTERIOR(NAME, T, ST)                                                               \
    static void pool_in_##NAME(const T *base, const aloha_pool_t *p, const pool_row *r, int a,   \
                               int b, ST *restrict v)                                            \
    {                                                                                            \
        const ptrdiff_t sw = p->sw;                                                              \
        int ky, kx, ox;                                                                          \
        for (ox = a; ox < b; ox++)                                                               \
            v[ox - a] = p->kind == 0 ? (ST)base[ox * sw - p->pl] : 0;                            \
        for (ky = 0; ky < r->ky_hi - r->ky_lo; ky++)                                             \
            for (kx = 0; kx < p->kw; kx++) {                                                     \
                const ptrdiff_t off = (ptrdiff_t)(ky * r->ystep) + kx * p->dw - p->pl;           \
                if (p->kind == 0)                                                                \
                    for (ox = a; ox < b; ox++) {                                                 \
                        const ST t = base[off + ox * sw];                                        \
                        v[ox - a] = t > v[ox - a] ? t : v[ox - a];                               \
                    }                                                                            \
                else                                                                             \
                    for (ox = a; ox < b; ox++)                                                   \
                        v[ox - a] += base[off + ox * sw];                                        \
            }                                                                                    \
    }
POOL_INTERIOR(f32, float, double)
POOL_INTERIOR(i8, int8_t, int64_t)
POOL_INTERIOR(u8, uint8_t, int64_t)
POOL_INTERIOR(i16, int16_t, int64_t)
POOL_INTERIOR(u16, uint16_t, int64_t)
POOL_INTERIOR(i32, int32_t, int64_t)

/* The interior columns [a, b) (b - a <= REQUANT_BLOCK) of one channel of a fixed-point pool,
 * before requantisation: the maximum, or the sum by the window's count. */
static void pool_in_q(const aloha_win_t *x, size_t base, const aloha_pool_t *p,
                      const pool_row *r, int a, int b, int64_t *v)
{
    int i;
    switch (x->type) {
    case ALOHA_I8: pool_in_i8((const int8_t *)x->p + base, p, r, a, b, v); break;
    case ALOHA_U8: pool_in_u8((const uint8_t *)x->p + base, p, r, a, b, v); break;
    case ALOHA_I16: pool_in_i16((const int16_t *)x->p + base, p, r, a, b, v); break;
    case ALOHA_U16: pool_in_u16((const uint16_t *)x->p + base, p, r, a, b, v); break;
    default: pool_in_i32((const int32_t *)x->p + base, p, r, a, b, v); break;
    }
    if (p->kind != 0)
        for (i = 0; i < b - a; i++)
            v[i] = aloha_round_div(v[i], (int64_t)r->ycount * p->kw);
}

void aloha_pool_row_f32(const aloha_win_t *x, const aloha_pool_t *p, const aloha_act_t *act,
                        int oy, float *out)
{
    const pool_row r = pool_row_setup(x, p, oy);
    int ch, ox, ky, kx, lo, hi, a, b, i;
    double v_in[REQUANT_BLOCK];
    float f_in[REQUANT_BLOCK];
    if (r.ky_lo >= r.ky_hi) { /* a window entirely in the padding */
        for (ch = 0; ch < p->c * p->ow; ch++)
            out[ch] = aloha_act1_f32(0.0f, act);
        return;
    }
    for (ch = 0; ch < p->c; ch++) {
        const float *base = row_f(x, r.iy0 + r.ky_lo * p->dh) + (size_t)ch * p->w;
        float *o = out + (size_t)ch * p->ow;
        for (a = r.in_lo; a < r.in_hi; a = b) {
            b = r.in_hi - a < REQUANT_BLOCK ? r.in_hi : a + REQUANT_BLOCK;
            pool_in_f32(base, p, &r, a, b, v_in);
            for (i = 0; i < b - a; i++)
                f_in[i] = (float)(p->kind == 0 ? v_in[i] : v_in[i] / (r.ycount * p->kw));
            act_row_f32(f_in, b - a, NULL, act, o + a);
        }
        for (ox = pool_border(&r, 0); ox < p->ow; ox = pool_border(&r, ox + 1)) {
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
                      void *out)
{
    const pool_row r = pool_row_setup(x, p, oy);
    int ch, ox, ky, kx, lo, hi, a, b;
    int64_t v_in[REQUANT_BLOCK];
    if (r.ky_lo >= r.ky_hi) {
        for (ch = 0; ch < p->c * p->ow; ch++)
            aloha_store(out, rq->type, (size_t)ch, aloha_requant(0, 0, rq));
        return;
    }
    for (ch = 0; ch < p->c; ch++) {
        const size_t base = win_offset(x, r.iy0 + r.ky_lo * p->dh) + (size_t)ch * p->w;
        const size_t o = (size_t)ch * p->ow;
        for (a = r.in_lo; a < r.in_hi; a = b) {
            b = r.in_hi - a < REQUANT_BLOCK ? r.in_hi : a + REQUANT_BLOCK;
            pool_in_q(x, base, p, &r, a, b, v_in);
            requant_row(v_in, b - a, 0, rq, out, o + a);
        }
        for (ox = pool_border(&r, 0); ox < p->ow; ox = pool_border(&r, ox + 1)) {
            const int count = pool_cols(p, &r, ox, &lo, &hi);
            const ptrdiff_t ix0 = ox * p->sw - p->pl;
            int64_t v = 0;
            if (lo >= hi) {
                aloha_store(out, rq->type, o + ox, aloha_requant(0, 0, rq));
                continue;
            }
            if (p->kind == 0) {
                v = aloha_load(x->p, x->type, base + (size_t)(ix0 + lo * p->dw));
                for (ky = 0; ky < r.ky_hi - r.ky_lo; ky++)
                    for (kx = lo; kx < hi; kx++) {
                        const int64_t t = aloha_load(x->p, x->type, base + ky * r.ystep
                                                     + (size_t)(ix0 + kx * p->dw));
                        if (t > v)
                            v = t;
                    }
            } else {
                for (ky = 0; ky < r.ky_hi - r.ky_lo; ky++)
                    for (kx = lo; kx < hi; kx++)
                        v += aloha_load(x->p, x->type, base + ky * r.ystep
                                        + (size_t)(ix0 + kx * p->dw));
                v = aloha_round_div(v, (int64_t)r.ycount * count);
            }
            aloha_store(out, rq->type, o + ox, aloha_requant(v, 0, rq));
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

void aloha_gpool_q(const void *x, int xtype, int c, int hw, int kind, const aloha_rq_t *rq,
                   void *out)
{
    int ch, i;
    for (ch = 0; ch < c; ch++) {
        const size_t r = (size_t)ch * hw;
        int64_t v = aloha_load(x, xtype, r);
        if (kind == 0) {
            for (i = 1; i < hw; i++)
                if (aloha_load(x, xtype, r + i) > v)
                    v = aloha_load(x, xtype, r + i);
        } else {
            for (i = 1; i < hw; i++)
                v += aloha_load(x, xtype, r + i);
            v = aloha_round_div(v, hw);
        }
        aloha_store(out, rq->type, (size_t)ch, aloha_requant(v, 0, rq));
    }
}

/* ---- dense ----------------------------------------------------------------------------------- */

/* Eight partial sums, s[l] over x[i + l] * w[i + l] in the order of i, then a fixed tree: the
 * vector form keeps lane l's order, so both forms give the same bits (GCC vectorised the plain
 * form with shuffles and scalar adds). The vector form runs DENSE_ROWS output rows at a time:
 * their sums are independent chains, so the adds overlap instead of each waiting for the last
 * (one chain ran at one vector add per add latency), and each load of x serves them all. */
#ifdef ALOHA_VECTOR_FLOAT
typedef float dense_v8f __attribute__((vector_size(8 * sizeof(float))));
#define DENSE_ROWS 4
#endif

/* out[j - m_lo] for row j from its eight partial sums s over the first k8 inputs (a multiple of
 * 8): the tail inputs into s[0], the tree, the bias and the activation. */
static void dense_finish_f32(float *s, const float *x, const float *wr, int k8, int k,
                             const float *bias, int j, const aloha_act_t *act, float *out)
{
    float t;
    int i;
    for (i = k8; i < k; i++)
        s[0] += x[i] * wr[i];
    t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    if (bias)
        t += bias[j];
    *out = aloha_act1_f32(t, act);
}

void aloha_dense_f32(const float *x, const float *w, const float *bias, int k, int m_lo,
                     int m_hi, const aloha_act_t *act, float *out)
{
    const int k8 = k - k % 8;
    int j = m_lo, i;
#ifdef ALOHA_VECTOR_FLOAT
    for (; j + DENSE_ROWS <= m_hi; j += DENSE_ROWS) {
        const float *w0 = w + (size_t)j * k, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
        dense_v8f v0 = {0, 0, 0, 0, 0, 0, 0, 0}, v1 = v0, v2 = v0, v3 = v0, xv, wv;
        float s[DENSE_ROWS][8];
        int r;
        for (i = 0; i < k8; i += 8) {
            memcpy(&xv, x + i, sizeof xv);
            memcpy(&wv, w0 + i, sizeof wv);
            v0 += xv * wv;
            memcpy(&wv, w1 + i, sizeof wv);
            v1 += xv * wv;
            memcpy(&wv, w2 + i, sizeof wv);
            v2 += xv * wv;
            memcpy(&wv, w3 + i, sizeof wv);
            v3 += xv * wv;
        }
        memcpy(s[0], &v0, sizeof s[0]);
        memcpy(s[1], &v1, sizeof s[1]);
        memcpy(s[2], &v2, sizeof s[2]);
        memcpy(s[3], &v3, sizeof s[3]);
        for (r = 0; r < DENSE_ROWS; r++)
            dense_finish_f32(s[r], x, w + (size_t)(j + r) * k, k8, k, bias, j + r, act,
                             out + (j + r - m_lo));
    }
#endif
    for (; j < m_hi; j++) {
        const float *wr = w + (size_t)j * k;
        float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#ifdef ALOHA_VECTOR_FLOAT
        dense_v8f v = {0, 0, 0, 0, 0, 0, 0, 0}, xv, wv;
        for (i = 0; i < k8; i += 8) {
            memcpy(&xv, x + i, sizeof xv);
            memcpy(&wv, wr + i, sizeof wv);
            v += xv * wv;
        }
        memcpy(s, &v, sizeof s);
#else
        for (i = 0; i < k8; i += 8) {
            int l;
            for (l = 0; l < 8; l++)
                s[l] += x[i + l] * wr[i + l];
        }
#endif
        dense_finish_f32(s, x, wr, k8, k, bias, j, act, out + (j - m_lo));
    }
}

void aloha_dense_q(const void *x, int xtype, const void *w, int wtype, int acc32,
                   const int32_t *bias, int k, int m_lo, int m_hi, const aloha_rq_t *rq,
                   void *out)
{
    static const dense_fn table[] = { DENSE_i8_i8_a64, DENSE_i8_i16_a64, DENSE_i8_i32_a64, DENSE_u8_i8_a64, DENSE_u8_i16_a64, DENSE_u8_i32_a64, DENSE_i16_i8_a64, DENSE_i16_i16_a64, DENSE_i16_i32_a64, DENSE_u16_i8_a64, DENSE_u16_i16_a64, DENSE_u16_i32_a64, DENSE_i32_i8_a64, DENSE_i32_i16_a64, DENSE_i32_i32_a64, DENSE_i8_i8_a32, DENSE_i8_i16_a32, DENSE_u8_i8_a32, DENSE_u8_i16_a32, DENSE_i16_i8_a32, DENSE_i16_i16_a32, DENSE_u16_i8_a32, DENSE_u16_i16_a32 };
    const int v = variant(xtype, wtype, acc32);
    if (!table[v])
        missing(v);
    table[v](x, w, bias, k, m_lo, m_hi, rq, out);
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
    do {                                                                                         \
        const bcast_t ba = bcast(a, oy), bb = bcast(b, oy);                                      \
        int ch, xx;                                                                              \
        for (ch = 0; ch < c; ch++) {                                                             \
            const size_t pa = ba.off + ch * ba.cs, pb = bb.off + ch * bb.cs;                     \
            for (xx = 0; xx < w; xx++) {                                                         \
                T va = LOAD(a, pa + xx * ba.xs), vb = LOAD(b, pb + xx * bb.xs);                  \
                STORE((size_t)ch * w + xx, EXPR);                                                \
            }                                                                                    \
        }                                                                                        \
    } while (0)

#define LOAD(win, i) ((const float *)(win)->p)[i]
#define STORE_F(i, v) out[i] = aloha_act1_f32((v), act)
void aloha_add_row_f32(const aloha_win_t *a, const aloha_win_t *b, int oy, int c, int w,
                       const aloha_act_t *act, float *out)
{
    BINARY_ROW(float, va + vb, STORE_F);
}

void aloha_mul_row_f32(const aloha_win_t *a, const aloha_win_t *b, int oy, int c, int w,
                       const aloha_act_t *act, float *out)
{
    BINARY_ROW(float, va * vb, STORE_F);
}
#undef STORE_F
#undef LOAD

/* Elements [x0, x0 + n) of operand `win`'s channel row at p (column stride xs: 0 broadcasts one
 * column) as int64, the type switch once per block rather than per element. */
static void load_block(const aloha_win_t *win, size_t p, int xs, int x0, int n, int64_t *v)
{
    const size_t at = p + (size_t)x0 * (size_t)xs;
    int i;
#define LOAD_BLOCK(T)                                                                            \
    for (i = 0; i < n; i++)                                                                      \
        v[i] = ((const T *)win->p)[at + (size_t)i * (size_t)xs];                                 \
    break;
    switch (win->type) {
    case ALOHA_I8: LOAD_BLOCK(int8_t)
    case ALOHA_U8: LOAD_BLOCK(uint8_t)
    case ALOHA_I16: LOAD_BLOCK(int16_t)
    case ALOHA_U16: LOAD_BLOCK(uint16_t)
    case ALOHA_I32: LOAD_BLOCK(int32_t)
    default:
        for (i = 0; i < n; i++)
            v[i] = aloha_load(win->p, win->type, at + (size_t)i * (size_t)xs);
        break;
    }
#undef LOAD_BLOCK
}

/* The fixed-point binary row, REQUANT_BLOCK columns at a time: operands loaded as int64, combined
 * by EXPR(va, vb) and requantised by requant_row (per element what aloha_requant and aloha_store
 * give; blocked, the requantisation and the store vectorise). */
#define BINARY_ROW_Q(EXPR)                                                                       \
    do {                                                                                         \
        const bcast_t ba = bcast(a, oy), bb = bcast(b, oy);                                      \
        int64_t va[REQUANT_BLOCK], vb[REQUANT_BLOCK];                                            \
        int ch, x0, i, n;                                                                        \
        for (ch = 0; ch < c; ch++)                                                               \
            for (x0 = 0; x0 < w; x0 += n) {                                                      \
                n = w - x0 < REQUANT_BLOCK ? w - x0 : REQUANT_BLOCK;                             \
                load_block(a, ba.off + ch * ba.cs, ba.xs, x0, n, va);                            \
                load_block(b, bb.off + ch * bb.cs, bb.xs, x0, n, vb);                            \
                for (i = 0; i < n; i++)                                                          \
                    va[i] = EXPR(va[i], vb[i]);                                                  \
                requant_row(va, n, ch, rq, out, (size_t)ch * w + x0);                            \
            }                                                                                    \
    } while (0)

#define ADD_Q(x, y) wrap_add(wrap_shl((x), la), wrap_shl((y), lb))
void aloha_add_row_q(const aloha_win_t *a, int la, const aloha_win_t *b, int lb, int oy, int c,
                     int w, const aloha_rq_t *rq, void *out)
{
    BINARY_ROW_Q(ADD_Q);
}
#undef ADD_Q

void aloha_mul_row_q(const aloha_win_t *a, const aloha_win_t *b, int oy, int c, int w,
                     const aloha_rq_t *rq, void *out)
{
    BINARY_ROW_Q(wrap_mul);
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

void aloha_bn_row_q(const aloha_win_t *x, const void *scale, int stype, const int32_t *bias, int oy,
                    const aloha_rq_t *rq, void *out)
{
    const size_t r = win_offset(x, oy), w = (size_t)x->w;
    int ch;
    size_t i;
    for (ch = 0; ch < x->c; ch++) {
        const int64_t s = aloha_load(scale, stype, (size_t)ch);
        for (i = 0; i < w; i++) {
            int64_t acc = wrap_add(wrap_mul(aloha_load(x->p, x->type, r + ch * w + i), s),
                                   bias ? bias[ch] : 0);
            aloha_store(out, rq->type, ch * w + i, aloha_requant(acc, ch, rq));
        }
    }
}

/* ---- elementwise ----------------------------------------------------------------------------- */

void aloha_act_f32(const float *x, int n, const aloha_act_t *act, float *out)
{
    int i;
    for (i = 0; i < n; i++)
        out[i] = aloha_act1_f32(x[i], act);
}

void aloha_requant_q(const void *x, int xtype, int n, const aloha_rq_t *rq, void *out)
{
    int64_t v[REQUANT_BLOCK];
    int i, k, m;
    for (i = 0; i < n; i += m) {
        m = n - i < REQUANT_BLOCK ? n - i : REQUANT_BLOCK;
        for (k = 0; k < m; k++)
            v[k] = aloha_load(x, xtype, (size_t)(i + k));
        requant_row(v, m, 0, rq, out, (size_t)i);
    }
}

void aloha_island_q(const void *x, int xtype, int n, int frac_in, int frac_out, int32_t qmin,
                    int32_t qmax, int kind, void *out, int otype)
{
    int i;
    for (i = 0; i < n; i++) {
        double r = dequant((int32_t)aloha_load(x, xtype, (size_t)i), frac_in), y;
        if (kind == ALOHA_ACT_SIGMOID)
            y = 1.0 / (1.0 + exp(-r));
        else if (kind == ALOHA_ACT_TANH)
            y = tanh(r);
        else
            y = r;
        aloha_store(out, otype, (size_t)i, aloha_to_fixed(y, frac_out, qmin, qmax));
    }
}

/* ---- softmax --------------------------------------------------------------------------------- */

/* Softmax, or log-softmax when `take_log`, of float slices. */
static void softmax_f32(const float *x, int outer, int n, int inner, int take_log, float *out)
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
                d[(size_t)j * inner] = take_log ? s[(size_t)j * inner] - m : e;
                sum += e;
            }
            for (j = 0; j < n; j++)
                d[(size_t)j * inner] = take_log ? d[(size_t)j * inner] - logf((float)sum)
                                                : (float)(d[(size_t)j * inner] / sum);
        }
}

void aloha_softmax_f32(const float *x, int outer, int n, int inner, float *out)
{
    softmax_f32(x, outer, n, inner, 0, out);
}

void aloha_log_softmax_f32(const float *x, int outer, int n, int inner, float *out)
{
    softmax_f32(x, outer, n, inner, 1, out);
}

/* exp(x[at + j] * 2^-frac - m) of a contiguous softmax slice. */
static double soft_exp(const void *x, int xtype, size_t at, int j, int frac, double m)
{
    return exp(dequant((int32_t)aloha_load(x, xtype, at + (size_t)j), frac) - m);
}

/* numpy's pairwise summation (pairwise_sum of a contiguous float64 reduction) of soft_exp. */
static double pairwise_exp(const void *x, int xtype, size_t at, int n, int frac, double m)
{
    double r[8], res;
    int i, l;
    if (n < 8) {
        res = 0.0;
        for (i = 0; i < n; i++)
            res += soft_exp(x, xtype, at, i, frac, m);
        return res;
    }
    if (n <= 128) {
        for (l = 0; l < 8; l++)
            r[l] = soft_exp(x, xtype, at, l, frac, m);
        for (i = 8; i < n - n % 8; i += 8)
            for (l = 0; l < 8; l++)
                r[l] += soft_exp(x, xtype, at, i + l, frac, m);
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++)
            res += soft_exp(x, xtype, at, i, frac, m);
        return res;
    }
    i = n / 2;
    i -= i % 8;
    return pairwise_exp(x, xtype, at, i, frac, m) +
           pairwise_exp(x, xtype, at + (size_t)i, n - i, frac, m);
}

/* Softmax, or log-softmax when `take_log`, of fixed-point slices (reference _act). */
static void softmax_q(const void *x, int xtype, int outer, int n, int inner, int frac_in,
                      int frac_out, int32_t qmin, int32_t qmax, int take_log, void *out, int otype)
{
    int o, i, j;
    for (o = 0; o < outer; o++)
        for (i = 0; i < inner; i++) {
            const size_t s = (size_t)o * n * inner + i;
            int32_t qm = (int32_t)aloha_load(x, xtype, s);
            double m, sum = 0.0;
            for (j = 1; j < n; j++)
                if (aloha_load(x, xtype, s + (size_t)j * inner) > qm)
                    qm = (int32_t)aloha_load(x, xtype, s + (size_t)j * inner);
            m = dequant(qm, frac_in);
            if (inner == 1)
                sum = 0.0 + pairwise_exp(x, xtype, s, n, frac_in, m);
            else
                for (j = 0; j < n; j++)
                    sum += soft_exp(x, xtype, s + (size_t)j * inner, 0, frac_in, m);
            for (j = 0; j < n; j++) {
                const size_t at = s + (size_t)j * inner;
                const double y =
                    take_log ? (dequant((int32_t)aloha_load(x, xtype, at), frac_in) - m) - log(sum)
                             : soft_exp(x, xtype, at, 0, frac_in, m) / sum;
                aloha_store(out, otype, at, aloha_to_fixed(y, frac_out, qmin, qmax));
            }
        }
}

void aloha_softmax_q(const void *x, int xtype, int outer, int n, int inner, int frac_in,
                     int frac_out, int32_t qmin, int32_t qmax, void *out, int otype)
{
    softmax_q(x, xtype, outer, n, inner, frac_in, frac_out, qmin, qmax, 0, out, otype);
}

void aloha_log_softmax_q(const void *x, int xtype, int outer, int n, int inner, int frac_in,
                         int frac_out, int32_t qmin, int32_t qmax, void *out, int otype)
{
    softmax_q(x, xtype, outer, n, inner, frac_in, frac_out, qmin, qmax, 1, out, otype);
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

void aloha_lrn_row_q(const void *x, int xtype, int c, int w, int size, double alpha, double beta,
                     double bias, int frac_in, int frac_out, int32_t qmin, int32_t qmax,
                     void *out, int otype)
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
            double total = 0.0;
            const double r = dequant((int32_t)aloha_load(x, xtype, (size_t)ch * w + xx), frac_in);
            for (cc = lo; cc <= hi; cc++) {
                double v = dequant((int32_t)aloha_load(x, xtype, (size_t)cc * w + xx), frac_in);
                total += v * v;
            }
            aloha_store(out, otype, (size_t)ch * w + xx,
                        aloha_to_fixed(r / lrn_power(bias + k * total, beta), frac_out, qmin,
                                       qmax));
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

void aloha_shuffle_row_q(const void *x, int xtype, int c, int w, int groups,
                         const aloha_rq_t *rq, void *out)
{
    const int per = c / groups;
    int o, i;
    for (o = 0; o < c; o++) {
        const size_t src = (size_t)((o % groups) * per + o / groups) * w;
        for (i = 0; i < w; i++)
            aloha_store(out, rq->type, (size_t)o * w + i,
                        aloha_requant(aloha_load(x, xtype, src + i), 0, rq));
    }
}

/* ---- layout ---------------------------------------------------------------------------------- */

void aloha_nchw_to_rows_q(const void *x, int xtype, int c, int h, int w, const aloha_rq_t *rq,
                          void *rows)
{
    int y, ch, i;
    for (y = 0; y < h; y++)
        for (ch = 0; ch < c; ch++)
            for (i = 0; i < w; i++)
                aloha_store(rows, rq->type, ((size_t)y * c + ch) * w + i,
                            aloha_requant(aloha_load(x, xtype, ((size_t)ch * h + y) * w + i), 0,
                                          rq));
}

/* ---- strided layout -------------------------------------------------------------------------- */

/* Advance the odometer idx over dims[0..rank) (last index fastest); returns the source offset of
 * the new position, kept in *at by adding and taking back strides. */
static size_t odometer_next(int rank, const int *dims, const size_t *strides, int *idx, size_t at)
{
    int k;
    for (k = rank - 1; k >= 0; k--) {
        if (++idx[k] < dims[k])
            return at + strides[k];
        at -= (size_t)(dims[k] - 1) * strides[k];
        idx[k] = 0;
    }
    return at;
}

static size_t dense_count(int rank, const int *dims)
{
    size_t n = 1;
    int k;
    for (k = 0; k < rank; k++)
        n *= (size_t)dims[k];
    return n;
}

void aloha_permute_f32(const float *x, int rank, const int *dims, const size_t *strides,
                       float *out)
{
    int idx[ALOHA_MAX_RANK] = {0};
    const size_t n = dense_count(rank, dims);
    size_t i, at = 0;
    assert(rank <= ALOHA_MAX_RANK);
    for (i = 0; i < n; i++) {
        out[i] = x[at];
        at = odometer_next(rank, dims, strides, idx, at);
    }
}

void aloha_permute_q(const void *x, int xtype, int rank, const int *dims, const size_t *strides,
                     const aloha_rq_t *rq, void *out)
{
    int idx[ALOHA_MAX_RANK] = {0};
    const size_t n = dense_count(rank, dims);
    size_t i, at = 0;
    assert(rank <= ALOHA_MAX_RANK);
    for (i = 0; i < n; i++) {
        aloha_store(out, rq->type, i, aloha_requant(aloha_load(x, xtype, at), 0, rq));
        at = odometer_next(rank, dims, strides, idx, at);
    }
}

void aloha_place_f32(const float *x, int rank, const int *dims, const size_t *ostrides,
                     size_t offset, float *out)
{
    int idx[ALOHA_MAX_RANK] = {0};
    const size_t n = dense_count(rank, dims);
    size_t i, at = offset;
    assert(rank <= ALOHA_MAX_RANK);
    for (i = 0; i < n; i++) {
        out[at] = x[i];
        at = odometer_next(rank, dims, ostrides, idx, at);
    }
}

void aloha_place_q(const void *x, int xtype, int rank, const int *dims, const size_t *ostrides,
                   size_t offset, const aloha_rq_t *rq, void *out)
{
    int idx[ALOHA_MAX_RANK] = {0};
    const size_t n = dense_count(rank, dims);
    size_t i, at = offset;
    assert(rank <= ALOHA_MAX_RANK);
    for (i = 0; i < n; i++) {
        aloha_store(out, rq->type, at, aloha_requant(aloha_load(x, xtype, i), 0, rq));
        at = odometer_next(rank, dims, ostrides, idx, at);
    }
}

/* ---- padding --------------------------------------------------------------------------------- */

int aloha_pad_source(int i, int n, int mode)
{
    if (i >= 0 && i < n)
        return i;
    if (mode == ALOHA_PAD_CONSTANT)
        return -1;
    if (mode == ALOHA_PAD_EDGE || n == 1)
        return i < 0 ? 0 : n - 1;
    {
        const int period = 2 * (n - 1);
        int r = (i < 0 ? -i : i) % period;
        return r >= n ? period - r : r;
    }
}

/* The source offset (dense in p->in) of output element `o`, or -1 when a constant fills it. */
static long pad_offset(const aloha_pad_t *p, size_t o)
{
    long at = 0, stride = 1;
    int k;
    for (k = p->rank - 1; k >= 0; k--) {
        const int i = (int)(o % (size_t)p->out[k]);
        const int s = aloha_pad_source(i - p->before[k], p->in[k], p->mode);
        o /= (size_t)p->out[k];
        if (s < 0)
            return -1;
        at += (long)s * stride;
        stride *= p->in[k];
    }
    return at;
}

void aloha_pad_f32(const float *x, const aloha_pad_t *p, float value, float *out)
{
    const size_t n = dense_count(p->rank, p->out);
    size_t o;
    for (o = 0; o < n; o++) {
        const long s = x ? pad_offset(p, o) : -1;
        out[o] = s < 0 ? value : x[s];
    }
}

void aloha_pad_q(const void *x, int xtype, const aloha_pad_t *p, int64_t value,
                 const aloha_rq_t *rq, void *out)
{
    const size_t n = dense_count(p->rank, p->out);
    size_t o;
    for (o = 0; o < n; o++) {
        const long s = x ? pad_offset(p, o) : -1;
        aloha_store(out, rq->type, o,
                    aloha_requant(s < 0 ? value : aloha_load(x, xtype, (size_t)s), 0, rq));
    }
}

/* The [N, C, W] pad of row oy of a rank-4 pad, and the window element offset of its source row
 * (-1: a constant row). */
static long pad_row_setup(const aloha_win_t *x, const aloha_pad_t *p, int oy, aloha_pad_t *row)
{
    static const int axes[3] = {0, 1, 3};
    const int sy = aloha_pad_source(oy - p->before[2], p->in[2], p->mode);
    int k;
    assert(p->rank == 4);
    memset(row, 0, sizeof *row);
    row->rank = 3;
    row->mode = p->mode;
    for (k = 0; k < 3; k++) {
        row->in[k] = p->in[axes[k]];
        row->out[k] = p->out[axes[k]];
        row->before[k] = p->before[axes[k]];
    }
    return sy < 0 ? -1 : (long)win_offset(x, sy);
}

void aloha_pad_row_f32(const aloha_win_t *x, const aloha_pad_t *p, int oy, float value,
                       float *out)
{
    aloha_pad_t row;
    const long at = pad_row_setup(x, p, oy, &row);
    aloha_pad_f32(at < 0 ? NULL : (const float *)x->p + at, &row, value, out);
}

void aloha_pad_row_q(const aloha_win_t *x, const aloha_pad_t *p, int oy, int64_t value,
                     const aloha_rq_t *rq, void *out)
{
    aloha_pad_t row;
    const long at = pad_row_setup(x, p, oy, &row);
    aloha_pad_q(at < 0 ? NULL : (const unsigned char *)x->p + (size_t)at *
                (size_t)aloha_type_size(x->type), x->type, &row, value, rq, out);
}

/* ---- reduction over axes --------------------------------------------------------------------- */

/* The reduction (kind) of the reduced box at element offset `at`: float elements summed or
 * multiplied in double, fixed-point ones summed as an exact integer (as numpy's float64 sum of
 * x * 2^-frac_in is, below 2^53) and multiplied as x * 2^-frac_in (`unit`); a maximum or minimum
 * in the input's units; an index as its position in the box. */
static double box_reduce(int kind, const void *x, int xtype, int fixed, double unit, size_t at,
                         int rrank, const int *rdims, const size_t *rstrides)
{
    int ridx[ALOHA_MAX_RANK] = {0};
    const int what = kind & ~ALOHA_REDUCE_LAST, last = (kind & ALOHA_REDUCE_LAST) != 0;
    const int most = what == ALOHA_REDUCE_MAX || what == ALOHA_REDUCE_ARGMAX;
    const int least = what == ALOHA_REDUCE_MIN || what == ALOHA_REDUCE_ARGMIN;
    const size_t count = dense_count(rrank, rdims);
    size_t j, r = 0, where = 0;
    double total = 0.0, best = 0.0, product = 1.0;
    int64_t itotal = 0;
    for (j = 0; j < count; j++) {
        const double v = fixed ? (double)aloha_load(x, xtype, at + r) : ((const float *)x)[at + r];
        if (most || least) {
            if (j == 0 || (most ? v > best : v < best) || (last && v == best)) {
                best = v;
                where = j;
            }
        } else if (what == ALOHA_REDUCE_PROD)
            product *= v * unit;
        else if (fixed)
            itotal += aloha_load(x, xtype, at + r);
        else
            total += v;
        r = odometer_next(rrank, rdims, rstrides, ridx, r);
    }
    if (what == ALOHA_REDUCE_ARGMAX || what == ALOHA_REDUCE_ARGMIN)
        return (double)where;
    if (most || least)
        return best * unit;
    if (what == ALOHA_REDUCE_PROD)
        return product;
    return (fixed ? (double)itotal : total) / (what == ALOHA_REDUCE_MEAN ? (double)count : 1.0) *
           unit;
}

void aloha_reduce_f32(int kind, const float *x, int rank, const int *dims, const size_t *strides,
                      int rrank, const int *rdims, const size_t *rstrides, float *out)
{
    int idx[ALOHA_MAX_RANK] = {0};
    const size_t n = dense_count(rank, dims);
    size_t i, at = 0;
    for (i = 0; i < n; i++) {
        out[i] = (float)box_reduce(kind, x, ALOHA_F32, 0, 1.0, at, rrank, rdims, rstrides);
        at = odometer_next(rank, dims, strides, idx, at);
    }
}

void aloha_reduce_q(int kind, const void *x, int xtype, int rank, const int *dims,
                    const size_t *strides, int rrank, const int *rdims, const size_t *rstrides,
                    int frac_in, int frac_out, int32_t qmin, int32_t qmax, void *out, int otype)
{
    int idx[ALOHA_MAX_RANK] = {0};
    const size_t n = dense_count(rank, dims);
    const double unit = ldexp(1.0, -frac_in);
    size_t i, at = 0;
    for (i = 0; i < n; i++) {
        const double y = box_reduce(kind, x, xtype, 1, unit, at, rrank, rdims, rstrides);
        aloha_store(out, otype, i, aloha_to_fixed(y, frac_out, qmin, qmax));
        at = odometer_next(rank, dims, strides, idx, at);
    }
}

/* ---- resize ---------------------------------------------------------------------------------- */

/* Element i of the row at element offset `row`, as a double (a fixed-point one dequantized). */
static double resize_at(const aloha_win_t *x, size_t row, size_t i, int frac_in, int fixed)
{
    return fixed ? dequant((int32_t)aloha_load(x->p, x->type, row + i), frac_in)
                 : (double)((const float *)x->p)[row + i];
}

/* The linear value of output (ch, ox) from rows `lo` and `hi` (element offsets). */
static double resize_linear(const aloha_win_t *x, const aloha_resize_t *r, int oy, size_t lo,
                            size_t hi, int ch, int ox, int frac_in, int fixed)
{
    const size_t c = (size_t)ch * (size_t)r->w, a = (size_t)r->wlo[ox], b = (size_t)r->whi[ox];
    const double t_lo = resize_at(x, lo, c + a, frac_in, fixed) * r->ww_lo[ox] +
                        resize_at(x, lo, c + b, frac_in, fixed) * r->ww_hi[ox];
    const double t_hi = resize_at(x, hi, c + a, frac_in, fixed) * r->ww_lo[ox] +
                        resize_at(x, hi, c + b, frac_in, fixed) * r->ww_hi[ox];
    return t_lo * r->hw_lo[oy] + t_hi * r->hw_hi[oy];
}

void aloha_resize_row_f32(const aloha_win_t *x, const aloha_resize_t *r, int oy, float *out)
{
    const size_t lo = win_offset(x, r->hlo[oy]), hi = win_offset(x, r->hhi[oy]);
    const float *row = (const float *)x->p + lo;
    int ch, ox;
    for (ch = 0; ch < r->nc; ch++)
        for (ox = 0; ox < r->ow; ox++)
            out[(size_t)ch * r->ow + ox] = r->ww_lo
                ? (float)resize_linear(x, r, oy, lo, hi, ch, ox, 0, 0)
                : row[(size_t)ch * r->w + r->wlo[ox]];
}

void aloha_resize_row_q(const aloha_win_t *x, const aloha_resize_t *r, int oy,
                        const aloha_rq_t *rq, int frac_in, int frac_out, void *out)
{
    const size_t lo = win_offset(x, r->hlo[oy]), hi = win_offset(x, r->hhi[oy]);
    int ch, ox;
    for (ch = 0; ch < r->nc; ch++)
        for (ox = 0; ox < r->ow; ox++) {
            const size_t o = (size_t)ch * r->ow + ox;
            if (r->ww_lo)
                aloha_store(out, rq->type, o,
                            aloha_to_fixed(resize_linear(x, r, oy, lo, hi, ch, ox, frac_in, 1),
                                           frac_out, rq->qmin, rq->qmax));
            else
                aloha_store(out, rq->type, o,
                            aloha_requant(aloha_load(x->p, x->type,
                                                     lo + (size_t)ch * r->w + r->wlo[ox]),
                                          0, rq));
        }
}

/* ---- add and mul of any rank ----------------------------------------------------------------- */

void aloha_binary_f32(int kind, const float *a, const size_t *sa, const float *b,
                      const size_t *sb, int rank, const int *dims, const aloha_act_t *act,
                      float *out)
{
    int ia[ALOHA_MAX_RANK] = {0}, ib[ALOHA_MAX_RANK] = {0};
    const size_t n = dense_count(rank, dims);
    size_t i, pa = 0, pb = 0;
    for (i = 0; i < n; i++) {
        out[i] = aloha_act1_f32(kind == ALOHA_BINARY_ADD ? a[pa] + b[pb] : a[pa] * b[pb], act);
        pa = odometer_next(rank, dims, sa, ia, pa);
        pb = odometer_next(rank, dims, sb, ib, pb);
    }
}

void aloha_binary_q(int kind, const void *a, int atype, int la, const size_t *sa, const void *b,
                    int btype, int lb, const size_t *sb, int rank, const int *dims,
                    const aloha_rq_t *rq, void *out)
{
    int ia[ALOHA_MAX_RANK] = {0}, ib[ALOHA_MAX_RANK] = {0};
    const size_t n = dense_count(rank, dims);
    size_t i, pa = 0, pb = 0;
    for (i = 0; i < n; i++) {
        const int64_t va = aloha_load(a, atype, pa), vb = aloha_load(b, btype, pb);
        const int64_t v = kind == ALOHA_BINARY_ADD ? wrap_add(wrap_shl(va, la), wrap_shl(vb, lb))
                                                   : wrap_mul(va, vb);
        aloha_store(out, rq->type, i, aloha_requant(v, 0, rq));
        pa = odometer_next(rank, dims, sa, ia, pa);
        pb = odometer_next(rank, dims, sb, ib, pb);
    }
}
