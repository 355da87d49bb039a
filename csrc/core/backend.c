/* core/backend.c: what every backend shares: op names, the backend registry of this build, and
 * context, scratch and buffer helpers written over the table (core/backend.h). */
#define _GNU_SOURCE /* dladdr */
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/backend.h"

const char *const lnn_op_names[LNN_NOPS] = {
#define LNN_OP_NAME_(name) #name,
    LNN_OP_LIST(LNN_OP_NAME_)
#undef LNN_OP_NAME_
};

/* The CUDA backend: LNN_CUDA_LIBRARY beside this library, loaded once, on first use, by whichever thread
 * gets there first (pthread_once: Python threads may create models at the same time, the GIL released). */
static const lnn_backend *cuda_backend;
static pthread_once_t cuda_once = PTHREAD_ONCE_INIT;
static char cuda_why[1200] = "the CUDA backend was not looked for";

static void load_cuda_once(void) {
    Dl_info self;
    if (!dladdr((void *)&lnn_backend_find, &self) || !self.dli_fname) {
        snprintf(cuda_why, sizeof cuda_why, "cannot locate the lyricnn engine library to find %s", LNN_CUDA_LIBRARY);
        return;
    }
    char path[1024];
    const char *slash = strrchr(self.dli_fname, '/');
    int dir = slash ? (int)(slash - self.dli_fname) : 0;
    snprintf(path, sizeof path, "%.*s%s%s", dir, self.dli_fname, slash ? "/" : "", LNN_CUDA_LIBRARY);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(cuda_why, sizeof cuda_why, "this build of lyricnn has no CUDA backend (%.500s)", e ? e : path);
        return;
    }
    lnn_cuda_entry_fn entry;
    *(void **)&entry = dlsym(h, LNN_CUDA_ENTRY);
    if (!entry) {
        snprintf(cuda_why, sizeof cuda_why, "%.500s has no entry point %s", path, LNN_CUDA_ENTRY);
        return;
    }
    char err[512] = "";
    cuda_backend = entry(err, sizeof err);
    if (!cuda_backend) snprintf(cuda_why, sizeof cuda_why, "the CUDA backend cannot run here: %s", err);
}

static const lnn_backend *load_cuda(void) {
    pthread_once(&cuda_once, load_cuda_once);
    return cuda_backend;
}

const char *const *lnn_backend_names(void) {
    static const char *names[4];
    int n = 0;
    names[n++] = "cpu";
    names[n++] = "cpu-copy";
    if (load_cuda()) names[n++] = "cuda";
    names[n] = NULL;
    return names;
}

const lnn_backend *lnn_backend_find(const char *name) {
    if (!name) return NULL;
    if (strcmp(name, "cpu") == 0) return lnn_backend_cpu();
    if (strcmp(name, "cpu-copy") == 0) return lnn_backend_cpu_copy();
    if (strcmp(name, "cuda") == 0) return load_cuda();
    return NULL;
}

const char *lnn_backend_missing(const char *name) {
    if (name && strcmp(name, "cuda") == 0) return load_cuda() ? "" : cuda_why;
    return "no backend of that name (the backends are cpu, cpu-copy and, in a CUDA build, cuda)";
}

lnn_status lnn_ctx_init(lnn_ctx *ctx, const lnn_backend *be, int device, lnn_dtype act) {
    memset(ctx, 0, sizeof *ctx);
    if (!(be->caps.act_dtypes & (1u << act))) {
        lnn_set_error("the %s backend does not support %s activations", be->name, lnn_dtype_name(act));
        return LNN_ERR_VALUE;
    }
    ctx->be = be;
    ctx->act = act;
    ctx->device = device;
    lnn_status st = be->ctx_init(ctx, device);
    if (st && ctx->errmsg[0]) lnn_set_error("%s", ctx->errmsg); /* a backend library cannot set our error */
    if (st) ctx->be = NULL;
    return st;
}

lnn_status lnn_sync(lnn_ctx *ctx) {
    lnn_status st = ctx->be->synchronize(ctx);
    if (st) {
        lnn_set_error("%s", ctx->errmsg[0] ? ctx->errmsg : "a backend op failed");
        ctx->errmsg[0] = 0;
    }
    return st;
}

void lnn_ctx_release(lnn_ctx *ctx) {
    if (!ctx->be) return;
    ctx->be->free(ctx, ctx->scratch);
    ctx->scratch = NULL;
    ctx->scratch_bytes = 0;
    ctx->be->ctx_release(ctx);
    ctx->be = NULL;
}

void lnn_ctx_fail(lnn_ctx *ctx, lnn_status st, const char *fmt, ...) {
    if (ctx->err) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->errmsg, sizeof ctx->errmsg, fmt, ap);
    va_end(ap);
    ctx->err = st;
}

void *lnn_scratch(lnn_ctx *ctx, size_t nbytes) {
    if (nbytes <= ctx->scratch_bytes) return ctx->scratch;
    ctx->be->free(ctx, ctx->scratch);
    ctx->scratch_bytes = 0;
    ctx->scratch = ctx->be->malloc(ctx, nbytes);
    if (!ctx->scratch) {
        lnn_ctx_fail(ctx, LNN_ERR_MEMORY, "out of memory: %zu bytes of scratch for the %s backend", nbytes,
                     ctx->be->name);
        return NULL;
    }
    ctx->scratch_bytes = nbytes;
    return ctx->scratch;
}

lnn_status lnn_reserve(lnn_ctx *ctx, void **buf, size_t *cap, size_t need, const char *what) {
    if (need <= *cap && *buf) return LNN_OK;
    ctx->be->free(ctx, *buf);
    *cap = 0;
    *buf = ctx->be->malloc(ctx, need ? need : 1);
    if (!*buf) {
        lnn_set_error("out of memory: %s need %.1f MiB on the %s backend", what, need / 1048576.0, ctx->be->name);
        return LNN_ERR_MEMORY;
    }
    *cap = need;
    return LNN_OK;
}
