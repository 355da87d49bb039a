/* core/embed_index.h: the id-sorted row index of an embedding table's gradient, so a backend can sum each
 * table row's gradient from its token rows in parallel over ids and deterministically (no atomics), instead
 * of walking all N rows in order for every column (csrc/cuda/embedding.cu's serial kernel).
 *
 * For one table (token ids, positions or token types) the index holds, in one I32 buffer:
 *   rows  (M)          the token rows with a key (rows whose key is `exclude`, the pad id, left out),
 *                      sorted by (key, row): a stable radix sort;
 *   chunk (nchunk + 1) where each chunk starts in rows: a chunk is a run of at most LNN_EMB_CHUNK rows of
 *                      one key, so a key with many rows (a token type, a frequent id) is split;
 *   ckey  (nchunk)     the chunk's key when it is its key's only chunk (the sum goes straight into the table
 *                      row), else -1 - slot: its sum goes to partial slot `slot`;
 *   run   (nrun + 1)   the slots of each key with several chunks: slots run[k] .. run[k+1]-1, in row order;
 *   rkey  (nrun)       that key.
 * The gradient is then: per chunk, the sum of its rows in row order (into the table row, or into its slot);
 * per multi-chunk key, the sum of its slots in order into the table row. The order depends on the keys
 * alone: the same bits on every run and thread count. */
#ifndef LNN_CORE_EMBED_INDEX_H
#define LNN_CORE_EMBED_INDEX_H

#include <stddef.h>
#include <stdint.h>

#define LNN_EMB_CHUNK 256 /* rows per chunk at most */
#define LNN_EMB_RADIX 65536 /* the radix sort's digit: 16 bits, two passes for keys >= 2^16 */

/* An index in backend memory (pointers into one I32 buffer), as the backend op takes it. */
typedef struct {
    const int32_t *rows, *chunk, *ckey, *run, *rkey;
    int nchunk, nrun, nslot;
} lnn_emb_index;

/* An index built on the host: its buffer and the offsets (ints) of its parts in it. */
typedef struct {
    int32_t *buf;
    size_t used; /* ints of buf in use (what to copy to the backend) */
    size_t off_chunk, off_ckey, off_run, off_rkey;
    int M, nchunk, nrun, nslot;
} lnn_emb_index_host;

/* Ints of host buffer a table of N rows needs (the upper bound of `used`), and of the sort's scratch. */
static inline size_t lnn_emb_index_ints(size_t N) { return 5 * N + 2; }
static inline size_t lnn_emb_index_scratch_ints(size_t N) { return N + LNN_EMB_RADIX + 1; }

/* Build the index of keys (N; NULL = every row key 0) in [0, 2^31) into buf (lnn_emb_index_ints(N) ints),
 * leaving out the rows whose key == exclude (-1: none); scratch: lnn_emb_index_scratch_ints(N) ints. */
void lnn_emb_index_build(lnn_emb_index_host *h, int32_t *buf, int32_t *scratch, const int32_t *keys, int N,
                         int exclude);

/* The index with its parts in backend memory at base (where h->buf's first h->used ints were copied). */
lnn_emb_index lnn_emb_index_at(const lnn_emb_index_host *h, const int32_t *base);

#endif /* LNN_CORE_EMBED_INDEX_H */
