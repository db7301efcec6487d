/* ALOHA runtime: see aloha_rt.h. Every FIFO has one producer and one consumer, so a FIFO between
 * threads is a lock-free ring (aloha_fifo_read/write below): a read or write that finds its tokens
 * (its room) takes no lock and makes no system call. Only one that must wait takes the one mutex,
 * g_lock, which guards the count of sleeping threads (a deadlock is every live thread asleep) and
 * what each sleeper waits for, and sleeps on the FIFO's condition variable until the other side
 * wakes it. A reuse self-loop stays within its actor's thread and is a plain ring.
 *
 * ALOHA_SPIN_US (default 0: off) makes a thread that would sleep first spin that long watching the
 * FIFO, and only when every thread has a core of its own. Measured on the 2-core host (mnist-8,
 * lenet5, mnist_cnn): spinning made every frame slower, at 5 us as at 50 us, and the sleeps did not
 * become fewer; the thread a spinner waits for is often queued on the spinner's own core (the
 * scheduler puts a woken thread beside the one that woke it) or preempted by another process. */
{% if view.runtime == "static" %}
/* The static-order variant (alohac compile --runtime static): one thread fires the frame's firings
 * in the schedule's start order, so a read finds its tokens and a write its room, or the order does
 * not fit the FIFOs (reported, exit 3; the minimal sizes are the threads', not this order's). No
 * pthreads, no locks, no malloc: C99 and a C library's stdio (newlib's semihosting on a Cortex-M). */
{% endif %}
#define _POSIX_C_SOURCE 200809L
#include "aloha_rt.h"
#include "aloha_kernels.h"

#include <stdarg.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef ALOHA_SPIN_US
#define ALOHA_SPIN_US 0
#endif

{% if view.runtime == "threads" %}
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_live;      /* pipeline threads not finished */
static int g_blocked;   /* of those, waiting on a FIFO */
/* ALOHA_PROFILE=1 prints these per frame: FIFO reads and writes that move tokens (reuse self-loops
 * aside), those that found too few tokens (too little room) and went the slow way, the times a
 * thread slept, and the acquisitions of g_lock by FIFO operations (only the slow way and the
 * wake-ups take it) */
static long g_ops, g_waits, g_sleeps, g_locks;
static __thread long t_ops, t_waits;
{% endif %}
static aloha_actor *g_actors;
static long g_frames;
static double g_start, g_first_done, g_last_done;
static long g_done;
{% if view.runtime == "threads" %}
static double g_spin_s; /* how long a thread spins before it sleeps on a FIFO */
{% endif %}
static int g_profile;   /* ALOHA_PROFILE=1: time every firing's computation */
{% if view.runtime == "threads" %}
static __thread double t_waited; /* profiling: this thread's seconds waiting on FIFOs */

double aloha_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
{% else %}
static double t_waited; /* one thread: nothing waits, stays 0 */

/* seconds on a monotonic clock under Linux (the host, or an ARM Linux under QEMU: wall time, as
 * onnxruntime's is measured); on bare metal processor time (a bare-metal C library has no monotonic
 * clock; newlib's semihosting asks the host for it, in its resolution) */
double aloha_now(void)
{
#ifdef __linux__
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
#else
    return (double)clock() / (double)CLOCKS_PER_SEC;
#endif
}
{% endif %}

/* ALOHA_TIMING=latency: frames enter one at a time (each once the previous has left), so every
 * frame after the first sees an empty, warm pipeline: the latency the analysis predicts */
static int g_one_at_a_time;
{% if view.runtime == "threads" %}
static pthread_cond_t g_frame_left = PTHREAD_COND_INITIALIZER;
{% endif %}
static long g_begun;
{% if view.runtime == "threads" %}
static int g_input_waiting;
{% endif %}
static double g_begin_t;
#define SAMPLES {{ "1024" if view.runtime == "threads" else "64  /* 512 B of a microcontroller's RAM */" }}
static double g_sample[SAMPLES]; /* per frame: its latency (one at a time) or the gap since the
                                   previous frame left (streaming) */
