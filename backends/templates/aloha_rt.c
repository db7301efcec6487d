/* ALOHA runtime: see aloha_rt.h. One mutex guards every FIFO's indices and the count of waiting
 * threads; data is copied outside the lock (each FIFO has one producer and one consumer, and a
 * region is only touched by its owner until the indices are committed). */
#define _POSIX_C_SOURCE 200809L
#include "aloha_rt.h"

#include <stdarg.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_live;      /* pipeline threads not finished */
static int g_blocked;   /* of those, waiting on a FIFO */
static aloha_actor *g_actors;
static long g_frames;
static double g_start, g_first_done, g_last_done;
static long g_done;

double aloha_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* called by the output actor when a frame is written (one thread: no lock needed) */
void aloha_frame_done(void)
{
    double t = aloha_now();
    if (g_done++ == 0)
        g_first_done = t;
    g_last_done = t;
}

/* ALOHA_TIMING=1: the first frame's latency on an empty pipeline, and the period of the rest */
void aloha_report_timing(void)
{
    const char *on = getenv("ALOHA_TIMING");
    if (!on || !*on || *on == '0')
        return;
    fprintf(stderr, "timing: frames %ld latency_s %.9g period_s %.9g total_s %.9g\n", g_done,
            g_first_done - g_start, g_done > 1 ? (g_last_done - g_first_done) / (double)(g_done - 1)
            : g_first_done - g_start, g_last_done - g_start);
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

void aloha_fifo_init(aloha_fifo *f, const char *name, aloha_word *buf, int capacity)
{
    f->name = name;
    f->buf = buf;
    f->capacity = capacity;
    f->head = f->tail = f->count = 0;
    f->reader_waiting = f->writer_waiting = 0;
    pthread_cond_init(&f->data, NULL);
    pthread_cond_init(&f->space, NULL);
}

/* called with g_lock held, before waiting: every live thread waiting means nobody can wake one */
static void check_deadlock(const aloha_fifo *f, const char *what, int n)
{
    if (g_blocked == g_live)
        aloha_fatal("deadlock: every thread waits; the last waits to %s %d tokens on FIFO %s "
                    "(capacity %d, holding %d): a FIFO is smaller than the schedule needs",
                    what, n, f->name, f->capacity, f->count);
}

static void copy_in(aloha_fifo *f, int at, const aloha_word *src, int n)
{
    int first = f->capacity - at < n ? f->capacity - at : n;
    memcpy(f->buf + at, src, (size_t)first * sizeof(aloha_word));
    memcpy(f->buf, src + first, (size_t)(n - first) * sizeof(aloha_word));
}

static void copy_out(const aloha_fifo *f, int at, aloha_word *dst, int n)
{
    int first = f->capacity - at < n ? f->capacity - at : n;
    memcpy(dst, f->buf + at, (size_t)first * sizeof(aloha_word));
    memcpy(dst + first, f->buf, (size_t)(n - first) * sizeof(aloha_word));
}

void aloha_fifo_write(aloha_fifo *f, const aloha_word *src, int n)
{
    int at;
    if (n <= 0)
        return;
    if (n > f->capacity)
        aloha_fatal("FIFO %s holds %d tokens but one firing writes %d", f->name, f->capacity, n);
    pthread_mutex_lock(&g_lock);
    while (f->capacity - f->count < n) {
        f->writer_waiting = 1;
        g_blocked++;
        check_deadlock(f, "write", n);
        pthread_cond_wait(&f->space, &g_lock);
        if (f->writer_waiting) { /* woken spuriously: nobody took us off the waiting count */
            f->writer_waiting = 0;
            g_blocked--;
        }
    }
    at = f->tail;
    pthread_mutex_unlock(&g_lock);
    copy_in(f, at, src, n);
    pthread_mutex_lock(&g_lock);
    f->tail = (f->tail + n) % f->capacity;
    f->count += n;
    if (f->reader_waiting) {
        f->reader_waiting = 0;
        g_blocked--;
        pthread_cond_signal(&f->data);
    }
    pthread_mutex_unlock(&g_lock);
}

void aloha_fifo_read(aloha_fifo *f, aloha_word *dst, int n)
{
    int at;
    if (n <= 0)
        return;
    if (n > f->capacity)
        aloha_fatal("FIFO %s holds %d tokens but one firing reads %d", f->name, f->capacity, n);
    pthread_mutex_lock(&g_lock);
    while (f->count < n) {
        f->reader_waiting = 1;
        g_blocked++;
        check_deadlock(f, "read", n);
        pthread_cond_wait(&f->data, &g_lock);
        if (f->reader_waiting) {
            f->reader_waiting = 0;
            g_blocked--;
        }
    }
    at = f->head;
    pthread_mutex_unlock(&g_lock);
    copy_out(f, at, dst, n);
    pthread_mutex_lock(&g_lock);
    f->head = (f->head + n) % f->capacity;
    f->count -= n;
    if (f->writer_waiting) {
        f->writer_waiting = 0;
        g_blocked--;
        pthread_cond_signal(&f->space);
    }
    pthread_mutex_unlock(&g_lock);
}

const void *aloha_rows(const aloha_port *p)
{
    return p->win;
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
        aloha_fifo_read(p->in, p->win + (size_t)p->rows * p->row_tokens, fresh * p->row_tokens);
        p->rows += fresh;
    } else {
        p->base = p->read - keep;
        if (keep)
            aloha_fifo_read(p->reuse, p->win, keep * p->row_tokens);
        aloha_fifo_read(p->in, p->win + (size_t)keep * p->row_tokens, fresh * p->row_tokens);
        p->rows = keep + fresh;
    }
    p->read += fresh;
}

