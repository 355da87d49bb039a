"""Long texts in the estimators: how a text longer than max_length tokens is read, and batches by a token budget.

long_text (TextClassifier / TextRegressor, the CLI and lyricnn.tune):
  "truncate"   the first max_length - 2 tokens ([CLS] ... [SEP]); the default.
  "head_tail"  the first head_tokens tokens and the last max_length - 2 - head_tokens (Sun et al. 2019, "How to
               Fine-Tune BERT for Text Classification?": head 128 + tail 382 was their best on IMDb). head_tokens
               None: (max_length - 2) * 128 / 510 rounded, their split at any length (128 at 512, 32 at 128).
  "windows"    every window of the text, as BertTokenizerFast(..., truncation=True, max_length=max_length,
               stride=window_stride, return_overflowing_tokens=True) cuts it: [CLS], up to max_length - 2 tokens,
               [SEP], consecutive windows overlapping by window_stride tokens (None: 0, HF's default). The model
               pools the head's input vector across a song's windows (window_pooling "mean", "max" or
               "attention", see lyricnn.SequenceClassifier) and predicts once per song. max_windows=k keeps at
               most k windows per song, spread evenly over it: the first, the last, and k - 2 between them at
               equal steps (np.linspace over the window numbers, rounded); k = 1 keeps the first (truncation).

Batches by a token budget (max_tokens): the songs of an epoch, in their seeded random order (length-bucketed
with bucket_by_length), are packed into a batch until the next one would bring its real tokens (every window's)
over max_tokens. In "windows" mode batches are always formed so, with max_tokens None meaning batch_size *
max_length (the tokens of batch_size full-length texts); a song longer than that budget on its own then makes a
batch by itself. A max_tokens that is given is a limit: a song whose windows alone exceed it is an error, before
any training, naming the song (its row in X) and both numbers, with the max_windows that would fit. In the other
modes max_tokens None keeps batches of batch_size texts, and a max_tokens given batches them by tokens too.
Prediction uses twice the training budget (eval_batch_size * max_length when eval_batch_size is set).
"""
import numpy as np

from ._validate import check_choice, check_int
from .classifier import LONG_TEXT_MODES, WINDOW_POOLINGS
from .data import pad_batch

__all__ = ["DEFAULTS", "check_params", "head_tokens_default", "window_stride_default", "keep_windows",
           "tokenize", "token_batches", "TokenBatcher", "batch_inputs", "window_inputs"]

#: the estimators' long-text parameters and their defaults
DEFAULTS = dict(long_text="truncate", head_tokens=None, window_stride=None, max_windows=None, window_pooling="mean",
                max_tokens=None)


def head_tokens_default(max_length):
    """Sun et al.'s split (128 of 510) at max_length: the head's share of the max_length - 2 text tokens."""
    return int(round((max_length - 2) * 128 / 510))


def window_stride_default(max_length):
    """0: windows side by side, as HF's stride default (an overlap costs stride / (max_length - 2) more tokens)."""
    return 0


def check_params(est, max_length):
    """The estimator's long-text parameters checked against max_length (before any work); a dict of the
    resolved values (head_tokens, window_stride filled in)."""
    lt = check_choice(est.long_text, "long_text", LONG_TEXT_MODES)
    check_choice(est.window_pooling, "window_pooling", WINDOW_POOLINGS)
    budget = max_length - 2
    h = check_int(est.head_tokens, "head_tokens (tokens kept from the start with long_text='head_tail')", min=0,
                  max=budget, allow_none=True)
    s = check_int(est.window_stride, "window_stride (tokens shared by consecutive windows)", min=0, allow_none=True)
    if s is not None and s >= budget:
        raise ValueError("window_stride=%d is too large for max_length=%d: a window holds max_length - 2 = %d tokens "
                         "and consecutive windows overlap by window_stride tokens, so they could not advance; use "
                         "window_stride <= %d" % (s, max_length, budget, budget - 1))
    mw = est.max_windows
    if mw is not None and not isinstance(mw, bool) and isinstance(mw, (int, np.integer)) and mw <= 0:
        raise ValueError("max_windows must be >= 1 (the windows kept per song) or None for all, got %d" % mw)
    mw = check_int(mw, "max_windows (windows kept per song; None: all)", min=1, allow_none=True)
    mt = check_int(est.max_tokens, "max_tokens (real tokens per training step)", min=1, allow_none=True)
    if mt is not None and mt < max_length and lt == "windows":
        raise ValueError("max_tokens=%d is less than one window of max_length=%d tokens; raise max_tokens to at least "
                         "%d" % (mt, max_length, max_length))
    if lt == "windows":
        head = getattr(est, "_resolved_head", lambda: None)()
        if head is not None and head.get("pooling") == "flatten":
            raise ValueError("long_text='windows' cannot use pooling='flatten': its width depends on the window length; "
                             "use pooling 'cls' or 'mean'")
    return dict(long_text=lt, head_tokens=head_tokens_default(max_length) if h is None else h,
                window_stride=window_stride_default(max_length) if s is None else s, max_windows=mw, max_tokens=mt,
                window_pooling=est.window_pooling if lt == "windows" else None)


