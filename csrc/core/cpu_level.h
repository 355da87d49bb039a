/* core/cpu_level.h: the CPU backend's ISA levels and the choice among them at run time.
 *
 * setup.py compiles csrc/cpu/ once per ISA level (x86-64, x86-64-v2, x86-64-v3 = AVX2+FMA, x86-64-v4 =
 * AVX-512; one level, "native" or the compiler's default, elsewhere or with LYRICNN_NATIVE=1). Each copy
 * defines one entry point, LNN_CPU_ENTRY (named per level by the build), that hands out that level's
 * op tables; every other symbol of the copy is made local, so the copies never clash and a new file or
 * op in csrc/cpu/ needs nothing of its own. The build lists the levels in LNN_CPU_LEVELS, an X-macro of
 * X(entry symbol, "name", rank); core/cpu_level.c picks the highest one the CPU runs (CPUID and the OS's
 * saved register state), capped by the environment variable LYRICNN_CPU_LEVEL. */
#ifndef LNN_CORE_CPU_LEVEL_H
#define LNN_CORE_CPU_LEVEL_H

#include "core/backend.h"

/* The entry point of one level's copy of csrc/cpu/ (cpu/backend.c): its "cpu" and "cpu-copy" tables. */
typedef void (*lnn_cpu_entry_fn)(const lnn_backend **cpu, const lnn_backend **cpu_copy);

/* x86-64 microarchitecture levels (the psABI's), as ranks; 0 is a build for one machine or another
 * architecture, where no choice is made. */
enum { LNN_LEVEL_NONE = 0, LNN_LEVEL_X86_64 = 1, LNN_LEVEL_V2 = 2, LNN_LEVEL_V3 = 3, LNN_LEVEL_V4 = 4 };

/* Choose the level (once; later calls return the first outcome): the highest level built that the CPU
 * runs and that is at most the cap LYRICNN_CPU_LEVEL (unset or "auto": no cap). LNN_ERR_VALUE with the
 * message set when the variable names no level. Called at import; lnn_backend_cpu() calls it too. */
lnn_status lnn_cpu_level_init(void);
/* The chosen level's name ("x86-64-v3", ...), the highest level this CPU runs, the levels built
 * (comma-separated) and the cap (NULL when none). */
const char *lnn_cpu_level_name(void);
const char *lnn_cpu_level_supported(void);
const char *lnn_cpu_levels_built(void);
const char *lnn_cpu_level_cap(void);

#endif /* LNN_CORE_CPU_LEVEL_H */
