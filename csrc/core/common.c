/* core/common.c: thread-local errors, aligned allocation, the engine's thread count. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"

int lnn_num_threads = 1;

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