static void keep_rows(aloha_port *p, int phase)
{
    int n = p->reuse_out[phase];
    if (n)
        aloha_fifo_write(p->reuse, p->win + (size_t)(p->rows - n) * p->row_tokens,
                         n * p->row_tokens);
}

void aloha_fire(aloha_actor *a)
{
    int phase = a->phase, i;
    for (i = 0; i < a->nin; i++)
        fill(&a->in[i], phase);
    a->compute(a, phase);
    for (i = 0; i < a->nin; i++)
        keep_rows(&a->in[i], phase);
    for (i = 0; i < a->nout; i++)
        aloha_fifo_write(a->out[i], a->obuf, a->prod[phase]);
    if (a->dump && a->prod[phase] > 0) {
        int k;
        for (k = 0; k < a->prod[phase]; k++) {
            float v;
            if (a->fixed) {
                v = (float)((double)(int32_t)a->obuf[k] * (double)a->out_scale);
            } else {
                memcpy(&v, &a->obuf[k], sizeof v);
            }
            fwrite(&v, sizeof v, 1, a->dump);
        }
    }
    a->phase = (phase + 1) % a->phases;
}

static void *thread_main(void *arg)
{
    aloha_thread *t = (aloha_thread *)arg;
    long frame;
    int r, k;
    for (frame = 0; frame < g_frames; frame++) {
        if (t->busy)
            t->busy(t, frame, 1);
        for (r = 0; r < t->runs; r++)
            for (k = 0; k < t->order[2 * r + 1]; k++)
                aloha_fire(&g_actors[t->order[2 * r]]);
        if (t->busy)
            t->busy(t, frame, 0);
    }
    pthread_mutex_lock(&g_lock);
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
    g_actors = actors;
    g_frames = frames;
    g_live = nthreads;
    g_blocked = 0;
    g_done = 0;
    g_start = aloha_now();
    for (i = 0; i < nthreads; i++)
        if (pthread_create(&threads[i].tid, NULL, thread_main, &threads[i]) != 0)
            aloha_fatal("cannot start thread %s", threads[i].name);
    for (i = 0; i < nthreads; i++)
        pthread_join(threads[i].tid, NULL);
    return 0;
}

void aloha_rows_to_nchw(const aloha_word *rows, int c, int h, int w, aloha_word *nchw)
{
    int y, ch;
    for (y = 0; y < h; y++)
        for (ch = 0; ch < c; ch++)
            memcpy(nchw + ((size_t)ch * h + y) * w, rows + ((size_t)y * c + ch) * w,
                   (size_t)w * sizeof(aloha_word));
}

void aloha_nchw_to_rows(const aloha_word *nchw, int c, int h, int w, aloha_word *rows)
{
    int y, ch;
    for (y = 0; y < h; y++)
        for (ch = 0; ch < c; ch++)
            memcpy(rows + ((size_t)y * c + ch) * w, nchw + ((size_t)ch * h + y) * w,
                   (size_t)w * sizeof(aloha_word));
}
