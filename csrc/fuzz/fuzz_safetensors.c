/* fuzz-sources: io/safetensors.c core/common.c */
/* fuzz_safetensors.c: libFuzzer harness for the safetensors header parser and validator.
 *
 * Build and run (from the repository root):
 * Built and run by tools/fuzz.sh (make fuzz); by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc csrc/fuzz/fuzz_safetensors.c \
 *         csrc/io/safetensors.c csrc/core/common.c -lm -o fuzz-build/fuzz_safetensors
 *   fuzz-build/fuzz_safetensors -dict=csrc/fuzz/safetensors.dict -max_total_time=60 csrc/fuzz/corpus_safetensors
 *
 * Each input is a whole file (length prefix + JSON header + data). When it parses, every
 * tensor is converted from the in-memory data section, so an accepted header that pointed
 * outside the buffer would show up as an ASan out-of-bounds read. A second pass parses the
 * JSON bytes as a header for a data section of the same length (no length prefix), and the
 * header of an accepted file is rebuilt by the writer and must parse back to the same tensors.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

static void check(int cond) {
    if (!cond) __builtin_trap();
}

static void exercise(const lnn_st_header *h, const uint8_t *data, size_t data_avail) {
    float *out = NULL;
    for (size_t i = 0; i < h->n_tensors; i++) {
        const lnn_st_tensor *t = &h->tensors[i];
        check(t->begin <= t->end && t->end <= h->data_len);
        check(t->end - t->begin == t->numel * lnn_st_dtype_size(t->dtype));
        if (!data) continue;
        check(h->data_start + h->data_len <= data_avail);
        const uint8_t *src = data + h->data_start + t->begin;
        if (t->dtype == LNN_ST_F32 || t->dtype == LNN_ST_F16 || t->dtype == LNN_ST_BF16 ||
            t->dtype == LNN_ST_F64) {
            if (t->numel > (1u << 20)) continue;
            out = realloc(out, (t->numel ? t->numel : 1) * sizeof(float));
            if (!out) return;
            check(lnn_st_to_f32(t->dtype, src, out, t->numel) == LNN_OK);
        } else {
            volatile uint8_t acc = 0;
            for (uint64_t b = 0; b < t->end - t->begin; b++) acc ^= src[b];
            (void)acc;
        }
    }
    free(out);
}

/* Rebuild the header with the writer and parse it back: the same names, dtypes and shapes. */
static void roundtrip(const lnn_st_header *h) {
    size_t n = h->n_tensors;
    lnn_st_wtensor *w = calloc(n ? n : 1, sizeof *w);
    size_t *order = calloc(n ? n : 1, sizeof *order);
    if (!w || !order) goto out;
    for (size_t i = 0; i < n; i++) {
        const lnn_st_tensor *t = &h->tensors[i];
        w[i] = (lnn_st_wtensor){t->name, t->dtype, t->ndim, t->shape, NULL};
        order[i] = i;
    }
    char *json = NULL;
    size_t len = 0;
    if (lnn_st_build_header(w, order, n, h->meta_keys, h->meta_values, h->n_meta, &json, &len))
        goto out;
    check(len % 8 == 0);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) total += h->tensors[i].end - h->tensors[i].begin;
    lnn_st_header h2;
    check(lnn_st_parse_header((const uint8_t *)json, len, total, &h2) == LNN_OK);
    check(h2.n_tensors == n && h2.n_meta == h->n_meta);
    for (size_t i = 0; i < n; i++) {
        check(strcmp(h2.tensors[i].name, h->tensors[i].name) == 0);
        check(h2.tensors[i].dtype == h->tensors[i].dtype && h2.tensors[i].ndim == h->tensors[i].ndim);
        check(memcmp(h2.tensors[i].shape, h->tensors[i].shape, sizeof(int64_t) * h->tensors[i].ndim) == 0);
    }
    for (size_t i = 0; i < h->n_meta; i++) {
        check(strcmp(h2.meta_keys[i], h->meta_keys[i]) == 0);
        check(strcmp(h2.meta_values[i], h->meta_values[i]) == 0);
    }
    lnn_st_header_free(&h2);
    free(json);
out:
    free(w);
    free(order);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lnn_st_header h;
    if (lnn_st_parse_memory(data, size, &h) == LNN_OK) {
        check(h.data_start + h.data_len == size);
        exercise(&h, data, size);
        roundtrip(&h);
        lnn_st_header_free(&h);
    }
    /* the raw bytes as a JSON header (reaches the parser without a valid length prefix) */
    if (lnn_st_parse_header(data, size, size, &h) == LNN_OK) {
        exercise(&h, NULL, 0);
        lnn_st_header_free(&h);
    }
    return 0;
}