static int g_samples;

{% if view.runtime == "threads" %}
/* called by the input actor before it reads frame g_begun */
void aloha_frame_begin(void)
{
    pthread_mutex_lock(&g_lock);
    while (g_one_at_a_time && g_done < g_begun) {
        g_input_waiting = 1;
        g_blocked++;
        if (g_blocked == g_live)
            aloha_fatal("deadlock: the input waits for a frame that never leaves the pipeline");
        pthread_cond_wait(&g_frame_left, &g_lock);
        if (g_input_waiting) { /* woken spuriously */
            g_input_waiting = 0;
            g_blocked--;
        }
    }
    g_begin_t = aloha_now();
    g_begun++;
    pthread_mutex_unlock(&g_lock);
}

/* called by the output actor when a frame is written */
void aloha_frame_done(void)
{
    double t = aloha_now();
    pthread_mutex_lock(&g_lock);
    if (g_done++ == 0)
        g_first_done = t;
    else if (g_samples < SAMPLES)
        g_sample[g_samples++] = g_one_at_a_time ? t - g_begin_t : t - g_last_done;
    g_last_done = t;
    if (g_input_waiting) { /* one at a time: the input waits for this frame to leave */
        g_input_waiting = 0;
        g_blocked--;
        pthread_cond_signal(&g_frame_left);
    }
    pthread_mutex_unlock(&g_lock);
}
{% else %}
/* called by the input actor before it reads frame g_begun: one thread runs a frame to its end
 * before the next begins, so every frame enters an empty pipeline */
void aloha_frame_begin(void)
{
    g_begin_t = aloha_now();
    g_begun++;
}

/* called by the output actor when a frame is written */
void aloha_frame_done(void)
{
    double t = aloha_now();
    if (g_done++ == 0)
        g_first_done = t;
    else if (g_samples < SAMPLES)
        g_sample[g_samples++] = g_one_at_a_time ? t - g_begin_t : t - g_last_done;
    g_last_done = t;
}
{% endif %}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ALOHA_TIMING=1: the first frame's latency (a cold, empty pipeline) and the period, the median
 * gap between frames leaving; ALOHA_TIMING=latency: the median latency of frames 2.. entering
 * an empty, warm pipeline. Medians, so a moment's preemption by another process does not count. */
void aloha_report_timing(void)
{
    const char *on = getenv("ALOHA_TIMING");
    double latency = g_first_done - g_start, period = latency, median = latency;
    if (!on || !*on || *on == '0')
        return;
    if (g_samples) {
        qsort(g_sample, (size_t)g_samples, sizeof g_sample[0], by_value);
        median = g_samples % 2 ? g_sample[g_samples / 2]
                 : 0.5 * (g_sample[g_samples / 2 - 1] + g_sample[g_samples / 2]);
    }
    if (g_one_at_a_time)
        latency = median;
    else
        period = median;
    fprintf(stderr, "timing: frames %ld latency_s %.9g period_s %.9g total_s %.9g mode %s\n", g_done,
            latency, period, g_last_done - g_start, g_one_at_a_time ? "latency" : "stream");
}

/* ALOHA_PROFILE=1: per actor, firings and seconds computing, per frame (against the analysis's
 * predicted per-actor cost in network.json: where the cost model is wrong) */
void aloha_report_profile(const aloha_actor *actors, int n)
{
    int i;
    if (!g_profile || g_done == 0)
        return;
    for (i = 0; i < n; i++)
        fprintf(stderr, "profile: actor %d firings %.9g compute_s %.9g overhead_s %.9g name %s\n",
                i, (double)actors[i].firings / (double)g_done, actors[i].compute_s / (double)g_done,
                actors[i].overhead_s / (double)g_done, actors[i].name);
{% if view.runtime == "threads" %}
    fprintf(stderr, "sync: fifo_ops %.9g waits %.9g sleeps %.9g locks %.9g per frame\n",
            (double)g_ops / (double)g_done, (double)g_waits / (double)g_done,
            (double)g_sleeps / (double)g_done, (double)g_locks / (double)g_done);
{% endif %}
}

