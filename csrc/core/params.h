/* core/params.h: the parameter table: every tensor of a model by name (HF names, without the
 * model prefix), its shape, its offset into the one contiguous F32 buffer of parameters (and the
 * gradient buffer of the same layout), and its flags. Bodies (the encoder) and heads append their
 * tensors to one table, so params, grads and the optimizer state are each one buffer. */
#ifndef LNN_CORE_PARAMS_H
#define LNN_CORE_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "core/common.h"

enum { LNN_TENSOR_NO_DECAY = 1, LNN_TENSOR_FROZEN = 2 };
#define LNN_NAME_MAX 112
#define LNN_MAX_NDIM 4

typedef struct {
    char name[LNN_NAME_MAX];
    int ndim;
    int64_t shape[LNN_MAX_NDIM];
    size_t offset; /* in elements, into the params / grads buffers */
    size_t numel;
    unsigned flags; /* LNN_TENSOR_* */
} lnn_tensor_info;

typedef struct {
    lnn_tensor_info *t;
    int n, cap;
    size_t numel; /* total elements */
} lnn_param_table;

/* Append a tensor (laid out right after the previous one). Returns its index, or -1 (error set)
 * on a duplicate name, a bad shape or no memory. */
int lnn_params_add(lnn_param_table *tab, const char *name, int ndim, const int64_t *shape, unsigned flags);
int lnn_params_find(const lnn_param_table *tab, const char *name);
void lnn_params_free(lnn_param_table *tab);

#endif /* LNN_CORE_PARAMS_H */
