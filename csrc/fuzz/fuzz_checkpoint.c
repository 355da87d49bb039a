/* fuzz-sources: io/safetensors.c core/common.c */
/* fuzz-seeds: corpus_safetensors */
/* fuzz_checkpoint.c: libFuzzer harness for the checkpoint reader behind py/checkpoint_py.c's st_header and
 * st_read (lyricnn.checkpoint.read_safetensors / load_state_dict): a file on disk, read the way the binding
 * reads it: lnn_st_read_header_file (bounded, checked reads of the length prefix and the JSON header), then
 * lnn_st_read_tensor for every tensor into a buffer of exactly the size the header gives, converted to
 * float32 where the binding converts (F32, F16, BF16, F64) and raw otherwise (both ways for float tensors).
 *
 * Built and run by tools/fuzz.sh (make fuzz); by hand, from the repository root:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc csrc/fuzz/fuzz_checkpoint.c \
 *         csrc/io/safetensors.c csrc/core/common.c -lm -o fuzz-build/fuzz_checkpoint
 *   fuzz-build/fuzz_checkpoint -dict=csrc/fuzz/checkpoint.dict csrc/fuzz/corpus_checkpoint
 *
 * Each input is the whole file (it is written to an in-memory file, memfd). Checked beyond "no memory error":
 * the file reader accepts exactly what the in-memory parser (lnn_st_parse_memory) accepts, with the same
 * tensors, and the bytes read from the file equal the bytes of the input at the header's offsets; a float
 * tensor read as float32 equals lnn_st_to_f32 of those bytes. A read that would overrun its buffer shows as an
 * ASan error. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "io/safetensors.h"

static void check(int cond) {
    if (!cond) __builtin_trap();
}

static int is_float(int dt) { return dt == LNN_ST_F32 || dt == LNN_ST_F16 || dt == LNN_ST_BF16 || dt == LNN_ST_F64; }

/* the input as a file: a memfd, reached through /proc/self/fd (the reader takes a path, as the binding) */
static int as_file(const uint8_t *data, size_t size, char *path, size_t n) {
    int fd = memfd_create("lnn_fuzz_checkpoint", 0);
    if (fd < 0) return -1;
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) { close(fd); return -1; }
        off += (size_t)w;
    }
    snprintf(path, n, "/proc/self/fd/%d", fd);
    return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int mfd = as_file(data, size, path, sizeof path);
    if (mfd < 0) return 0;
    lnn_st_header h, m;
    int fd = -1;
    lnn_status st = lnn_st_read_header_file(path, &h, &fd);
    lnn_status sm = lnn_st_parse_memory(data, size, &m);
    /* the same decision as the in-memory parser (memory errors aside) */
    if (st != LNN_ERR_MEMORY && sm != LNN_ERR_MEMORY) check((st == LNN_OK) == (sm == LNN_OK));
    if (st == LNN_OK) {
        check(h.data_start + h.data_len == size);
        if (sm == LNN_OK) {
            check(h.n_tensors == m.n_tensors && h.n_meta == m.n_meta);
            for (size_t i = 0; i < h.n_tensors; i++)
                check(!strcmp(h.tensors[i].name, m.tensors[i].name) && h.tensors[i].begin == m.tensors[i].begin &&
                      h.tensors[i].end == m.tensors[i].end && h.tensors[i].dtype == m.tensors[i].dtype);
        }
        for (size_t i = 0; i < h.n_tensors; i++) {
            const lnn_st_tensor *t = &h.tensors[i];
            uint64_t nbytes = t->end - t->begin;
            if (nbytes > (1u << 24) || t->numel > (1u << 22)) continue;
            const uint8_t *src = data + h.data_start + t->begin;
            /* raw, as st_read does for integer / bool tensors (and to_float32=False for F16 / F64) */
            uint8_t *raw = malloc(nbytes ? nbytes : 1);
            if (!raw) break;
            if (lnn_st_read_tensor(fd, &h, t, raw, 0) == LNN_OK) check(!memcmp(raw, src, nbytes));
            free(raw);
            if (!is_float(t->dtype)) continue;
            /* converted, as st_read does for float tensors: exactly numel floats */
            float *f = malloc((t->numel ? t->numel : 1) * sizeof(float));
            float *g = malloc((t->numel ? t->numel : 1) * sizeof(float));
            if (f && g && lnn_st_read_tensor(fd, &h, t, f, 1) == LNN_OK &&
                lnn_st_to_f32(t->dtype, src, g, t->numel) == LNN_OK)
                check(!memcmp(f, g, t->numel * sizeof(float)));  /* bit-identical, NaN payloads included */
            free(f);
            free(g);
        }
        lnn_st_header_free(&h);
    }
    if (sm == LNN_OK) lnn_st_header_free(&m);
    if (fd >= 0) close(fd);
    close(mfd);
    return 0;
}
