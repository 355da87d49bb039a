/* fuzz-sources: io/tokenizer.c io/unicode_tables.c core/common.c */
/* fuzz_tokenizer.c: libFuzzer harness for the pure C tokenizer core: vocab loading from arbitrary bytes,
 * then encoding arbitrary code points (1/2/4-byte kinds, invalid code points and surrogates included),
 * pairs, truncation, windows (overflow with a stride) and row layout.
 *
 * Input layout: [flags][max_chars][trunc/maxlen][vocab_len_lo][vocab_len_hi] vocab... text...; max_chars also
 * sets the windows: stride (bits 0-2), overflow (bit 3), head_tail (bit 4) with head_tokens (bits 5-7).
 * Built and run by tools/fuzz.sh (make fuzz); by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Icsrc csrc/fuzz/fuzz_tokenizer.c \
 *         csrc/io/tokenizer.c csrc/io/unicode_tables.c csrc/core/common.c -lm -o fuzz-build/fuzz_tokenizer
 *   fuzz-build/fuzz_tokenizer -max_total_time=60 csrc/fuzz/corpus_tokenizer */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/tokenizer.h"

static const char BUILTIN[] =
    "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nb\nab\n##a\n##b\n##ab\nhello\n##llo\nhe\n\xc3\xa9\n##\xc3\xa9\n"
    "\xe4\xb8\xad\n!\n,\n#\n##\n\xf0\x9f\x98\x80\ni\n\xcc\x87\n";

static void run(const lnn_tokenizer *t, const uint8_t *text, size_t n, uint8_t flags, uint8_t tr, uint8_t win) {
    int kind = (flags >> 5) & 3;
    kind = kind == 0 ? 1 : kind == 1 ? 2 : 4;
    int64_t len = (int64_t)(n / (size_t)kind);
    /* copy into an aligned buffer of the right element size */
    void *buf = malloc(len > 0 ? (size_t)len * (size_t)kind : 1);
    if (!buf) return;
    if (len > 0) memcpy(buf, text, (size_t)len * (size_t)kind);
    lnn_tok_work w = {0};
    lnn_tok_seq s = {0};
    lnn_tok_encode(t, buf, kind, len, (tr & 0x80) ? (int64_t)(tr & 15) : -1, &w, &s);
    /* a batch of two: the text and its second half as a pair */
    lnn_tok_text a[2] = {{buf, kind, len}, {buf, kind, len / 2}};
    lnn_tok_text b[2] = {{(const char *)buf + (size_t)(len / 2) * (size_t)kind, kind, len - len / 2}, {buf, kind, 0}};
    lnn_tok_opts o = {tr & 1, (tr >> 1) & 3, (tr >> 3) & 15, 2, 3, (flags >> 2) & 1, win & 7, (win >> 3) & 1, 0};
    if ((win >> 4) & 1) { o.trunc = LNN_TRUNC_HEAD_TAIL; o.head_tokens = (win >> 5) & 7; }
    lnn_tok_row rows[2];
    memset(rows, 0, sizeof rows);
    int64_t err = -1;
    lnn_tok_batch_mem *mem = NULL;
    if (!lnn_tok_encode_batch(t, a, (tr & 0x40) ? b : NULL, 2, &o, rows, &err, &mem)) {
        for (int i = 0; i < 2; i++) {
            int64_t nw = rows[i].pa * rows[i].pb;
            for (int64_t k = 0; k < nw && k < 256; k++) {
                lnn_tok_row w;
                lnn_tok_window(&rows[i], &o, k, &w);
                int64_t width = w.len + (tr & 3);
                int64_t *ids = calloc((size_t)width + 1, 8), *tt = calloc((size_t)width + 1, 8);
                int32_t *offs = calloc(2 * (size_t)width + 2, 4);
                if (ids && tt && offs)
                    lnn_tok_row_write(&w, &o, width, i, 0, 8, ids, tt, NULL, NULL, NULL),
                    lnn_tok_row_write(&w, &o, width, !i, 0, 4, offs, NULL, offs, offs, offs);
                free(ids); free(tt); free(offs);
            }
        }
    }
    lnn_tok_batch_mem_free(mem);
    lnn_tok_seq_free(&s);
    lnn_tok_work_free(&w);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 5) return 0;
    uint8_t flags = data[0], maxc = data[1], tr = data[2];
    size_t vlen = (size_t)data[3] | ((size_t)data[4] << 8);
    data += 5; size -= 5;
    if (vlen > size) vlen = size;
    const char *added[3] = {"[CLS]", "[MASK]", "\xc3\xa9t"};
    int32_t added_ids[3] = {2, 4, 7};
    lnn_tok_config cfg = {flags & 1, (int)((flags >> 1) & 3) - 1 > 1 ? 1 : (int)((flags >> 1) & 3) - 1,
                          (flags >> 3) & 1, (flags >> 4) & 1, maxc, "[UNK]", "##", (flags & 0x80) ? 3 : 2, added,
                          added_ids};
    lnn_tokenizer *t = NULL;
    if (lnn_tok_create(&cfg, (const char *)data, vlen, &t) == LNN_OK) {
        run(t, data + vlen, size - vlen, flags, tr, maxc);
        lnn_tok_free(t);
    }
    if (lnn_tok_create(&cfg, BUILTIN, sizeof BUILTIN - 1, &t) == LNN_OK) {
        run(t, data + vlen, size - vlen, flags, tr, maxc);
        lnn_tok_free(t);
    } else {
        abort(); /* the built-in vocab must always load */
    }
    return 0;
}
