/* ALOHA runtime: bounded FIFOs with blocking reads and writes, actors that fire over row windows,
 * and one thread per processing element running its actors in a static order.
 *
 * A token is one element of the tensor a FIFO carries, stored in its element type (`elem` bytes:
 * float, or the fixed-point format's int8_t/uint8_t/int16_t/uint16_t/int32_t; the partial sums a
 * NEURAghe merge receives are one token per output element holding all its partials). A FIFO never
 * grows: a firing that moves more tokens than a FIFO holds is reported at once, and a run where
 * every thread waits on a FIFO (a deadlock: some FIFO is too small for the schedule) is reported
 * and exits with status 3 instead of hanging. */
#ifndef ALOHA_RT_H
#define ALOHA_RT_H

#include <stdint.h>
#include <stdio.h>
{% if view.runtime == "threads" %}
#include <pthread.h>
{% else %}
#include <stddef.h>
{% endif %}

typedef struct aloha_fifo {
    const char *name;
    unsigned char *buf;
    int capacity;              /* tokens: the size analyze-schedule computed */
    int elem;                  /* bytes per token */
    int head, tail, count;     /* single producer, single consumer ring: head the consumer's,
                                  tail the producer's, count shared (atomic between threads) */
{% if view.runtime == "threads" %}
    int reader_waiting, writer_waiting; /* tokens (room) a sleeping reader (writer) waits for
                                           (atomic: the other side reads it without the lock) */
    pthread_cond_t data, space;
{% endif %}
} aloha_fifo;

/* One input port: rows of the input tensor held for the current firing. */
typedef struct aloha_port {
    aloha_fifo *in;            /* the channel from the producer */
    aloha_fifo *reuse;         /* the reuse self-loop, or NULL */
    const int *new_rows;       /* per phase: rows newly read from `in` */
    const int *reuse_in;       /* per phase: rows taken back from `reuse` */
    const int *reuse_out;      /* per phase: rows put into `reuse` after the firing */
    int row_tokens;
    int whole;                 /* keep every row of the frame (the op needs its whole input) */
    unsigned char *win;        /* window_rows x row_tokens tokens of the input's element type */
    int base, rows;            /* the window holds rows [base, base + rows) */
    int read;                  /* rows read from `in` in this frame */
} aloha_port;

struct aloha_actor;
typedef void (*aloha_compute)(struct aloha_actor *a, int phase);

typedef struct aloha_actor {
    const char *name;
    int phases, phase;
    int nin, nout;
    aloha_port *in;
    aloha_fifo **out;
    const int *prod;           /* per phase: tokens written to every output FIFO */
    unsigned char *obuf;       /* one firing's output, in the output's element type */
    aloha_compute compute;
    float out_scale;           /* dequantisation of the output for dumps (1 for float) */
    int out_type;              /* the output's element type (aloha_kernels.h ALOHA_I8 ...) */
    int out_per_token;         /* elements per output token (partial sums to a merge: one per job) */
    int fixed;
    FILE *dump;                /* debug builds: every produced element, as float32 */
    double compute_s;          /* ALOHA_PROFILE=1: seconds computing, firing otherwise (not */
    double overhead_s;         /* waiting on FIFOs), and firings */
    long firings;
} aloha_actor;

typedef struct aloha_thread {
    const char *name;
    const int *order;          /* (actor index, firings) pairs for one frame */
    int runs;
    int unit;                  /* the processing unit's index in the platform's numbering */
    /* power knob, or NULL: called with busy = 1 before a frame's firings and 0 after them, so a
     * platform gates (or slows) a unit the mapping leaves idle for the rest of the frame */
    void (*busy)(const struct aloha_thread *t, long frame, int busy);
{% if view.runtime == "threads" %}
    pthread_t tid;
{% endif %}
} aloha_thread;

void aloha_fifo_init(aloha_fifo *f, const char *name, void *buf, int capacity, int elem);
void aloha_fifo_read(aloha_fifo *f, void *dst, int n);
void aloha_fifo_write(aloha_fifo *f, const void *src, int n);

void aloha_fire(aloha_actor *a);
/* a pointer to the window of port p as the kernels' aloha_win_t wants it */
const void *aloha_rows(const aloha_port *p);

{% if view.runtime == "threads" %}
/* Run `frames` frames: one thread per entry of `threads`, each firing actors[order...]. */
{% else %}
/* Run `frames` frames, each firing actors[order...] of the one entry of `threads` (the static-order
 * runtime: one thread, so a read finds its tokens and a write its room, or the order is wrong). */
{% endif %}
int aloha_run(aloha_actor *actors, aloha_thread *threads, int nthreads, long frames);

void aloha_fatal(const char *fmt, ...);

/* seconds on a monotonic clock; frame entry and completion times for ALOHA_TIMING */
double aloha_now(void);
void aloha_frame_begin(void);
void aloha_frame_done(void);
void aloha_report_timing(void);
void aloha_report_profile(const aloha_actor *actors, int n);

/* layout: row-major windows ([H][C][W]) <-> NCHW, elements of `elem` bytes */
void aloha_rows_to_nchw(const void *rows, int c, int h, int w, int elem, void *nchw);
void aloha_nchw_to_rows(const void *nchw, int c, int h, int w, int elem, void *rows);

/* ALOHA_MEMORY=1: the bytes the program holds, as its own sizeof of every static buffer says
 * (the report's memory figures name the same parts) */
typedef struct aloha_memory {
    size_t parameter_bytes;    /* weights, biases, per-channel shifts */
    size_t buffer_bytes;       /* FIFO buffers */
    size_t window_bytes;       /* actors' input row windows */
    size_t row_bytes;          /* actors' output buffers (one firing) */
    size_t staging_bytes;      /* whole-tensor layout staging (global pool, reshape) */
    size_t io_bytes;           /* the input and output frames */
} aloha_memory;
void aloha_report_memory(const aloha_memory *m);

#endif
