/* core/params.c: the parameter table (core/params.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/params.h"


int lnn_params_find(const lnn_param_table *tab, const char *name) {
    for (int i = 0; i < tab->n; i++)
        if (strcmp(tab->t[i].name, name) == 0) return i;
    return -1;
}

int lnn_params_add(lnn_param_table *tab, const char *name, int ndim, const int64_t *shape, unsigned flags) {
    if (!name || strlen(name) >= LNN_NAME_MAX) {
        lnn_set_error("tensor name is missing or longer than %d characters", LNN_NAME_MAX - 1);
        return -1;
    }
    if (ndim < 1 || ndim > LNN_MAX_NDIM) {
        lnn_set_error("tensor %s: ndim must be 1..%d, got %d", name, LNN_MAX_NDIM, ndim);
        return -1;
    }
    if (lnn_params_find(tab, name) >= 0) {
        lnn_set_error("tensor %s is registered twice", name);
        return -1;
    }
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1 || shape[i] > ((int64_t)1 << 31)) {
            lnn_set_error("tensor %s: dimension %d is %lld", name, i, (long long)shape[i]);
            return -1;
        }
        numel *= (size_t)shape[i];
        if (numel > ((size_t)1 << 36)) {
            lnn_set_error("tensor %s is too large", name);
            return -1;
        }
    }
    if (tab->n == tab->cap) {
        int cap = tab->cap ? tab->cap * 2 : 64;
        lnn_tensor_info *t = realloc(tab->t, sizeof *t * (size_t)cap);
        if (!t) {
            lnn_set_error("out of memory registering tensor %s", name);
            return -1;
        }
        tab->t = t;
        tab->cap = cap;
    }
    lnn_tensor_info *ti = &tab->t[tab->n];
    memset(ti, 0, sizeof *ti);
    snprintf(ti->name, sizeof ti->name, "%s", name);
    ti->ndim = ndim;
    for (int i = 0; i < ndim; i++) ti->shape[i] = shape[i];
    ti->offset = tab->numel;
    ti->numel = numel;
    ti->flags = flags;
    tab->numel += numel;
    return tab->n++;
}

void lnn_params_free(lnn_param_table *tab) {
    free(tab->t);
    memset(tab, 0, sizeof *tab);
}