void aloha_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("network: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(3);
}

void aloha_fifo_init(aloha_fifo *f, const char *name, void *buf, int capacity, int elem)
{
    f->name = name;
    f->buf = (unsigned char *)buf;
    f->capacity = capacity;
    f->elem = elem;
    f->head = f->tail = f->count = 0;
{% if view.runtime == "threads" %}
    f->reader_waiting = f->writer_waiting = 0;
    pthread_cond_init(&f->data, NULL);
    pthread_cond_init(&f->space, NULL);
{% endif %}
}

{% if view.runtime == "threads" %}
/* called with g_lock held, before waiting: every live thread waiting means nobody can wake one */
static void check_deadlock(const aloha_fifo *f, const char *what, int n)
{
    if (g_blocked == g_live)
        aloha_fatal("deadlock: every thread waits; the last waits to %s %d tokens on FIFO %s "
                    "(capacity %d, holding %d): a FIFO is smaller than the schedule needs",
                    what, n, f->name, f->capacity, __atomic_load_n(&f->count, __ATOMIC_SEQ_CST));
}

{% endif %}
static void copy_in(aloha_fifo *f, int at, const unsigned char *src, int n)
{
    const size_t e = (size_t)f->elem;
    int first = f->capacity - at < n ? f->capacity - at : n;
    memcpy(f->buf + (size_t)at * e, src, (size_t)first * e);
    memcpy(f->buf, src + (size_t)first * e, (size_t)(n - first) * e);
}

static void copy_out(const aloha_fifo *f, int at, unsigned char *dst, int n)
{
    const size_t e = (size_t)f->elem;
    int first = f->capacity - at < n ? f->capacity - at : n;
    memcpy(dst, f->buf + (size_t)at * e, (size_t)first * e);
    memcpy(dst + (size_t)first * e, f->buf, (size_t)(n - first) * e);
}

/* A reuse self-loop's producer and consumer are one actor, so one thread: its ring needs no
 * synchronisation, and a read that finds too few tokens (a write too little room) would wait for
 * its own thread, so it is reported at once (exit 3). The static-order runtime's every FIFO is one. */
static void local_write(aloha_fifo *f, const void *src, int n)
{
    if (n <= 0)
        return;
    if (f->capacity - f->count < n)
        aloha_fatal("{{ "deadlock: " if view.runtime == "threads" }}FIFO %s holds %d of %d tokens and the {{ "actor" if view.runtime == "threads" else "static order" }} writes %d more: the FIFO "
                    "is too small for it (generate with the schedule's FIFO sizes, --buffers "
                    "schedule)", f->name, f->count, f->capacity, n);
    copy_in(f, f->tail, (const unsigned char *)src, n);
    f->tail = (f->tail + n) % f->capacity;
    f->count += n;
}

static void local_read(aloha_fifo *f, void *dst, int n)
{
    if (n <= 0)
        return;
    if (f->count < n)
        aloha_fatal("{{ "deadlock: " if view.runtime == "threads" }}FIFO %s holds %d tokens and the {{ "actor" if view.runtime == "threads" else "static order" }} reads %d: a firing runs before "
                    "its producer's", f->name, f->count, n);
    copy_out(f, f->head, (unsigned char *)dst, n);
    f->head = (f->head + n) % f->capacity;
    f->count -= n;
}

{% if view.runtime == "threads" %}
/* The FIFOs between threads: single-producer single-consumer rings without a lock. The producer
 * alone moves `tail` and the consumer `head`; `count` is the one shared word. A write copies its
 * tokens in, then adds to `count` (release: the consumer that sees the count sees the tokens); a
 * read copies out, then subtracts (release: the producer that sees the room finds the tokens read).
 * Only a side that finds too few tokens (too little room) takes g_lock, publishes what it waits for
 * (`reader_waiting`, `writer_waiting`) and sleeps on the FIFO's condition variable; the other side,
 * after updating `count`, looks at that word and wakes it once it can go on. The sleeper stores its
 * word and then loads `count`, the other side updates `count` and then loads the word, all
 * sequentially consistent: one of the two sees the other's store, so no wake-up is lost. */
