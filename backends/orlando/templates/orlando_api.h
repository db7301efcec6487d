/* Orlando middleware API, as the generated program uses it (hardware.md "What a generated
 * middleware looks like"): configure the stream switch, configure the convolution accelerators
 * (kernel size, batch, parallel kernels, chaining), run CA and DSP kernels (pool, activation, LRN,
 * fully connected), set the operating point.
 *
 * No vendor SDK exists here: orlando_api_host.c emulates this API on the host with the common
 * kernel library (aloha_kernels.h). Units are numbered as the platform lists them (the routes'
 * src/dst). ALOHA_PLATFORM_LOG set in the environment prints the counters at the end of a run. */
#ifndef ORLANDO_API_H
#define ORLANDO_API_H

#include "aloha_kernels.h"

#define ORL_CA_COUNT 8
#define ORL_DSP_COUNT 16

/* One stream-switch route: the stream of a FIFO from unit src to unit dst (a source with several
 * routes is a multicast). */
typedef struct { const char *fifo; int src, dst; } orl_route_t;

/* A convolution accelerator configuration (one conv actor). */
typedef struct orl_ca_cfg {
    const char *name;
    int ca;            /* CA index 0..7 */
    int kh, kw;        /* kernel size (<= 12x12 per CA; larger ones are chained) */
    int batch;         /* input maps accumulated per pass (<= 16) */
    int parallel;      /* kernels computed in parallel (<= 4) */
    int chain;         /* CAs chained through the partial-sum input (1: none) */
    int cin, cout;     /* input maps per group, output maps of the actor */
    long rows, passes; /* counters: output rows, CA passes */
} orl_ca_cfg_t;

/* operating point: "low" (200 MHz @ 0.575 V) or "high" (1.175 GHz @ 1.1 V) */
void orl_set_opp(const char *opp);
void orl_ss_configure(const orl_route_t *routes, int n);
void orl_ca_configure(orl_ca_cfg_t *cfg);
/* one output row oy, maps [co_lo, co_hi), of the conv on the configured CA (fused bias,
 * activation / requantisation) */
void orl_ca_conv_row_q(orl_ca_cfg_t *cfg, const aloha_win_t *x, const void *w,
                       const int32_t *bias, const aloha_conv_t *g, const aloha_rq_t *rq, int oy,
                       int co_lo, int co_hi, void *out);
void orl_ca_conv_row_f32(orl_ca_cfg_t *cfg, const aloha_win_t *x, const float *w,
                         const float *bias, const aloha_conv_t *g, const aloha_act_t *act,
                         int oy, int co_lo, int co_hi, float *out);
/* a DSP kernel launch (the kernel itself is the common library's) */
void orl_dsp_launch(int dsp, const char *kernel);
/* power knob of CA `ca`: busy = 1 before a frame's firings (back to the graph's operating point,
 * clock on), 0 after them (dropped to the low point and clock-gated) */
void orl_ca_power(int ca, int busy);
/* with ALOHA_PLATFORM_LOG set: routes, CA passes, DSP launches, operating-point switches */
void orl_report(const orl_ca_cfg_t *const *cas, int ncas, long frames);

#endif /* ORLANDO_API_H */
