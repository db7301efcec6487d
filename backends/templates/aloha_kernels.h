/* ALOHA host backend: the C99 kernel library the generated code calls.
 *
 * Fixed-point kernels reproduce runtime/reference.py (aloha_ir/fixedpoint.py) bit for bit: round
 * half up, saturation, the avg-pool round_div, the leaky multiplier with ALOHA_LEAKY_FRAC = 8, and
 * the float64 islands (sigmoid, tanh, softmax, LRN). Integer overflow wraps modulo 2^64 as int64
 * numpy does (computed in uint64, so never undefined behaviour); shifts of 64 bits or more follow
 * numpy too. Float islands need IEEE double without contraction into FMA: compile in ISO mode
 * (-std=c99 implies -ffp-contract=off) or pass -ffp-contract=off, and never -ffast-math.
 *
 * Layout: tensors are NCHW with N = 1. Row y of a [C, H, W] tensor holds x[c][y][w] at offset
 * c * W + w (channel-major within the row). Rows outside [0, h) are padding; reading a row in
 * [0, h) that the window does not hold is a caller bug caught by assert.
 *
 * Storage: float values are float. A fixed-point tensor is stored in the narrowest C integer that
 * holds its format (aloha_ir/fixedpoint.py `storage_type`): int8_t / uint8_t up to 8 bits,
 * int16_t / uint16_t up to 16, int32_t up to 32 (biases, in the accumulator's format). Every
 * fixed-point buffer carries its type tag (ALOHA_I8 ...): a window in `type`, a requantisation's
 * output in aloha_rq_t `type`, raw arrays in an explicit argument; tag 0 is int32_t. Convolution
 * and dense accumulate in int32_t when the generator proved from the fan-in and the formats that
 * the sum of products cannot leave int32 (`acc32`), else in 64 bits; every other kernel works in
 * int64_t. Products and sums that could exceed int64 wrap modulo 2^64 exactly like numpy's int64
 * arithmetic in runtime/reference.py (computed in uint64, so never undefined behaviour).
 */
#ifndef ALOHA_KERNELS_H
#define ALOHA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ALOHA_LEAKY_FRAC 8

/* Element type tags of fixed-point buffers (0, the default of a zeroed struct, is int32_t). */
enum { ALOHA_I32 = 0, ALOHA_I8, ALOHA_U8, ALOHA_I16, ALOHA_U16, ALOHA_F32, ALOHA_I64 };

/* Rows [base, base + rows) of a [c, h, w] tensor, stored contiguously row after row:
 * x[ch][y][xx] = ((const T *)p)[((y - base) * c + ch) * w + xx], T given by `type`. */
typedef struct { const void *p; int base, rows; int c, h, w; int type; } aloha_win_t;

enum { ALOHA_ACT_NONE, ALOHA_ACT_RELU, ALOHA_ACT_LEAKY, ALOHA_ACT_CLIP, ALOHA_ACT_SIGMOID,
       ALOHA_ACT_TANH };

/* Float activation: leaky uses alpha, clip [lo, hi]. A NULL pointer means ALOHA_ACT_NONE. */
typedef struct { int kind; float alpha, lo, hi; } aloha_act_t;

/* Requantisation of an accumulator to the output format with a fused activation. */
typedef struct {
    const int32_t *shift;  /* per output channel (indexed by ABSOLUTE channel), or NULL: shift0 */
    int32_t shift0;        /* acc_frac - out_frac when not per channel; may be negative */
    int kind;              /* ALOHA_ACT_NONE, RELU, LEAKY or CLIP (fused activation) */
    int32_t leaky_mult;    /* round(alpha * 256), fixedpoint.leaky_multiplier */
    int32_t qmin, qmax;    /* output format range */
    int32_t clip_lo, clip_hi; /* clip bounds already as output integers (fixedpoint.clip_bounds) */
    int type;              /* the output's element type */
} aloha_rq_t;

/* Convolution geometry: pt/pl are the top/left zero padding, dh/dw the dilations; fixed point:
 * wtype is the weights' element type, acc32 = 1 when products summed over the fan-in provably
 * stay inside int32 (the float kernel ignores both). */
typedef struct { int cin, cout, h, w, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw, group, wtype, acc32; }
    aloha_conv_t;

/* Windowed pooling geometry; oh/ow may exceed floor mode (ceil-mode overhang). */
typedef struct { int kind; /* 0 max, 1 avg */ int c, h, w, oh, ow, kh, kw, sh, sw, pt, pl, pb, pr,
                 dh, dw, count_include_pad; } aloha_pool_t;