static int fifo_count(const aloha_fifo *f)
{
    return __atomic_load_n(&f->count, __ATOMIC_SEQ_CST);
}

/* the FIFO holds n tokens (reader) or has room for n (writer) */
static int fifo_ready(const aloha_fifo *f, int reader, int n)
{
    int c = fifo_count(f);
    return reader ? c >= n : f->capacity - c >= n;
}

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("pause");
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield");
#endif
}

/* spin until the FIFO is ready for n tokens, or g_spin_s passes */
static void spin_until(const aloha_fifo *f, int reader, int n)
{
    double until;
    int i;
    if (g_spin_s <= 0)
        return;
    until = aloha_now() + g_spin_s;
    for (;;) {
        for (i = 0; i < 64; i++) {
            if (fifo_ready(f, reader, n))
                return;
            cpu_relax();
        }
        if (aloha_now() > until)
            return;
    }
}

/* the slow path: sleep until the FIFO is ready for n tokens (the other side wakes us) */
static void fifo_wait(aloha_fifo *f, int reader, int n)
{
    int *waiting = reader ? &f->reader_waiting : &f->writer_waiting;
    double t0 = g_profile ? aloha_now() : 0.0;
    t_waits++;
    spin_until(f, reader, n);
    if (!fifo_ready(f, reader, n)) {
        pthread_mutex_lock(&g_lock);
        g_locks++;
        for (;;) {
            __atomic_store_n(waiting, n, __ATOMIC_SEQ_CST);
            if (fifo_ready(f, reader, n)) {
                __atomic_store_n(waiting, 0, __ATOMIC_SEQ_CST);
                break;
            }
            g_blocked++;
            g_sleeps++;
            check_deadlock(f, reader ? "read" : "write", n);
            pthread_cond_wait(reader ? &f->data : &f->space, &g_lock);
            if (__atomic_load_n(waiting, __ATOMIC_SEQ_CST)) { /* woken spuriously: nobody took */
                __atomic_store_n(waiting, 0, __ATOMIC_SEQ_CST); /* us off the waiting count */
                g_blocked--;
            }
            if (fifo_ready(f, reader, n))
                break;
        }
        pthread_mutex_unlock(&g_lock);
    }
    if (g_profile)
        t_waited += aloha_now() - t0;
}

/* after updating `count`: wake the other side if it sleeps and can now go on */
static void fifo_wake(aloha_fifo *f, int reader)
{
    int *waiting = reader ? &f->reader_waiting : &f->writer_waiting;
    int n;
    if (!__atomic_load_n(waiting, __ATOMIC_SEQ_CST))
        return;
    pthread_mutex_lock(&g_lock);
    g_locks++;
    n = __atomic_load_n(waiting, __ATOMIC_SEQ_CST);
    if (n && fifo_ready(f, reader, n)) {
        __atomic_store_n(waiting, 0, __ATOMIC_SEQ_CST);
        g_blocked--;
        pthread_cond_signal(reader ? &f->data : &f->space);
    }
    pthread_mutex_unlock(&g_lock);
}

void aloha_fifo_write(aloha_fifo *f, const void *src, int n)
{
    if (n <= 0)
        return;
    if (n > f->capacity)
        aloha_fatal("FIFO %s holds %d tokens but one firing writes %d", f->name, f->capacity, n);
    t_ops++;
    if (!fifo_ready(f, 0, n))
        fifo_wait(f, 0, n);
    copy_in(f, f->tail, (const unsigned char *)src, n);
    f->tail = (f->tail + n) % f->capacity;
    __atomic_add_fetch(&f->count, n, __ATOMIC_SEQ_CST);
    fifo_wake(f, 1);
}

