/* io/tokenizer.h: BERT WordPiece tokenizer core (pure C, no Python), identical in output to
 * Hugging Face tokenizers' BertNormalizer + BertPreTokenizer + WordPiece + BERT post-processor.
 *
 * Pipeline for one text (code points, as a Python str stores them: 1, 2 or 4 bytes each):
 *   added tokens ([CLS], [MASK], ... matched leftmost-longest in the RAW text)
 *   -> clean_text -> handle_chinese_chars -> strip_accents (NFD, canonical order, drop Mn)
 *   -> lowercase -> split on whitespace / isolate punctuation -> greedy longest-match WordPiece.
 * Offsets are code point indices into the original text. */
#ifndef LNN_TOKENIZER_H
#define LNN_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/common.h"

typedef struct lnn_tokenizer lnn_tokenizer;

typedef struct {
    int lowercase;                 /* 1: lowercase every char */
    int strip_accents;             /* -1: follow lowercase, 0: keep accents, 1: strip */
    int clean_text;                /* 1: drop NUL/U+FFFD/controls, map whitespace to ' ' */
    int handle_chinese_chars;      /* 1: CJK ideographs become words of their own */
    int max_input_chars_per_word;  /* longer words become unk (100) */
    const char *unk_token;         /* UTF-8, must be in the vocab */
    const char *continuing_prefix; /* UTF-8, "##" */
    int n_added;                   /* added tokens split out of the raw text before normalizing */
    const char *const *added_tokens; /* UTF-8 contents */
    const int32_t *added_ids;      /* their ids */
} lnn_tok_config;

/* Build from a vocab.txt image (UTF-8, one token per line, id = line number; a final newline
 * is optional, a trailing '\r' is dropped). Errors: invalid UTF-8, duplicates, empty vocab,
 * unk not in vocab. */
lnn_status lnn_tok_create(const lnn_tok_config *cfg, const char *vocab, size_t nbytes,
                          lnn_tokenizer **out);
void lnn_tok_free(lnn_tokenizer *t);
int64_t lnn_tok_vocab_size(const lnn_tokenizer *t);
int32_t lnn_tok_unk_id(const lnn_tokenizer *t);

/* Growable token sequence: ids[n], offs[2n] (start, end code point indices). */
typedef struct {
    int32_t *ids;
    int32_t *offs;
    int64_t n, cap;
} lnn_tok_seq;
void lnn_tok_seq_free(lnn_tok_seq *s);

/* Per-thread scratch space: the current word and the current run of combining marks (canonical
 * reordering); zero-initialise, free with lnn_tok_work_free. */
typedef struct {
    uint32_t *cp;
    int32_t *orig;
    int64_t cap;
    uint32_t *rcp;   /* run of non-starters after NFD, input order */
    uint8_t *rccc, *rchg;
    int32_t *rsrc;   /* sources (original indices) consumed by the run, input order */
    int64_t rn, rnsrc, rcap;
    uint32_t *tmp_cp; uint8_t *tmp_ccc, *tmp_chg; /* sort scratch (rcap) */
} lnn_tok_work;
void lnn_tok_work_free(lnn_tok_work *w);

/* Tokenize one text (no special tokens) into out (reset first). kind = bytes per code point
 * (1, 2, 4). limit >= 0 stops once that many tokens are produced (the first `limit` tokens are
 * exactly those of the full run); -1: no limit. Fails on lone surrogates (message names the
 * index) and on allocation failure. */
lnn_status lnn_tok_encode(const lnn_tokenizer *t, const void *text, int kind, int64_t len,
                          int64_t limit, lnn_tok_work *w, lnn_tok_seq *out);

/* Truncation as tokenizers does it. strategy: 0 none, 1 longest_first, 2 only_first,
 * 3 only_second, 4 head_tail (lyricnn's own: a single sequence keeps as many tokens as longest_first,
 * its first head_tokens and then its last ones). max_len is the budget for the sequences (max_length
 * minus special tokens). nb < 0: no pair. Writes the kept lengths. */