/* ---- storage ---------------------------------------------------------------------------------- */

/* Bytes of one element of `type`. */
int aloha_type_size(int type);
/* Element i of a fixed-point buffer of `type`, widened. */
int64_t aloha_load(const void *p, int type, size_t i);
/* Store v (already inside the type's range) as element i of a buffer of `type`. */
void aloha_store(void *p, int type, size_t i, int32_t v);

/* ---- scalar rules ---------------------------------------------------------------------------- */

/* acc / 2^s rounded half up (s > 0), acc (s = 0) or acc * 2^-s (s < 0); numpy's wrapping. */
int64_t aloha_shift_round(int64_t acc, int64_t s);
/* floor((2 * total + count) / (2 * count)) with floor division (count > 0; 0 when count is 0). */
int64_t aloha_round_div(int64_t total, int64_t count);
/* Fused activation, shift_round by the channel's shift, saturation: reference _accumulate_out. */
int32_t aloha_requant(int64_t acc, int channel, const aloha_rq_t *rq);
/* clamp(floor(y * 2^frac + 0.5), qmin, qmax); NaN gives qmin. */
int32_t aloha_to_fixed(double y, int frac, int32_t qmin, int32_t qmax);
/* The float activation of one value. */
float aloha_act1_f32(float v, const aloha_act_t *act);

/* ---- convolution ----------------------------------------------------------------------------- */

/* Output row oy, channels [co_lo, co_hi) -> out[(co - co_lo) * ow + ox]; w is the full
 * [cout][cin/group][kh][kw] tensor, bias may be NULL; float sum, then bias, then act. */
void aloha_conv_row_f32(const aloha_win_t *x, const float *w, const float *bias,
                        const aloha_conv_t *g, const aloha_act_t *act, int oy, int co_lo,
                        int co_hi, float *out);
/* The same in integers: sum of x * w (int32 with g->acc32, else 64 bits), + bias[co] (int32,
 * accumulator format, may be NULL), then aloha_requant(acc, co, rq) stored as rq->type; w holds
 * g->wtype elements. */
void aloha_conv_row_q(const aloha_win_t *x, const void *w, const int32_t *bias,
                      const aloha_conv_t *g, const aloha_rq_t *rq, int oy, int co_lo, int co_hi,
                      void *out);
/* The partial sums of taps [ky0, ky0 + kh) x [kx0, kx0 + kw) of output row oy, channels
 * [co_lo, co_hi), without bias or activation: out[((co - co_lo) * ow + ox) * stride + slot] as
 * int32 (g->acc32) or int64 (NEURAghe's split kernels: one slot per partial job). */
void aloha_conv_partial_q(const aloha_win_t *x, const void *w, const aloha_conv_t *g, int oy,
                          int co_lo, int co_hi, int ky0, int kh, int kx0, int kw, int stride,
                          int slot, void *out);
/* The float partial sums, laid out the same way. */
void aloha_conv_partial_f32(const aloha_win_t *x, const float *w, const aloha_conv_t *g, int oy,
                            int co_lo, int co_hi, int ky0, int kh, int kx0, int kw, int stride,
                            int slot, float *out);

/* ---- pooling --------------------------------------------------------------------------------- */

/* Windowed max/avg pool of output row oy, all channels -> out[c * ow + ox]; then act. Max over the
 * taps inside the input (0 if none); avg = sum of those taps / count, count = the (dilated) taps
 * inside the input, or inside the padded area with count_include_pad, never the ceil-mode
 * overhang (= reference avg_counts for undilated windows). */
void aloha_pool_row_f32(const aloha_win_t *x, const aloha_pool_t *p, const aloha_act_t *act,
                        int oy, float *out);
/* Fixed: max of the integers or round_div(sum, count), then aloha_requant(value, 0, rq). */
void aloha_pool_row_q(const aloha_win_t *x, const aloha_pool_t *p, const aloha_rq_t *rq, int oy,
                      void *out);
/* Global pool of x [c][hw] (hw >= 1) -> out[c]; kind 0 max, 1 avg; then act. */
void aloha_gpool_f32(const float *x, int c, int hw, int kind, const aloha_act_t *act, float *out);
/* Global pool in integers (avg = round_div(sum, hw)), then aloha_requant(value, 0, rq); x holds
 * xtype elements. */
