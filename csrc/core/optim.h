/* core/optim.h: the optimizer's view of the parameter buffer: segments (one per tensor) with
 * their weight-decay and frozen flags and their place in the compact optimizer state, and the
 * Adam / AdamW hyper-parameters. The update itself is a backend op (adam_step, core/backend.h). */
#ifndef LNN_CORE_OPTIM_H
#define LNN_CORE_OPTIM_H

#include <stdint.h>

#include "core/common.h"

/* One tensor of the flat parameter buffer. Segments are sorted by offset and disjoint.
 * Parameters outside every segment, and FROZEN segments, are never touched (nor their state).
 * The optimizer state (m, v) is compact: a trainable segment's state lives at
 * [state_offset, state_offset + size) of m and v, so frozen tensors need no state memory. */
enum { LNN_SEG_DECAY = 1, LNN_SEG_FROZEN = 2 };
typedef struct {
    int64_t offset, size;  /* elements, into params / grads */
    int64_t flags;         /* LNN_SEG_DECAY: apply weight decay; LNN_SEG_FROZEN: skip entirely */
    int64_t state_offset;  /* elements, into m / v (ignored for frozen segments) */
} lnn_segment;

/* Check host segments against a parameter buffer of n elements and state buffers of nstate
 * elements (nstate < 0: do not check the state ranges): in range, sorted, disjoint, known flags. */
lnn_status lnn_segments_check(const lnn_segment *segs, int64_t nseg, int64_t n, int64_t nstate);

typedef struct {
    double lr, beta1, beta2, eps, weight_decay; /* torch.optim.Adam / AdamW */
    double max_grad_norm;                       /* <= 0: no clipping */
    int decoupled;                              /* 1 AdamW, 0 Adam (L2 weight decay) */
} lnn_optim_config;

/* Check the hyper-parameters (lr, eps, weight_decay >= 0 and finite, betas in [0, 1),
 * max_grad_norm finite); the Python boundary checks them first with the same rule. */
lnn_status lnn_optim_config_check(const lnn_optim_config *c);

#endif /* LNN_CORE_OPTIM_H */