enum { LNN_TRUNC_NONE = 0, LNN_TRUNC_LONGEST_FIRST = 1, LNN_TRUNC_ONLY_FIRST = 2, LNN_TRUNC_ONLY_SECOND = 3,
       LNN_TRUNC_HEAD_TAIL = 4 };
lnn_status lnn_tok_truncate(int strategy, int64_t max_len, int64_t na, int64_t nb, int64_t *keep_a,
                            int64_t *keep_b);

/* A text as code points. */
typedef struct {
    const void *data;
    int kind;
    int64_t len;
} lnn_tok_text;

typedef struct {
    int add_special;      /* [CLS] A [SEP] (B [SEP]) */
    int trunc;            /* LNN_TRUNC_* */
    int64_t max_length;   /* total length incl. special tokens (trunc != NONE) */
    int32_t cls_id, sep_id;
    int trunc_left;       /* truncation_side='left': keep the last tokens */
    int64_t stride;       /* overlap of consecutive windows (tokens); checked whenever trunc != NONE */
    int overflow;         /* 1: keep every window of each text (return_overflowing_tokens) */
    int64_t head_tokens;  /* LNN_TRUNC_HEAD_TAIL: tokens kept from the start */
} lnn_tok_opts;

/* One post-processed row: [CLS] A [SEP] B [SEP]. ids/offs point into the batch's memory;
 * na/nb count the sequence tokens (nb = -1: no pair); len includes the special tokens.
 * A text encoded by lnn_tok_encode_batch is a row too: without overflow it holds the kept tokens (its
 * one window); with overflow it holds the whole sequences, and ma/mb (tokens per window of A / B, as
 * truncation keeps them) and pa/pb (windows of A / B) describe its pa * pb windows (lnn_tok_window). */
typedef struct {
    const int32_t *a_ids, *a_offs, *b_ids, *b_offs;
    int64_t na, nb;
    int64_t len;          /* the row's length; for an encoded text: its first window's */
    int64_t ma, mb, pa, pb;
} lnn_tok_row;

/* Memory of an encoded batch (per-thread arenas of large blocks: a few mallocs per batch). */
typedef struct lnn_tok_batch_mem lnn_tok_batch_mem;
void lnn_tok_batch_mem_free(lnn_tok_batch_mem *m);

/* Encode n texts (and pairs if b != NULL) in parallel into rows[n]. The rows stay valid until
 * lnn_tok_batch_mem_free(*mem) (also set, to be freed, on failure). On failure returns the status of
 * the first failing row and writes its index to *err_row (message via lnn_get_error). */
lnn_status lnn_tok_encode_batch(const lnn_tokenizer *t, const lnn_tok_text *a, const lnn_tok_text *b,
                                int64_t n, const lnn_tok_opts *o, lnn_tok_row *rows, int64_t *err_row,
                                lnn_tok_batch_mem **mem);

/* Window k (0 <= k < pa * pb) of an encoded text, as Hugging Face tokenizers orders them: each sequence
 * is cut into windows of m tokens that advance by m - stride (from the end with truncation_side='left';
 * m = 0 gives an empty window and then the whole sequence), and a pair's windows are combined as
 * (A0,B0), (A1,B0..Bq-1), ..., (Ap-1,B0..Bq-1), (A0,B1..Bq-1). */
void lnn_tok_window(const lnn_tok_row *text, const lnn_tok_opts *o, int64_t k, lnn_tok_row *win);

/* Write row r into position `pos` of padded/flat outputs of width `width` (>= r->len).
 * Arrays may be NULL. ids/type/mask/special: width entries; offs: 2*width. left: pad on the left.
 * elem: 4 or 8 bytes per integer. */
void lnn_tok_row_write(const lnn_tok_row *r, const lnn_tok_opts *o, int64_t width, int left, int32_t pad_id,
                       int elem, void *ids, void *type_ids, void *mask, void *offs, void *special);

#endif /* LNN_TOKENIZER_H */
