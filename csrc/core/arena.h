/* core/arena.h: activation arenas laid out in bytes.
 *
 * An arena is one backend allocation holding a model's activations for one batch shape. A layout
 * function takes its slots in order with lnn_take(); a first pass with a NULL base only counts
 * the bytes, a second pass hands out the pointers. Every slot starts on a 64-byte boundary and
 * has its own dtype, so integer arrays never share float slots.
 *
 *     lnn_plan p = lnn_plan_begin(NULL);
 *     layout(&p, ...);                     // lnn_take(&p, (void **)&a->ids, N, LNN_I32); ...
 *     lnn_arena_reserve(ctx, &arena, p.used);
 *     p = lnn_plan_begin(arena.base);
 *     layout(&p, ...);
 */
#ifndef LNN_CORE_ARENA_H
#define LNN_CORE_ARENA_H

#include <stddef.h>

#include "core/dtype.h"

#define LNN_ALIGN 64

typedef struct {
    char *base;  /* NULL while counting */
    size_t used; /* bytes taken so far */
} lnn_plan;

static inline lnn_plan lnn_plan_begin(void *base) {
    lnn_plan p = {(char *)base, 0};
    return p;
}

/* Take count elements of dtype t: *slot = their address (NULL while counting or when count is 0). */
static inline void lnn_take(lnn_plan *p, void **slot, size_t count, lnn_dtype t) {
    size_t bytes = count * lnn_dtype_size(t);
    *slot = (p->base && bytes) ? (void *)(p->base + p->used) : NULL;
    p->used += (bytes + LNN_ALIGN - 1) & ~(size_t)(LNN_ALIGN - 1);
}

/* Take a region of a size in bytes (backend workspaces). */
static inline void lnn_take_bytes(lnn_plan *p, void **slot, size_t bytes) {
    *slot = (p->base && bytes) ? (void *)(p->base + p->used) : NULL;
    p->used += (bytes + LNN_ALIGN - 1) & ~(size_t)(LNN_ALIGN - 1);
}

#endif /* LNN_CORE_ARENA_H */