void aloha_gpool_q(const void *x, int xtype, int c, int hw, int kind, const aloha_rq_t *rq,
                   void *out);

/* ---- dense ----------------------------------------------------------------------------------- */

/* out[j - m_lo] = act(sum_k x[k] * w[j][k] + bias[j]) for j in [m_lo, m_hi); w is [m][k]. */
void aloha_dense_f32(const float *x, const float *w, const float *bias, int k, int m_lo,
                     int m_hi, const aloha_act_t *act, float *out);
/* The same in integers (x of xtype, w of wtype; int32 sums with acc32, else 64-bit), then
 * aloha_requant(acc, j, rq). */
void aloha_dense_q(const void *x, int xtype, const void *w, int wtype, int acc32,
                   const int32_t *bias, int k, int m_lo, int m_hi, const aloha_rq_t *rq,
                   void *out);

/* ---- binary elementwise with broadcasting ---------------------------------------------------- */
/* Operands are windows of [ca, ha, wa] tensors with ca in {1, c}, ha in {1, H} (ha = 1 reads row
 * 0), wa in {1, w}; out[ch * w + xx] is output row oy of a [c, H, w] tensor. */

/* act(a + b). */
void aloha_add_row_f32(const aloha_win_t *a, const aloha_win_t *b, int oy, int c, int w,
                       const aloha_act_t *act, float *out);
/* act(a * b). */
void aloha_mul_row_f32(const aloha_win_t *a, const aloha_win_t *b, int oy, int c, int w,
                       const aloha_act_t *act, float *out);
/* aloha_requant(a * 2^la + b * 2^lb, ch, rq) with la = f - fa, lb = f - fb >= 0. */
void aloha_add_row_q(const aloha_win_t *a, int la, const aloha_win_t *b, int lb, int oy, int c,
                     int w, const aloha_rq_t *rq, void *out);
/* aloha_requant(a * b, ch, rq) (shift0 = fa + fb - fout). */
void aloha_mul_row_q(const aloha_win_t *a, const aloha_win_t *b, int oy, int c, int w,
                     const aloha_rq_t *rq, void *out);

/* ---- batch norm (scale-shift form) ----------------------------------------------------------- */

/* out[ch * w + xx] = act(x * scale[ch] + bias[ch]) for row oy of the window's tensor. */
void aloha_bn_row_f32(const aloha_win_t *x, const float *scale, const float *bias, int oy,
                      const aloha_act_t *act, float *out);
/* aloha_requant(x * scale[ch] + bias[ch], ch, rq); scale holds stype elements. */
void aloha_bn_row_q(const aloha_win_t *x, const void *scale, int stype, const int32_t *bias, int oy,
                    const aloha_rq_t *rq, void *out);

/* ---- elementwise on n values ----------------------------------------------------------------- */

/* out[i] = act(x[i]) (any kind, sigmoid and tanh included). */
void aloha_act_f32(const float *x, int n, const aloha_act_t *act, float *out);
/* out[i] = aloha_requant(x[i], 0, rq): fixed relu/leaky/clip and format conversions. */
void aloha_requant_q(const void *x, int xtype, int n, const aloha_rq_t *rq, void *out);
/* Float island (kind ALOHA_ACT_SIGMOID or ALOHA_ACT_TANH) in double, then aloha_to_fixed. */
void aloha_island_q(const void *x, int xtype, int n, int frac_in, int frac_out, int32_t qmin,
                    int32_t qmax, int kind, void *out, int otype);

/* ---- softmax --------------------------------------------------------------------------------- */
/* x is [outer][n][inner]; each of the outer * inner slices of length n (stride inner) is
 * normalised independently. */

/* Float softmax: exp(x - max) / sum (the sum in double). */
void aloha_softmax_f32(const float *x, int outer, int n, int inner, float *out);
/* Double island as reference _act: e = exp(x * 2^-frac_in - max), y = e / sum, to_fixed. The sum
 * follows numpy's order (pairwise when inner == 1, sequential otherwise). */
void aloha_softmax_q(const void *x, int xtype, int outer, int n, int inner, int frac_in,
                     int frac_out, int32_t qmin, int32_t qmax, void *out, int otype);
/* Float log-softmax: (x - max) - log(sum exp(x - max)) (the sum in double). */
void aloha_log_softmax_f32(const float *x, int outer, int n, int inner, float *out);
/* Double island as reference _act: y = (x * 2^-frac_in - max) - log(sum), the sum as
 * aloha_softmax_q's, to_fixed. */
