/* io/safetensors.h: reading and writing the safetensors format in plain C (no Python).
 *
 * File layout: an 8-byte little-endian header length N, then N bytes of UTF-8 JSON
 *   {"__metadata__": {"k": "v", ...}, "name": {"dtype": "F32", "shape": [2, 3],
 *    "data_offsets": [begin, end]}, ...}
 * padded with spaces, then the data section; offsets are relative to the data section.
 *
 * The parser treats every byte as hostile: a strict JSON parser for exactly this schema,
 * a bounded header (LNN_ST_MAX_HEADER), known dtypes, shape product * dtype size equal to
 * the offsets span (overflow-checked), offsets inside the data section, tensors tiling it
 * with no overlaps or holes (as the reference implementation requires), no duplicate names.
 */
#ifndef LNN_SAFETENSORS_H
#define LNN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/common.h"

#define LNN_ST_MAX_HEADER 100000000ull /* bytes of JSON, as in the reference implementation */
#define LNN_ST_MAX_DIMS 16

/* In the reference implementation's order (by element size); the writer relies on it. */
typedef enum {
    LNN_ST_BOOL = 0, LNN_ST_U8, LNN_ST_I8, LNN_ST_F8_E5M2, LNN_ST_F8_E4M3, LNN_ST_I16, LNN_ST_U16,
    LNN_ST_F16, LNN_ST_BF16, LNN_ST_I32, LNN_ST_U32, LNN_ST_F32, LNN_ST_F64, LNN_ST_I64, LNN_ST_U64,
    LNN_ST_NUM_DTYPES
} lnn_st_dtype;

typedef struct {
    const char *name;        /* UTF-8, NUL-terminated (names holding U+0000 are rejected) */
    int dtype;               /* lnn_st_dtype */
    int ndim;
    int64_t shape[LNN_ST_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end;     /* byte offsets into the data section, end - begin = numel * size */
} lnn_st_tensor;

typedef struct {
    lnn_st_tensor *tensors;  /* in header order */
    size_t n_tensors;
    const char **meta_keys;  /* __metadata__, in header order */
    const char **meta_values;
    size_t n_meta;
    uint64_t header_len;     /* N */
    uint64_t data_start;     /* 8 + N: file offset of the data section */
    uint64_t data_len;       /* bytes of the data section */
    char *pool;              /* decoded strings live here */
    size_t cap_tensors, cap_meta;
} lnn_st_header;

/* "F32", ... and element sizes in bytes; NULL / 0 for an invalid code. */
const char *lnn_st_dtype_name(int dtype);
size_t lnn_st_dtype_size(int dtype);
/* dtype code for a name, or -1. */
int lnn_st_dtype_from_name(const char *name, size_t len);

/* Parse and validate the JSON header json[0..n) for a data section of data_len bytes.
 * On success fills *h (free it with lnn_st_header_free); on failure *h is left empty. */
lnn_status lnn_st_parse_header(const uint8_t *json, size_t n, uint64_t data_len, lnn_st_header *h);

/* Parse a whole file held in memory (length prefix + header + data). */
lnn_status lnn_st_parse_memory(const uint8_t *buf, size_t size, lnn_st_header *h);

/* Open path, read and validate its header (with bounded, checked reads). *fd_out gets an
 * open descriptor for reading the data (close it), or pass NULL to have it closed. */
lnn_status lnn_st_read_header_file(const char *path, lnn_st_header *h, int *fd_out);

void lnn_st_header_free(lnn_st_header *h);

/* Convert n elements of dtype src_dtype (F32, F16, BF16 or F64) at src into float32 at dst. */
lnn_status lnn_st_to_f32(int src_dtype, const void *src, float *dst, size_t n);

/* Read tensor t of a file opened by lnn_st_read_header_file into dst.
 * to_f32 = 1: dst holds numel float32 (source F32/F16/BF16/F64);
 * to_f32 = 0: dst holds the raw bytes (end - begin). No Python; call without the GIL. */
lnn_status lnn_st_read_tensor(int fd, const lnn_st_header *h, const lnn_st_tensor *t, void *dst,
                              int to_f32);

/* One tensor to write: data holds numel * dtype size bytes, little-endian, C order. */
typedef struct {
    const char *name;
    int dtype;
    int ndim;
    const int64_t *shape;
    const void *data;
} lnn_st_wtensor;

/* Write a safetensors file to path (created or truncated). Tensors are laid out by
 * decreasing dtype then name, as the reference writer does (so every tensor is aligned to
 * its element size and the bytes match the reference's); the
 * header is padded with spaces to a multiple of 8 bytes. The file is fsync'ed.
 * fail_after >= 0 is a test hook: fail with an I/O error after that many bytes. */
lnn_status lnn_st_write_file(const char *path, const lnn_st_wtensor *tensors, size_t n,
                             const char *const *meta_keys, const char *const *meta_values,
                             size_t n_meta, int64_t fail_after);

/* Build the header JSON (unpadded length in *len, padded to 8 in *padded_len); the caller
 * frees *out with free(). Offsets follow the order given in order[] (indices into tensors). */
lnn_status lnn_st_build_header(const lnn_st_wtensor *tensors, const size_t *order, size_t n,
                               const char *const *meta_keys, const char *const *meta_values,
                               size_t n_meta, char **out, size_t *padded_len);

#endif /* LNN_SAFETENSORS_H */
