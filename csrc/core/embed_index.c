/* core/embed_index.c: the id-sorted row index of an embedding table's gradient (core/embed_index.h). */
#include "core/embed_index.h"

#include <string.h>

static int32_t key_of(const int32_t *keys, int32_t row) { return keys ? keys[row] : 0; }

/* The end of the run of sorted rows from i that share rows[i]'s key, and that run's chunk count. */
static int run_end(const int32_t *keys, const int32_t *rows, int M, int i, int *chunks) {
    int32_t k = key_of(keys, rows[i]);
    int j = i;
    while (j < M && key_of(keys, rows[j]) == k) j++;
    *chunks = (j - i + LNN_EMB_CHUNK - 1) / LNN_EMB_CHUNK;
    return j;
}

/* One stable counting-sort pass of src (n rows) into dst by the 16-bit digit of key >> shift. */
static void radix_pass(int32_t *dst, const int32_t *src, int n, const int32_t *keys, int shift, int32_t *count) {
    memset(count, 0, sizeof(int32_t) * (LNN_EMB_RADIX + 1));
    for (int i = 0; i < n; i++) count[((uint32_t)key_of(keys, src[i]) >> shift & 0xFFFFu) + 1]++;
    for (int d = 0; d < LNN_EMB_RADIX; d++) count[d + 1] += count[d];
    for (int i = 0; i < n; i++) dst[count[(uint32_t)key_of(keys, src[i]) >> shift & 0xFFFFu]++] = src[i];
}

void lnn_emb_index_build(lnn_emb_index_host *h, int32_t *buf, int32_t *scratch, const int32_t *keys, int N,
                         int exclude) {
    int32_t *rows = buf, *tmp = scratch, *count = scratch + N;
    int M = 0, maxkey = 0;
    for (int r = 0; r < N; r++) {
        int32_t k = key_of(keys, r);
        if (k == exclude) continue;
        rows[M++] = r;
        if (k > maxkey) maxkey = k;
    }
    /* stable LSD radix sort by key: rows stay in row order within a key */
    if (keys && M > 1) {
        radix_pass(tmp, rows, M, keys, 0, count);
        if (maxkey >= LNN_EMB_RADIX) radix_pass(rows, tmp, M, keys, 16, count);
        else memcpy(rows, tmp, sizeof(int32_t) * (size_t)M);
    }
    /* count the chunks and the multi-chunk keys */
    int nchunk = 0, nrun = 0, nslot = 0;
    for (int i = 0, c; i < M;) {
        int j = run_end(keys, rows, M, i, &c);
        nchunk += c;
        if (c > 1) {
            nrun++;
            nslot += c;
        }
        i = j;
    }
    h->buf = buf;
    h->M = M;
    h->nchunk = nchunk;
    h->nrun = nrun;
    h->nslot = nslot;
    h->off_chunk = (size_t)M;
    h->off_ckey = h->off_chunk + (size_t)nchunk + 1;
    h->off_run = h->off_ckey + (size_t)nchunk;
    h->off_rkey = h->off_run + (size_t)nrun + 1;
    h->used = h->off_rkey + (size_t)nrun;
    int32_t *chunk = buf + h->off_chunk, *ckey = buf + h->off_ckey, *run = buf + h->off_run, *rkey = buf + h->off_rkey;
    int ch = 0, rn = 0, slot = 0;
    for (int i = 0, c; i < M;) {
        int32_t k = key_of(keys, rows[i]);
        int j = run_end(keys, rows, M, i, &c);
        if (c > 1) {
            run[rn] = slot;
            rkey[rn++] = k;
        }
        for (int s = i; s < j; s += LNN_EMB_CHUNK) {
            chunk[ch] = s;
            ckey[ch++] = c > 1 ? -1 - slot++ : k;
        }
        i = j;
    }
    chunk[ch] = M;
    run[rn] = slot;
}

lnn_emb_index lnn_emb_index_at(const lnn_emb_index_host *h, const int32_t *base) {
    lnn_emb_index x;
    x.rows = base;
    x.chunk = base + h->off_chunk;
    x.ckey = base + h->off_ckey;
    x.run = base + h->off_run;
    x.rkey = base + h->off_rkey;
    x.nchunk = h->nchunk;
    x.nrun = h->nrun;
    x.nslot = h->nslot;
    return x;
}