void aloha_log_softmax_q(const void *x, int xtype, int outer, int n, int inner, int frac_in,
                         int frac_out, int32_t qmin, int32_t qmax, void *out, int otype);

/* ---- local response normalisation (ONNX, across channels) ------------------------------------ */
/* One row x[c][w]: y = x / (bias + alpha / size * sum_{c'} x[c'] ^ 2) ^ beta over channels
 * [c - (size - 1) / 2, c + size / 2] clipped to [0, c). */

/* Float LRN; the sum of squares and the power are computed in double. */
void aloha_lrn_row_f32(const float *x, int c, int w, int size, float alpha, float beta,
                       float bias, float *out);
/* Double island as reference lrn, then aloha_to_fixed. */
void aloha_lrn_row_q(const void *x, int xtype, int c, int w, int size, double alpha, double beta,
                     double bias, int frac_in, int frac_out, int32_t qmin, int32_t qmax,
                     void *out, int otype);

/* ---- channel shuffle ------------------------------------------------------------------------- */
/* One row x[c][w]: out channel i * groups + j = in channel j * (c / groups) + i. */

/* Float shuffle. */
void aloha_shuffle_row_f32(const float *x, int c, int w, int groups, float *out);
/* Shuffle with a format conversion: aloha_requant(x, 0, rq) (shift0 = fin - fout, kind NONE). */
void aloha_shuffle_row_q(const void *x, int xtype, int c, int w, int groups,
                         const aloha_rq_t *rq, void *out);

/* ---- layout ---------------------------------------------------------------------------------- */
/* NCHW x of xtype (c * h * w elements) -> rows ([h][c][w]) requantised to rq->type: a reshape's
 * copy with its format conversion. */
void aloha_nchw_to_rows_q(const void *x, int xtype, int c, int h, int w, const aloha_rq_t *rq,
                          void *rows);

/* ---- strided layout (transpose, pixel shuffle, depth-to-space) ------------------------------- */
/* out is dense over dims[0..rank) (rank <= ALOHA_MAX_RANK); its element (i_0, ..., i_rank-1) is
 * x[sum_k i_k * strides[k]]: any permutation of a tensor, in whatever order its rows store it. */
#define ALOHA_MAX_RANK 8

/* Float strided copy. */
void aloha_permute_f32(const float *x, int rank, const int *dims, const size_t *strides,
                       float *out);
/* Strided copy with a format conversion: aloha_requant(x, 0, rq) (shift0 = fin - fout). */
void aloha_permute_q(const void *x, int xtype, int rank, const int *dims, const size_t *strides,
                     const aloha_rq_t *rq, void *out);
/* The inverse walk: x is dense over dims[0..rank); its element (i_k) goes to
 * out[offset + sum_k i_k * ostrides[k]] (a concat input into its slice of the output). */
void aloha_place_f32(const float *x, int rank, const int *dims, const size_t *ostrides,
                     size_t offset, float *out);
/* The same with a format conversion: aloha_requant(x, 0, rq) stored as rq->type. */
void aloha_place_q(const void *x, int xtype, int rank, const int *dims, const size_t *ostrides,
                   size_t offset, const aloha_rq_t *rq, void *out);

/* ---- padding (ONNX Pad: constant, reflect, edge) --------------------------------------------- */
enum { ALOHA_PAD_CONSTANT, ALOHA_PAD_REFLECT, ALOHA_PAD_EDGE };

/* A dense [in] tensor padded to a dense [out]: `before` elements added at the start of each axis
 * (the rest at its end). */
typedef struct { int rank, mode; int in[ALOHA_MAX_RANK], out[ALOHA_MAX_RANK],
                 before[ALOHA_MAX_RANK]; } aloha_pad_t;

/* The source index of padded index i along an axis of n elements (i - before), or -1 when a
 * constant pad fills it; reflect mirrors without repeating the edge (numpy's 'reflect'). */
int aloha_pad_source(int i, int n, int mode);
/* Float pad of a whole tensor; x NULL: every element is `value`. */
void aloha_pad_f32(const float *x, const aloha_pad_t *p, float value, float *out);
/* Fixed-point pad: `value` is in x's format; every element goes through aloha_requant(v, 0, rq). */
void aloha_pad_q(const void *x, int xtype, const aloha_pad_t *p, int64_t value,
                 const aloha_rq_t *rq, void *out);