void aloha_fifo_read(aloha_fifo *f, void *dst, int n)
{
    if (n <= 0)
        return;
    if (n > f->capacity)
        aloha_fatal("FIFO %s holds %d tokens but one firing reads %d", f->name, f->capacity, n);
    t_ops++;
    if (!fifo_ready(f, 1, n))
        fifo_wait(f, 1, n);
    copy_out(f, f->head, (unsigned char *)dst, n);
    f->head = (f->head + n) % f->capacity;
    __atomic_sub_fetch(&f->count, n, __ATOMIC_SEQ_CST);
    fifo_wake(f, 0);
}

{% else %}
void aloha_fifo_write(aloha_fifo *f, const void *src, int n)
{
    local_write(f, src, n);
}

void aloha_fifo_read(aloha_fifo *f, void *dst, int n)
{
    local_read(f, dst, n);
}
{% endif %}
const void *aloha_rows(const aloha_port *p)
{
    return p->win;
}

/* the byte offset of row r of a port's window */
static size_t row_at(const aloha_port *p, int r)
{
    return (size_t)r * (size_t)p->row_tokens * (size_t)p->in->elem;
}

static void fill(aloha_port *p, int phase)
{
    int keep = p->reuse_in[phase], fresh = p->new_rows[phase];
    if (phase == 0)
        p->read = 0;
    if (p->whole) {
        if (phase == 0)
            p->rows = 0;
        p->base = 0;
        aloha_fifo_read(p->in, p->win + row_at(p, p->rows), fresh * p->row_tokens);
        p->rows += fresh;
    } else {
        p->base = p->read - keep;
        if (keep)
            local_read(p->reuse, p->win, keep * p->row_tokens);
        aloha_fifo_read(p->in, p->win + row_at(p, keep), fresh * p->row_tokens);
        p->rows = keep + fresh;
    }
    p->read += fresh;
}

static void keep_rows(aloha_port *p, int phase)
{
    int n = p->reuse_out[phase];
    if (n)
        local_write(p->reuse, p->win + row_at(p, p->rows - n), n * p->row_tokens);
}

void aloha_fire(aloha_actor *a)
{
    int phase = a->phase, i;
    double t0 = 0.0, t1 = 0.0, start = 0.0, waited = t_waited;
    if (g_profile)
        start = aloha_now();
    for (i = 0; i < a->nin; i++)
        fill(&a->in[i], phase);
    if (g_profile)
        t0 = aloha_now();
    a->compute(a, phase);
    if (g_profile) {
        t1 = aloha_now();
        a->compute_s += t1 - t0;
        a->firings++;
    }
    for (i = 0; i < a->nin; i++)
        keep_rows(&a->in[i], phase);
    for (i = 0; i < a->nout; i++)
        aloha_fifo_write(a->out[i], a->obuf, a->prod[phase]);
    if (g_profile) /* the firing's own cost besides computing: windows, FIFO copies, locks */
        a->overhead_s += aloha_now() - start - (t1 - t0) - (t_waited - waited);
    if (a->dump && a->prod[phase] > 0) {
        int k;
        for (k = 0; k < a->prod[phase] * a->out_per_token; k++) {
            float v;
            if (a->fixed)
                v = (float)((double)aloha_load(a->obuf, a->out_type, (size_t)k)
                            * (double)a->out_scale);
            else
                memcpy(&v, a->obuf + (size_t)k * sizeof v, sizeof v);
            fwrite(&v, sizeof v, 1, a->dump);
        }
    }
    a->phase = (phase + 1) % a->phases;
}

