/* core/cpu_level.c: which copy of the CPU backend runs (core/cpu_level.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu_level.h"
#include "cpu/blas.h"

#ifndef LNN_CPU_LEVELS /* a build without setup.py's level list: one copy, entry lnn_cpu_entry */
#define LNN_CPU_LEVELS X(lnn_cpu_entry, "generic", LNN_LEVEL_NONE)
#endif

#define X(sym, name, rank) void sym(const lnn_backend **cpu, const lnn_backend **cpu_copy);
LNN_CPU_LEVELS
#undef X

static const struct {
    const char *name;
    int rank;
    lnn_cpu_entry_fn entry;
} levels[] = {
#define X(sym, name, rank) {name, rank, sym},
    LNN_CPU_LEVELS
#undef X
};
enum { NLEVELS = sizeof levels / sizeof levels[0] };

static const char *const rank_names[] = {"none", "x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"};

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static unsigned long long xgetbv0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

/* The highest x86-64 psABI level this CPU and OS run: v2 = SSE3, SSSE3, SSE4.1, SSE4.2, POPCNT, CX16,
 * LAHF; v3 = + AVX, AVX2, FMA, F16C, BMI1, BMI2, LZCNT, MOVBE with the AVX state saved by the OS;
 * v4 = + AVX-512 F, BW, CD, DQ, VL with the opmask and ZMM state saved. */
static int cpu_rank(void) {
    unsigned a, b, c1, d, c7, b7 = 0, cx = 0;
    if (!__get_cpuid(1, &a, &b, &c1, &d)) return LNN_LEVEL_X86_64;
    if (__get_cpuid_max(0, NULL) >= 7) __cpuid_count(7, 0, a, b7, c7, d);
    if (__get_cpuid_max(0x80000000u, NULL) >= 0x80000001u) __cpuid(0x80000001u, a, b, cx, d);
#define HAS(reg, bit) (((reg) >> (bit)) & 1u)
    if (!(HAS(c1, 0) && HAS(c1, 9) && HAS(c1, 13) && HAS(c1, 19) && HAS(c1, 20) && HAS(c1, 23) && HAS(cx, 0)))
        return LNN_LEVEL_X86_64;
    unsigned long long xcr0 = HAS(c1, 27) ? xgetbv0() : 0; /* OSXSAVE: xgetbv is usable */
    if (!(HAS(c1, 12) && HAS(c1, 22) && HAS(c1, 28) && HAS(c1, 29) && HAS(b7, 3) && HAS(b7, 5) && HAS(b7, 8) &&
          HAS(cx, 5) && (xcr0 & 0x6) == 0x6))
        return LNN_LEVEL_V2;
    if (!(HAS(b7, 16) && HAS(b7, 17) && HAS(b7, 28) && HAS(b7, 30) && HAS(b7, 31) && (xcr0 & 0xe6) == 0xe6))
        return LNN_LEVEL_V3;
    return LNN_LEVEL_V4;
#undef HAS
}
#else
static int cpu_rank(void) { return LNN_LEVEL_NONE; }
#endif

static int chosen = -1, supported_rank = -1;
static lnn_status init_status = LNN_OK;
static char init_error[400];
static const char *cap_value;
static const lnn_backend *tables[2];

/* LYRICNN_CPU_LEVEL's value as a rank: a level name or alias, case-insensitive; -1 when unknown */
static int parse_cap(const char *s) {
    char v[32];
    size_t n = 0;
    for (; s[n] && n + 1 < sizeof v; n++) v[n] = (char)tolower((unsigned char)s[n]);
    v[n] = 0;
    if (!strcmp(v, "x86-64") || !strcmp(v, "x86-64-v1") || !strcmp(v, "v1") || !strcmp(v, "baseline"))
        return LNN_LEVEL_X86_64;
    if (!strcmp(v, "x86-64-v2") || !strcmp(v, "v2") || !strcmp(v, "sse4.2")) return LNN_LEVEL_V2;
    if (!strcmp(v, "x86-64-v3") || !strcmp(v, "v3") || !strcmp(v, "avx2")) return LNN_LEVEL_V3;
    if (!strcmp(v, "x86-64-v4") || !strcmp(v, "v4") || !strcmp(v, "avx512")) return LNN_LEVEL_V4;
    return -1;
}

lnn_status lnn_cpu_level_init(void) {
    if (chosen >= 0 || init_status) return init_status;
    supported_rank = cpu_rank();
    const char *env = getenv("LYRICNN_CPU_LEVEL");
    int cap = 1 << 30;
    if (env && *env && strcmp(env, "auto") != 0) {
        cap = parse_cap(env);
        cap_value = env;
        if (cap < 0) {
            snprintf(init_error, sizeof init_error,
                     "LYRICNN_CPU_LEVEL=%.40s is not a CPU level; use one of x86-64, x86-64-v2, x86-64-v3 (avx2), "
                     "x86-64-v4 (avx512) or auto, or unset it (this build has: %s)", env, lnn_cpu_levels_built());
            lnn_set_error("%s", init_error);
            return init_status = LNN_ERR_VALUE;
        }
    }
    int best = -1;
    for (int i = 0; i < NLEVELS; i++) {
        int r = levels[i].rank;
        int runs = r == LNN_LEVEL_NONE || r <= supported_rank;
        int allowed = r == LNN_LEVEL_NONE || r <= cap;
        if (runs && allowed && (best < 0 || r > levels[best].rank)) best = i;
    }
    if (best < 0) { /* a build restricted to levels above this CPU's (LYRICNN_CPU_LEVELS), or capped below all */
        snprintf(init_error, sizeof init_error,
                 "this build of lyricnn has CPU code for %s only, and this CPU runs %s%s%s: rebuild it here "
                 "(pip install --no-binary lyricnn lyricnn) or raise LYRICNN_CPU_LEVEL",
                 lnn_cpu_levels_built(), rank_names[supported_rank > 0 ? supported_rank : 0],
                 cap_value ? " with LYRICNN_CPU_LEVEL=" : "", cap_value ? cap_value : "");
        lnn_set_error("%s", init_error);
        return init_status = LNN_ERR_VALUE;
    }
    chosen = best;
    levels[best].entry(&tables[0], &tables[1]);
    /* an explicit cap holds for the GEMM library too (unless its own variable says otherwise) */
    if (cap_value && levels[best].rank != LNN_LEVEL_NONE) lnn_blas_cap_isa(levels[best].rank);
    return LNN_OK;
}

const lnn_backend *lnn_backend_cpu(void) { return lnn_cpu_level_init() ? NULL : tables[0]; }
const lnn_backend *lnn_backend_cpu_copy(void) { return lnn_cpu_level_init() ? NULL : tables[1]; }

const char *lnn_cpu_level_name(void) { return chosen >= 0 ? levels[chosen].name : "none"; }

const char *lnn_cpu_level_supported(void) {
    if (supported_rank < 0) supported_rank = cpu_rank();
    return supported_rank > 0 ? rank_names[supported_rank] : "n/a";
}

const char *lnn_cpu_levels_built(void) {
    static char buf[160];
    if (!buf[0])
        for (int i = 0; i < NLEVELS; i++)
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", i ? "," : "", levels[i].name);
    return buf;
}

const char *lnn_cpu_level_cap(void) { return cap_value; }