/* Row oy of a rank-4 [N, C, H, W] pad (p->rank 4): the input row it copies (its source along H)
 * padded along N, C and W, or the value row where a constant pad fills the whole row. */
void aloha_pad_row_f32(const aloha_win_t *x, const aloha_pad_t *p, int oy, float value,
                       float *out);
void aloha_pad_row_q(const aloha_win_t *x, const aloha_pad_t *p, int oy, int64_t value,
                     const aloha_rq_t *rq, void *out);

/* ---- reduction over axes (ONNX ReduceMean/Sum/Max/Min/Prod, ArgMax, ArgMin) ------------------ */
/* out is dense over dims[0..rank); its element (i_k) is the mean, sum, maximum, minimum or product
 * (kind) of x[sum_k i_k * strides[k] + sum_j r_j * rstrides[j]] over the reduced box
 * rdims[0..rrank), or the position in the box (one axis) of its first maximum or minimum (the last
 * with ALOHA_REDUCE_LAST or'ed into kind). */
#define ALOHA_REDUCE_MEAN 0
#define ALOHA_REDUCE_SUM 1
#define ALOHA_REDUCE_MAX 2
#define ALOHA_REDUCE_MIN 3
#define ALOHA_REDUCE_PROD 4
#define ALOHA_REDUCE_ARGMAX 5
#define ALOHA_REDUCE_ARGMIN 6
#define ALOHA_REDUCE_LAST 8

/* Float reduction, a sum, mean or product in double, an index as a float. */
void aloha_reduce_f32(int kind, const float *x, int rank, const int *dims, const size_t *strides,
                      int rrank, const int *rdims, const size_t *rstrides, float *out);
/* Reference _reduce: the exact integer sum (over the count for a mean), the integer maximum or
 * minimum, times 2^-frac_in in double, the product of the values x * 2^-frac_in in double, or the
 * index, then aloha_to_fixed. */
void aloha_reduce_q(int kind, const void *x, int xtype, int rank, const int *dims,
                    const size_t *strides, int rrank, const int *rdims, const size_t *rstrides,
                    int frac_in, int frac_out, int32_t qmin, int32_t qmax, void *out, int otype);

/* ---- resize (ONNX Resize of H and W: nearest, linear) ---------------------------------------- */
/* Per output row and column: the input indices it reads (lo, hi) and, for linear, their weights
 * (runtime/reference.py resize_taps); weights are NULL for nearest, which reads lo alone. */
typedef struct { int nc, w, ow; const int *hlo, *hhi, *wlo, *whi;
                 const double *hw_lo, *hw_hi, *ww_lo, *ww_hi; } aloha_resize_t;

/* Row oy of a resize of the window's [nc, h, w] rows: nearest copies, linear computes
 * hw_lo * (ww_lo * x[lo][lo] + ww_hi * x[lo][hi]) + hw_hi * (... row hi) in double. */
void aloha_resize_row_f32(const aloha_win_t *x, const aloha_resize_t *r, int oy, float *out);
/* Nearest: aloha_requant(x, 0, rq) of the element it copies; linear: the same double formula on
 * x * 2^-frac_in (reference resize_linear), then aloha_to_fixed. */
void aloha_resize_row_q(const aloha_win_t *x, const aloha_resize_t *r, int oy,
                        const aloha_rq_t *rq, int frac_in, int frac_out, void *out);

/* ---- add and mul of any rank (whole tensors) ------------------------------------------------- */
enum { ALOHA_BINARY_ADD, ALOHA_BINARY_MUL };

/* out is dense over dims[0..rank); operand a's element of output (i_k) is a[sum_k i_k * sa[k]]
 * (stride 0 along a broadcast axis), b's likewise. Float: a + b or a * b, then the activation. */
void aloha_binary_f32(int kind, const float *a, const size_t *sa, const float *b,
                      const size_t *sb, int rank, const int *dims, const aloha_act_t *act,
                      float *out);
/* Fixed point as aloha_add_row_q ((a << la) + (b << lb)) and aloha_mul_row_q (a * b), then
 * aloha_requant(v, 0, rq). */
void aloha_binary_q(int kind, const void *a, int atype, int la, const size_t *sa, const void *b,
                    int btype, int lb, const size_t *sb, int rank, const int *dims,
                    const aloha_rq_t *rq, void *out);

#ifdef __cplusplus
}
#endif

#endif /* ALOHA_KERNELS_H */
