/* core/common.h: conventions of the C core (no Python here).
 *
 * - Every layer is a name_forward / name_backward pair with a one-line shape comment; the
 *   gradient rule (what accumulates, what is written) is stated once, in core/backend.h.
 * - Functions that can fail return an lnn_status (0 = ok) and write a message with
 *   lnn_set_error(); they never exit() or abort(). Backend ops cannot fail on valid arguments:
 *   their arguments are checked at the boundary (Python, the model API), and a failure inside
 *   an op (no memory, a device error) is recorded in the backend context, see core/backend.h.
 * - Parallel loops use LNN_OMP_FOR so that lyricnn.set_num_threads() applies from
 *   whichever Python thread calls in (ICVs are per thread, a global is not).
 */
#ifndef LNN_CORE_COMMON_H
#define LNN_CORE_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#define LNN_STR_(x) #x
#define LNN_STR(x) LNN_STR_(x)
#define LNN_PRAGMA(x) _Pragma(#x)

/* Threads the engine uses for its own loops and for BLAS (set by set_num_threads). */
extern int lnn_num_threads;

/* SHORT PARALLEL REGIONS on a shared CPU. An OpenMP region ends when every thread of its team has
 * arrived, so when another process holds a core, a region waits for the thread that shares that core
 * to be scheduled again: up to a scheduler time slice (milliseconds). An LSTM step runs thousands of
 * regions of tens of microseconds (its per-step GEMMs and cells), so beside one busy process its 2-thread
 * step ran slower than 1 thread. Short regions therefore time themselves: lnn_short_threads() gives the
 * team for the next one (lnn_num_threads, or 1 for a while after short regions took as long on several
 * threads as their work would on one: the back-off starts at 10 ms and doubles, to 1 s, while the cores
 * stay busy), lnn_short_report() takes the region's wall time and the seconds its threads worked. Results
 * do not depend on the team (every split is by shape), so this changes speed only. Long regions (large
 * GEMMs, whose tiles the dynamic schedule hands to whichever thread is free) keep every thread.
 * LYRICNN_ADAPTIVE_THREADS=0 turns it off (short regions always use every thread). */
int lnn_short_threads(void);
void lnn_short_report(int nthreads, double wall, double work);
/* seconds on a monotonic clock */
double lnn_now(void);

#ifdef _OPENMP
#define LNN_OMP_FOR LNN_PRAGMA(omp parallel for num_threads(lnn_num_threads) schedule(static))
#define LNN_OMP_FOR_DYNAMIC LNN_PRAGMA(omp parallel for num_threads(lnn_num_threads) schedule(dynamic, 1))
#define LNN_OMP_FOR_COLLAPSE2 LNN_PRAGMA(omp parallel for collapse(2) num_threads(lnn_num_threads) schedule(static))
/* parallel only when cond holds (small loops run in the calling thread: no fork/join) */
#define LNN_OMP_FOR_IF(cond) LNN_PRAGMA(omp parallel for num_threads(lnn_num_threads) schedule(static) if(cond))
#else
#define LNN_OMP_FOR
#define LNN_OMP_FOR_DYNAMIC
#define LNN_OMP_FOR_COLLAPSE2
#define LNN_OMP_FOR_IF(cond)
#endif

typedef int lnn_status;
enum {
    LNN_OK = 0,
    LNN_ERR_VALUE = 1,   /* bad argument or data: maps to ValueError */
    LNN_ERR_MEMORY = 2,  /* allocation failed: MemoryError */
    LNN_ERR_IO = 3,      /* file could not be read or written: OSError */
    LNN_ERR_RUNTIME = 4, /* anything else: lyricnn.LyricnnError */
    LNN_ERR_INDEX = 5,   /* index out of range: IndexError */
};

/* Thread-local error message for the last failing call on this thread. */
void lnn_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *lnn_get_error(void);

/* Internal invariants the boundary already guarantees: a failed check sets the error and returns
 * LNN_ERR_RUNTIME from the enclosing function (cheap, never aborts). */
#define LNN_ASSERT(cond)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            lnn_set_error("internal error: %s (%s:%d); please report it", #cond, __FILE__, __LINE__); \
            return LNN_ERR_RUNTIME;                                                        \
        }                                                                                  \
    } while (0)

/* A check of a user-facing value: when cond fails, set the message and return LNN_ERR_VALUE. */
#define LNN_REQUIRE(cond, ...)          \
    do {                                \
        if (!(cond)) {                  \
            lnn_set_error(__VA_ARGS__); \
            return LNN_ERR_VALUE;       \
        }                               \
    } while (0)

/* 64-byte aligned allocation helpers; lnn_free(NULL) is a no-op. */
void *lnn_malloc(size_t nbytes);
void *lnn_calloc(size_t nbytes);
void lnn_free(void *p);

#endif /* LNN_CORE_COMMON_H */
