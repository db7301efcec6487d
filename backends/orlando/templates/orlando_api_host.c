/* Host emulation of the Orlando middleware API (orlando_api.h), built on aloha_kernels.
 *
 * - stream switch: the routes are checked (units in range) and counted; the FIFOs of the generated
 *   program carry the data the links would;
 * - CA: a row is computed with aloha_conv_row_q / _f32 (bias and activation / requantisation
 *   fused). A chained configuration (chain > 1) accumulates its stages' partial sums at once: the
 *   partial sums are exact integer sums (fixed point), so the chain's result equals it; the passes
 *   are counted as chain x ceil(maps / parallel) per row;
 * - DSP: a launch is counted; the kernel is the common library's call that follows it;
 * - operating points: orl_set_opp records the chip's point; orl_ca_power switches a CA to the low
 *   point and gates it when its frame's convolutions are done, and back when the next frame
 *   starts; when every CA is idle at once (the FC phase) the whole CA domain is at the low
 *   point. */
{% if view.runtime == "threads" %}
#include <pthread.h>
{% endif %}
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aloha_rt.h"
#include "orlando_api.h"

{% if view.runtime == "threads" %}
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
{% endif %}
static char g_opp[16] = "low";
static int g_routes, g_multicast;
static int g_ca_busy[ORL_CA_COUNT], g_ca_gated[ORL_CA_COUNT], g_ca_busy_count;
static long g_ca_gates, g_opp_switches, g_all_idle, g_dsp_launches[ORL_DSP_COUNT];

void orl_set_opp(const char *opp)
{
    if (strcmp(opp, "low") != 0 && strcmp(opp, "high") != 0)
        aloha_fatal("orlando: no operating point '%s' (low, high)", opp);
{% if view.runtime == "threads" %}
    pthread_mutex_lock(&g_lock);
{% endif %}
    if (strcmp(g_opp, opp) != 0)
        g_opp_switches++;
    snprintf(g_opp, sizeof g_opp, "%s", opp);
{% if view.runtime == "threads" %}
    pthread_mutex_unlock(&g_lock);
{% endif %}
}

void orl_ss_configure(const orl_route_t *routes, int n)
{
    int i, k;
    g_routes = n;
    g_multicast = 0;
    for (i = 0; i < n; i++) {
        if (routes[i].src < 0 || routes[i].dst < 0 || routes[i].src == routes[i].dst)
            aloha_fatal("orlando: bad stream-switch route for %s", routes[i].fifo);
        for (k = 0; k < i; k++)
            if (routes[k].src == routes[i].src && routes[k].dst != routes[i].dst) {
                g_multicast++;
                break;
            }
    }
}

void orl_ca_configure(orl_ca_cfg_t *cfg)
{
    if (cfg->ca < 0 || cfg->ca >= ORL_CA_COUNT || cfg->batch < 1 || cfg->batch > 16
        || cfg->parallel < 1 || cfg->parallel > 4 || cfg->chain < 1
        || (cfg->chain == 1 && (cfg->kh > 12 || cfg->kw > 12)))
        aloha_fatal("orlando: invalid CA configuration for %s", cfg->name);
    cfg->rows = cfg->passes = 0;
}

static void count_row(orl_ca_cfg_t *cfg, int maps)
{
    cfg->rows++;
    cfg->passes += (long)cfg->chain * ((maps + cfg->parallel - 1) / cfg->parallel);
}

void orl_ca_conv_row_q(orl_ca_cfg_t *cfg, const aloha_win_t *x, const void *w,
                       const int32_t *bias, const aloha_conv_t *g, const aloha_rq_t *rq, int oy,
                       int co_lo, int co_hi, void *out)
{
    count_row(cfg, co_hi - co_lo);
    aloha_conv_row_q(x, w, bias, g, rq, oy, co_lo, co_hi, out);
}

void orl_ca_conv_row_f32(orl_ca_cfg_t *cfg, const aloha_win_t *x, const float *w,
                         const float *bias, const aloha_conv_t *g, const aloha_act_t *act,
                         int oy, int co_lo, int co_hi, float *out)
{
    count_row(cfg, co_hi - co_lo);
    aloha_conv_row_f32(x, w, bias, g, act, oy, co_lo, co_hi, out);
}

void orl_dsp_launch(int dsp, const char *kernel)
{
    if (dsp < 0 || dsp >= ORL_DSP_COUNT)
        aloha_fatal("orlando: no DSP %d for %s", dsp, kernel);
    g_dsp_launches[dsp]++;  /* one thread per DSP: no race */
}

void orl_ca_power(int ca, int busy)
{
{% if view.runtime == "threads" %}
    pthread_mutex_lock(&g_lock);
{% endif %}
    if (busy && !g_ca_busy[ca]) {
        g_ca_busy[ca] = 1;
        g_ca_gated[ca] = 0;
        g_ca_busy_count++;
    } else if (!busy && g_ca_busy[ca]) {
        g_ca_busy[ca] = 0;
        g_ca_gated[ca] = 1;  /* low point, clock gated */
        g_ca_gates++;
        if (--g_ca_busy_count == 0)
            g_all_idle++;  /* every CA idle: the rest of the frame (FC phase) at the low point */
    }
{% if view.runtime == "threads" %}
    pthread_mutex_unlock(&g_lock);
{% endif %}
}

void orl_report(const orl_ca_cfg_t *const *cas, int ncas, long frames)
{
    int i;
    long dsp = 0;
    if (!getenv("ALOHA_PLATFORM_LOG"))
        return;
    for (i = 0; i < ORL_DSP_COUNT; i++)
        dsp += g_dsp_launches[i];
    fprintf(stderr, "orlando: operating point %s; %d stream-switch route(s) (%d multicast); "
            "%ld DSP kernel launch(es) over %ld frame(s)\n", g_opp, g_routes, g_multicast, dsp,
            frames);
    for (i = 0; i < ncas; i++)
        fprintf(stderr, "orlando: CA%d %s: %dx%d kernel, batch %d, %d parallel, chain %d: %ld "
                "rows, %ld passes\n", cas[i]->ca, cas[i]->name, cas[i]->kh, cas[i]->kw,
                cas[i]->batch, cas[i]->parallel, cas[i]->chain, cas[i]->rows, cas[i]->passes);
    fprintf(stderr, "orlando: CAs dropped to the low point and gated %ld time(s); every CA idle "
            "(FC phase) %ld time(s); %ld operating-point switch(es)\n", g_ca_gates, g_all_idle,
            g_opp_switches);
}