def model_settings(p, max_length):
    """What the model records of the long-text mode (config.json "lyricnn_long_text")."""
    out = dict(max_length=max_length)
    if p["long_text"] == "head_tail":
        out["head_tokens"] = p["head_tokens"]
    elif p["long_text"] == "windows":
        out.update(window_stride=p["window_stride"], max_windows=p["max_windows"])
    return out


def keep_windows(n, k):
    """The numbers of the windows kept of n when at most k are: all when n <= k, else k spread evenly (the first
    and the last among them)."""
    if k is None or n <= k:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, k)).astype(np.int64))


def tokenize(tok, texts, p, max_length):
    """Token rows of texts: a 1-D id array per text ("truncate", "head_tail"), or a list of windows (1-D id
    arrays) per text ("windows")."""
    kw = dict(return_token_type_ids=False, return_attention_mask=False)
    if p["long_text"] == "truncate":
        enc = tok(texts, truncation=True, max_length=max_length, **kw)
    elif p["long_text"] == "head_tail":
        enc = tok(texts, truncation="head_tail", max_length=max_length, head_tokens=p["head_tokens"], **kw)
    else:
        enc = tok(texts, truncation=True, max_length=max_length, stride=p["window_stride"],
                  return_overflowing_tokens=True, **kw)
        ids, song = enc["input_ids"], np.asarray(enc["overflow_to_sample_mapping"])
        starts = np.searchsorted(song, np.arange(len(texts) + 1))
        rows = []
        for i in range(len(texts)):
            w = [np.asarray(ids[j], dtype=np.int64) for j in range(starts[i], starts[i + 1])]
            rows.append([w[j] for j in keep_windows(len(w), p["max_windows"])])
        return rows
    return [np.asarray(r, dtype=np.int64) for r in enc["input_ids"]]


def row_tokens(row):
    """Real tokens of a row: a 1-D id array, or a song's list of windows."""
    return sum(len(w) for w in row) if isinstance(row, list) else len(row)


def token_batches(lengths, max_tokens, seed=0, shuffle=True, bucket=False, strict=False, what="text", where="X"):
    """Row indices grouped into batches of at most max_tokens tokens (lengths: tokens per row), in the seeded
    order of lyricnn.data.batch_order (bucket: sorted by length in chunks, batch order shuffled). A row longer
    than max_tokens makes a batch by itself, or (strict) is a ValueError naming it (its row in `where`)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    over = np.flatnonzero(lengths > max_tokens)
    if strict and over.size:
        i = int(over[np.argmax(lengths[over])])
        raise ValueError("%s %d (row %d of %s) has %d tokens, more than max_tokens=%d; raise max_tokens to at least "
                         "%d%s" % (what, i, i, where, lengths[i], max_tokens, lengths[i],
                                   ", or keep fewer windows per song with max_windows" if what == "song" else ""))
    n = len(lengths)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n) if shuffle else np.arange(n)
    if bucket and n:  # sorted by length within chunks of about 50 batches (as batch_order's buckets)
        per_batch = max(1, int(max_tokens // max(1.0, float(lengths.mean()))))
        w = 50 * per_batch
        order = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in
                                (order[i:i + w] for i in range(0, n, w))])
    batches, cur, used = [], [], 0
    for i in order:
        n = int(lengths[i])
        if cur and used + n > max_tokens:
            batches.append(np.array(cur, dtype=np.int64))
            cur, used = [], 0
        cur.append(int(i))
        used += n
    if cur:
        batches.append(np.array(cur, dtype=np.int64))
    if bucket and shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def batch_inputs(rows, idx, pad_id, pad_to=None):
    """(input_ids, attention_mask, extra keyword arguments of train_step / __call__) of rows idx: 1-D id arrays
    padded to the longest (or pad_to), or songs' windows packed with their windows_of."""
    if len(idx) and isinstance(rows[idx[0]], list):
        a, m, w = window_inputs(rows, idx, pad_id)
        return a, m, {"windows_of": w}
    from .training import pad_rows

    a, m = pad_rows(rows, idx, pad_id, pad_to)
    return a, m, {}


def window_inputs(rows, idx, pad_id):
    """(input_ids, attention_mask, windows_of) of the songs idx: their windows packed in order, padded to the
    longest window; windows_of the song (0 .. len(idx) - 1) of each window."""
    wins, song = [], []
    for s, i in enumerate(idx):
        wins += rows[i]
        song += [s] * len(rows[i])
    a, m = pad_batch(wins, pad_id=pad_id)
    return a, m, np.asarray(song, dtype=np.int32)


class TokenBatcher:
    """Batches for lyricnn.training.TrainLoop by a token budget (see the module doc); rows are 1-D id arrays or
    songs' lists of windows."""

    def __init__(self, max_tokens, strict):
        self.max_tokens, self.strict = int(max_tokens), bool(strict)

    def batches(self, lengths, seed, bucket):
        return token_batches(lengths, self.max_tokens, seed=seed, shuffle=True, bucket=bucket, strict=self.strict,
                             what="song")

    def check(self, lengths, what="song", where="X"):
        token_batches(lengths, self.max_tokens, shuffle=False, strict=self.strict, what=what, where=where)

    def inputs(self, rows, idx, pad_id, pad_to):
        return batch_inputs(rows, idx, pad_id, pad_to)
