/* core/common.c: thread-local errors, aligned allocation, the engine's thread count. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/common.h"

int lnn_num_threads = 1;

double lnn_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The state of the short regions (core/common.h), shared by every thread that calls in: each field is read
 * and written whole with relaxed atomics (a lost update only delays a decision). Times in ns. */
static int64_t short_serial_until, short_backoff = 10000000, short_ratio_milli = 500, short_good;
static int short_mode = -1; /* 1 adaptive, 0 off (LYRICNN_ADAPTIVE_THREADS=0) */

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

int lnn_short_threads(void) {
    int nt = lnn_num_threads;
    if (nt <= 1) return 1;
    if (short_mode < 0) {
        const char *e = getenv("LYRICNN_ADAPTIVE_THREADS");
        STORE(short_mode, e && e[0] == '0' ? 0 : 1);
    }
    if (short_mode == 0) return nt;
    return (int64_t)(lnn_now() * 1e9) < LOAD(short_serial_until) ? 1 : nt;
}

void lnn_short_report(int nthreads, double wall, double work) {
    if (nthreads <= 1 || work <= 0 || short_mode != 1) return;
    /* wall / work: 1/nthreads when the team shared the work evenly, >= 1 when it gained nothing (a thread of
     * the team waited for a core); a moving average over ~8 regions */
    int64_t r = LOAD(short_ratio_milli), now = (int64_t)(lnn_now() * 1e9);
    double ratio = wall / work;
    r += ((int64_t)(1000 * (ratio > 100 ? 100 : ratio)) - r) / 8;
    if (r > 900) { /* no gain: run short regions on the calling thread for a while, then try again */
        int64_t b = LOAD(short_backoff);
        STORE(short_serial_until, now + b);
        STORE(short_backoff, b < 1000000000 ? 2 * b : b);
        STORE(short_good, 0);
        r = 500;
    } else if (r < 750) {
        int64_t g = LOAD(short_good) + 1;
        STORE(short_good, g);
        if (g > 256) STORE(short_backoff, 10000000); /* the cores are ours again: the next back-off starts short */
    }
    STORE(short_ratio_milli, r);
}

static _Thread_local char lnn_errbuf[1024];

void lnn_set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(lnn_errbuf, sizeof lnn_errbuf, fmt, ap);
    va_end(ap);
}

const char *lnn_get_error(void) { return lnn_errbuf[0] ? lnn_errbuf : "unknown error in the lyricnn engine"; }

void *lnn_malloc(size_t nbytes) {
    void *p = NULL;
    if (nbytes == 0) nbytes = 64;
    size_t rounded = (nbytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, rounded) != 0) return NULL;
    return p;
}

void *lnn_calloc(size_t nbytes) {
    void *p = lnn_malloc(nbytes);
    if (p) memset(p, 0, nbytes);
    return p;
}

void lnn_free(void *p) { free(p); }
