/* core/optim.c: segment and hyper-parameter checks of the optimizer (core/optim.h). */
#include <math.h>

#include "core/optim.h"

lnn_status lnn_segments_check(const lnn_segment *segs, int64_t nseg, int64_t n, int64_t nstate) {
    int64_t end = 0, state_end = 0;
    for (int64_t s = 0; s < nseg; s++) {
        const lnn_segment *g = &segs[s];
        if (g->offset < 0 || g->size < 0 || g->offset > n || g->size > n - g->offset) {
            lnn_set_error("segments[%lld] = (offset %lld, size %lld) does not fit in a parameter "
                          "buffer of %lld elements", (long long)s, (long long)g->offset,
                          (long long)g->size, (long long)n);
            return LNN_ERR_VALUE;
        }
        if (g->offset < end) {
            lnn_set_error("segments[%lld] (offset %lld) overlaps or precedes the previous segment "
                          "(which ends at %lld); segments must be sorted by offset and disjoint",
                          (long long)s, (long long)g->offset, (long long)end);
            return LNN_ERR_VALUE;
        }
        if (g->flags & ~(int64_t)(LNN_SEG_DECAY | LNN_SEG_FROZEN)) {
            lnn_set_error("segments[%lld] has unknown flags %lld (1 = decay, 2 = frozen)",
                          (long long)s, (long long)g->flags);
            return LNN_ERR_VALUE;
        }
        end = g->offset + g->size;
        if (nstate < 0 || (g->flags & LNN_SEG_FROZEN)) continue;
        if (g->state_offset < 0 || g->state_offset > nstate || g->size > nstate - g->state_offset) {
            lnn_set_error("segments[%lld] state range (state_offset %lld, size %lld) does not fit in "
                          "optimizer state buffers (m, v) of %lld elements", (long long)s,
                          (long long)g->state_offset, (long long)g->size, (long long)nstate);
            return LNN_ERR_VALUE;
        }
        if (g->state_offset < state_end) {
            lnn_set_error("segments[%lld] state range (state_offset %lld) overlaps or precedes the "
                          "previous trainable segment's (which ends at %lld); state ranges must be "
                          "sorted and disjoint", (long long)s, (long long)g->state_offset,
                          (long long)state_end);
            return LNN_ERR_VALUE;
        }
        state_end = g->state_offset + g->size;
    }
    return LNN_OK;
}

lnn_status lnn_optim_config_check(const lnn_optim_config *c) {
    if (!(c->lr >= 0 && isfinite(c->lr)) || !(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1) ||
        !(c->eps >= 0 && isfinite(c->eps)) || !(c->weight_decay >= 0 && isfinite(c->weight_decay)) ||
        !isfinite(c->max_grad_norm)) {
        lnn_set_error("optimizer: need lr, eps and weight_decay finite and >= 0, betas in [0, 1) and a finite "
                      "max_grad_norm (got lr=%g, betas=(%g, %g), eps=%g, weight_decay=%g, max_grad_norm=%g)",
                      c->lr, c->beta1, c->beta2, c->eps, c->weight_decay, c->max_grad_norm);
        return LNN_ERR_VALUE;
    }
    return LNN_OK;
}