{# one thread's frames: its order, frame after frame, between the busy hook's calls #}
{% macro frame_loop() %}
    for (frame = 0; frame < g_frames; frame++) {
        if (t->busy)
            t->busy(t, frame, 1);
        for (r = 0; r < t->runs; r++)
            for (k = 0; k < t->order[2 * r + 1]; k++)
                aloha_fire(&g_actors[t->order[2 * r]]);
        if (t->busy)
            t->busy(t, frame, 0);
    }
{% endmacro %}
{% if view.runtime == "threads" %}
static void *thread_main(void *arg)
{
    aloha_thread *t = (aloha_thread *)arg;
    long frame;
    int r, k;
{{ frame_loop() }}    pthread_mutex_lock(&g_lock);
    g_ops += t_ops;
    g_waits += t_waits;
    g_live--;
    if (g_live > 0 && g_blocked == g_live)
        aloha_fatal("deadlock: thread %s finished and every other thread waits on a FIFO",
                    t->name);
    pthread_mutex_unlock(&g_lock);
    return NULL;
}

int aloha_run(aloha_actor *actors, aloha_thread *threads, int nthreads, long frames)
{
    int i;
    const char *spin = getenv("ALOHA_SPIN_US");
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    const char *profile = getenv("ALOHA_PROFILE");
    g_profile = profile && *profile && *profile != '0';
    g_spin_s = 1e-6 * (spin && *spin ? atof(spin) : ALOHA_SPIN_US);
    if (cores > 0 && nthreads > cores)
        g_spin_s = 0;
    g_actors = actors;
    g_frames = frames;
    g_live = nthreads;
    g_blocked = 0;
    g_ops = g_waits = g_sleeps = g_locks = 0;
    g_done = g_begun = 0;
    g_samples = 0;
    g_one_at_a_time = getenv("ALOHA_TIMING") && strcmp(getenv("ALOHA_TIMING"), "latency") == 0;
    g_start = aloha_now();
    for (i = 0; i < nthreads; i++)
        if (pthread_create(&threads[i].tid, NULL, thread_main, &threads[i]) != 0)
            aloha_fatal("cannot start thread %s", threads[i].name);
    for (i = 0; i < nthreads; i++)
        pthread_join(threads[i].tid, NULL);
    return 0;
}
{% else %}
int aloha_run(aloha_actor *actors, aloha_thread *threads, int nthreads, long frames)
{
    const aloha_thread *t = &threads[0];
    const char *profile = getenv("ALOHA_PROFILE");
    long frame;
    int r, k;
    if (nthreads != 1)
        aloha_fatal("the static-order runtime runs one thread, not %d", nthreads);
    g_profile = profile && *profile && *profile != '0';
    g_actors = actors;
    g_frames = frames;
    g_done = g_begun = 0;
    g_samples = 0;
    g_one_at_a_time = getenv("ALOHA_TIMING") && strcmp(getenv("ALOHA_TIMING"), "latency") == 0;
    g_start = aloha_now();
{{ frame_loop() }}    return 0;
}
{% endif %}

void aloha_rows_to_nchw(const void *rows, int c, int h, int w, int elem, void *nchw)
{
    const size_t n = (size_t)w * (size_t)elem;
    int y, ch;
    for (y = 0; y < h; y++)
        for (ch = 0; ch < c; ch++)
            memcpy((unsigned char *)nchw + ((size_t)ch * h + y) * n,
                   (const unsigned char *)rows + ((size_t)y * c + ch) * n, n);
}

void aloha_nchw_to_rows(const void *nchw, int c, int h, int w, int elem, void *rows)
{
    const size_t n = (size_t)w * (size_t)elem;
    int y, ch;
    for (y = 0; y < h; y++)
        for (ch = 0; ch < c; ch++)
            memcpy((unsigned char *)rows + ((size_t)y * c + ch) * n,
                   (const unsigned char *)nchw + ((size_t)ch * h + y) * n, n);
}

void aloha_report_memory(const aloha_memory *m)
{
    const char *on = getenv("ALOHA_MEMORY");
    size_t scratch = m->window_bytes + m->row_bytes + m->staging_bytes + m->io_bytes;
    if (!on || !*on || *on == '0')
        return;
    fprintf(stderr, "memory: parameter_bytes %zu buffer_bytes %zu scratch_bytes %zu "
            "memory_bytes %zu (windows %zu rows %zu staging %zu io %zu)\n",
            m->parameter_bytes, m->buffer_bytes, scratch,
            m->parameter_bytes + m->buffer_bytes + scratch, m->window_bytes, m->row_bytes,
            m->staging_bytes, m->io_bytes);
}
