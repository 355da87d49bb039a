"""Overflowing windows (``return_overflowing_tokens=True`` with ``stride``) against transformers'
BertTokenizerFast / DistilBertTokenizerFast, live: input_ids, attention_mask, token_type_ids, offsets,
special_tokens_mask, length and overflow_to_sample_mapping are equal on every song of the 21-artist lyrics,
on the hard Unicode references, at L in {64, 128, 512} x S in {0, 32, 128}; pairs under every truncation
strategy; padding (longest / max_length / pad_to_multiple_of, both sides), truncation_side='left', edge
cases (empty texts, exact multiples, stride 0 and L - 3, max_length - special tokens = 0); bad inputs.
Also lyricnn's own truncation='head_tail'.

One deliberate difference: a stride that leaves windows no room to advance (stride >= max_length - special
tokens, stride > 0) is refused before any work. transformers refuses it only when stride > max_length - 2,
and otherwise panics (pyo3 PanicException) on the first text long enough to be cut."""
import glob
import itertools
import random
import warnings

import numpy as np
import pytest

from conftest import shared_path

from lyricnn.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")

from test_tokenizer import _hf_call as _hf, _hf_dir, _tricky, hf_fast, tok  # noqa: F401, E402 - shared fixtures


@pytest.fixture(scope="module")
def songs():
    """The 5782 lyrics (column Lyric, missing ones dropped) of the 21 <Artist>.csv files; coldplay.csv is
    another layout (a Genius dump), see ../shared/data/datasets/README.md."""
    pd = pytest.importorskip("pandas")
    d = shared_path("datasets", "song_lyrics_21_artists")
    files = [f for f in sorted(glob.glob(str(d / "*.csv"))) if not f.endswith("/coldplay.csv")]
    out = []
    for f in files:
        out += [t for t in pd.read_csv(f, usecols=["Lyric"])["Lyric"].tolist() if isinstance(t, str)]
    assert len(files) == 21 and len(out) == 5782, (len(files), len(out))
    return out


def _flat(rows, key):
    """A batch output (list of rows or a padded array) -> (one flat array, row lengths)."""
    if isinstance(rows, np.ndarray) and rows.dtype != object:
        if key in ("length", "overflow_to_sample_mapping"):
            return rows.reshape(-1), None
        return rows.reshape(-1), [rows.shape[1]] * rows.shape[0]
    if key in ("length", "overflow_to_sample_mapping"):
        return np.asarray(rows).reshape(-1), None
    lens = [len(r) for r in rows]
    if rows and isinstance(rows[0], np.ndarray):  # lyricnn's unpadded rows: views of one flat array
        return np.concatenate(rows).reshape(-1), lens
    if key == "offset_mapping":
        flat = np.fromiter(itertools.chain.from_iterable(itertools.chain.from_iterable(rows)), dtype=np.int64)
    else:
        flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64)
    return flat, lens


def _assert_same(e, h, what):
    assert set(e) == set(h), (what, sorted(e), sorted(h))
    for k in e:
        if isinstance(e[k], np.ndarray) and e[k].dtype != object:
            assert e[k].dtype == np.int64, (what, k, e[k].dtype)
        fe, le = _flat(e[k], k)
        fh, lh = _flat(h[k], k)
        assert le == lh, (what, k, "row lengths differ")
        if not np.array_equal(fe.reshape(-1), fh.reshape(-1)):
            i = int(np.flatnonzero(fe.reshape(-1) != fh.reshape(-1))[0]) if fe.size == fh.size else -1
            raise AssertionError("%s: %s differs (first at flat index %d of %d)" % (what, k, i, fh.size))


def _both(tok, hf, *args, **kw):
    """Call both; equal outputs, or both refuse. Returns lyricnn's output or exception."""
    h, herr = _hf(hf, *args, **kw)
    try:
        e, err = tok(*args, **kw), None
    except ValueError as ex:
        e, err = None, ex
    if err is not None and "is too large for max_length" in str(err) and herr is None:
        budget = kw["max_length"] - (3 if len(args) > 1 and args[1] is not None else 2) * kw.get("add_special_tokens",
                                                                                                   True)
        assert 0 < kw["stride"] >= budget or budget == 0, (kw, err)  # the one deliberate difference
        return err
    assert (herr is None) == (err is None), (kw, herr, err)
    if err is None:
        _assert_same(e, h, kw)
    return e if err is None else err


# --------------------------------------------------------------------------- the proof on real data
_SWEEP = [(L, S) for L in (64, 128, 512) for S in (0, 32, 128)]


@pytest.fixture(scope="module")
def hf_songs(hf_fast, songs):
    """BertTokenizerFast's own engine (a copy of its backend_tokenizer) and every song encoded by it once,
    without special tokens or truncation. engine.post_process(encoding) then runs the truncation (windows),
    the BERT template and padding exactly as BertTokenizerFast.__call__ does after encoding (tokenizers'
    encode = encode the text, then post_process): the sweep re-encodes no song per (L, S).
    test_post_process_route_is_bert_tokenizer_fast checks that equality."""
    tokenizers = pytest.importorskip("tokenizers")
    engine = tokenizers.Tokenizer.from_str(hf_fast.backend_tokenizer.to_str())
    engine.no_truncation()
    engine.no_padding()
    return engine, engine.encode_batch(songs, add_special_tokens=False)


def _hf_windows(engine, base, L, S, idx=None):
    """Every window of base[idx] as BertTokenizerFast(truncation=True, max_length=L, stride=S,
    return_overflowing_tokens=True, return_offsets_mapping=True) returns them (transformers sets exactly
    this truncation on the engine, and lists [encoding] + encoding.overflowing per text)."""
    engine.enable_truncation(L, stride=S, strategy="longest_first", direction="right")
    out = {k: [] for k in ("input_ids", "token_type_ids", "attention_mask", "offset_mapping")}
    mapping = []
    try:
        for i in range(len(base)) if idx is None else idx:
            enc = engine.post_process(base[i])
            for w in [enc] + enc.overflowing:
                out["input_ids"].append(w.ids)
                out["token_type_ids"].append(w.type_ids)
                out["attention_mask"].append(w.attention_mask)
                out["offset_mapping"].append(w.offsets)
                mapping.append(i)
    finally:
        engine.no_truncation()
    out["overflow_to_sample_mapping"] = mapping
    return out


@pytest.mark.parametrize("L,S", _SWEEP, ids=["L%d-S%d" % x for x in _SWEEP])
def test_all_songs_windows_match_hf(tok, hf_fast, hf_songs, songs, L, S):
    """Every window of every song: ids, type ids, attention mask, offsets, mapping (unpadded: row lengths too)."""
    kw = dict(truncation=True, max_length=L, stride=S, return_overflowing_tokens=True, return_offsets_mapping=True)
    if S >= L - 2:
        with pytest.raises(ValueError, match="stride=%d is too large for max_length=%d" % (S, L)):
            tok(songs[:3], **kw)
        assert _hf(hf_fast, songs[:3], **kw)[1] is not None  # transformers refuses it too
        return
    e = tok(songs, **kw)
    _assert_same(e, _hf_windows(*hf_songs, L, S), "songs L=%d S=%d" % (L, S))
    m = e["overflow_to_sample_mapping"]
    assert m[0] == 0 and m[-1] == len(songs) - 1 and np.all(np.diff(m) >= 0)
    if S == 0 and L == 512:  # the numbers: 35.5% of songs need more than one window
        assert round(float(np.mean(np.bincount(m) > 1)), 3) == 0.355


def test_post_process_route_is_bert_tokenizer_fast(hf_fast, hf_songs, songs):
    """The sweep's oracle route gives what BertTokenizerFast.__call__ gives (songs of every length)."""
    idx = list(range(0, len(songs), 11))
    for L, S in ((64, 32), (512, 128)):
        h, err = _hf(hf_fast, [songs[i] for i in idx], truncation=True, max_length=L, stride=S,
                     return_overflowing_tokens=True, return_offsets_mapping=True)
        assert err is None, err
        h = dict(h)
        h["overflow_to_sample_mapping"] = [idx[i] for i in h["overflow_to_sample_mapping"]]
        _assert_same(_hf_windows(*hf_songs, L, S, idx), h, "post_process route L=%d S=%d" % (L, S))


def test_songs_padded_and_numpy(tok, hf_fast, songs):
    """Padding modes and return_tensors='np' on a slice of songs of very different lengths."""
    sub = songs[::23]
    for pad, mult, side in (("longest", None, "right"), ("max_length", None, "left"), (True, 8, "right")):
        kw = dict(truncation=True, max_length=128, stride=32, return_overflowing_tokens=True, padding=pad,
                  pad_to_multiple_of=mult, padding_side=side, return_tensors="np", return_offsets_mapping=True,
                  return_special_tokens_mask=True, return_length=True)
        e = _both(tok, hf_fast, sub, **kw)
        assert e["input_ids"].shape == (len(e["overflow_to_sample_mapping"]), 128)


def test_tricky_unicode_references(tok, hf_fast):
    texts = _tricky()[0]
    assert len(texts) == 244
    for L, S in _SWEEP + [(8, 0), (8, 3), (16, 5), (16, 13), (24, 7), (3, 0), (2, 0)]:
        _both(tok, hf_fast, texts, truncation=True, max_length=L, stride=S, return_overflowing_tokens=True,
              return_offsets_mapping=True, return_special_tokens_mask=True, return_length=True)
    _both(tok, hf_fast, texts, truncation=True, max_length=16, stride=4, return_overflowing_tokens=True,
          return_offsets_mapping=True, padding=True, padding_side="left")


def test_distilbert_tokenizer_windows(hf_fast):
    """DistilBERT's tokenizer returns no token_type_ids, in windows too."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = transformers.DistilBertTokenizerFast.from_pretrained(str(_hf_dir()))
    t = Tokenizer.from_pretrained(str(_hf_dir()))
    texts = _tricky()[0][:80] + ["a b c d e f g h i j " * 9, ""]
    e = _both(t, hf, texts, truncation=True, max_length=12, stride=3, return_overflowing_tokens=True,
              return_offsets_mapping=True, padding="max_length", return_tensors="np")
    assert "token_type_ids" not in e


# --------------------------------------------------------------------------- edge cases, exhaustively small
_T10 = "a b c d e f g h i j"  # 10 tokens


@pytest.mark.parametrize("side", ["right", "left"])
def test_small_edge_cases_match_hf(tok, hf_fast, side):
    """Empty texts, texts shorter than a window, exact multiples (10 tokens at L-2 = 5, 10; stride 0 and
    L - 3), L = 2 (no room: an empty window, then the whole text), padding and offsets, both truncation sides."""
    batches = [[_T10], [_T10, "", "x y"], ["", ""], [_T10 + " " + _T10, "x", _T10], ["x"]]
    tok.truncation_side = hf_fast.truncation_side = side
    try:
        n = 0
        for texts, L, S, pad in itertools.product(batches, (2, 3, 4, 7, 12, 13, 22), (0, 1, 2, 3, 4, 10),
                                                  (False, True, "max_length")):
            r = _both(tok, hf_fast, texts, truncation=True, max_length=L, stride=S, return_overflowing_tokens=True,
                      padding=pad, padding_side=side, return_offsets_mapping=True, return_special_tokens_mask=True,
                      return_length=True)
            n += not isinstance(r, Exception)
        assert n > 300
    finally:
        tok.truncation_side = hf_fast.truncation_side = "right"


def test_window_arithmetic(tok):
    """The documented rule on a 10-token text: windows of L-2 tokens advancing by L-2-S."""
    e = tok(_T10, truncation=True, max_length=6, stride=2, return_overflowing_tokens=True, return_offsets_mapping=True)
    assert [r.tolist()[1:-1] for r in e["input_ids"]] == [[1037 + i for i in range(s, min(s + 4, 10))]
                                                          for s in (0, 2, 4, 6)]
    assert e["overflow_to_sample_mapping"].tolist() == [0, 0, 0, 0]
    assert [r[1].tolist() for r in e["offset_mapping"]] == [[0, 1], [4, 5], [8, 9], [12, 13]]
    # exact multiple, stride 0: 10 tokens in windows of 5 -> 2 windows; stride L - 3 -> windows advance by 1
    assert len(tok(_T10, truncation=True, max_length=7, return_overflowing_tokens=True)["input_ids"]) == 2
    assert len(tok(_T10, truncation=True, max_length=7, stride=4, return_overflowing_tokens=True)["input_ids"]) == 6


def test_defaults_and_shapes(tok, hf_fast):
    """max_length alone truncates (longest_first) as in transformers; padding without truncation does not;
    truncation=False or no max_length on an unlimited tokenizer: one window per text; a single str is a batch."""
    for kw in (dict(max_length=6, stride=2), dict(max_length=6, stride=2, padding=True),
               dict(max_length=6, stride=2, truncation=False), dict(truncation=True, stride=2),
               dict(max_length=6, stride=2, truncation=True, return_tensors="np", padding="max_length")):
        _both(tok, hf_fast, [_T10, "x"], return_overflowing_tokens=True, **kw)
        _both(tok, hf_fast, _T10, return_overflowing_tokens=True, **kw)
    e = tok(_T10, truncation=True, max_length=6, stride=2, return_overflowing_tokens=True, padding=True,
            return_tensors="np", dtype=np.int32)
    assert e["input_ids"].shape == (4, 6) and e["input_ids"].dtype == np.int32
    assert e["overflow_to_sample_mapping"].dtype == np.int32
    pt = tok([_T10, "x"], truncation=True, max_length=6, stride=2, return_overflowing_tokens=True, padding=True,
             return_tensors="pt")
    assert pt["overflow_to_sample_mapping"].tolist() == [0, 0, 0, 0, 1]
    # no special tokens: windows of max_length tokens (max_length 0: an empty window, then the whole text)
    for L, S in ((1, 0), (3, 1), (4, 2), (4, 3), (0, 0)):
        _both(tok, hf_fast, [_T10, "x", ""], add_special_tokens=False, truncation=True, max_length=L, stride=S,
              return_overflowing_tokens=True, return_offsets_mapping=True, return_special_tokens_mask=True)
    # stride without overflow only validates (transformers ignores it too)
    _both(tok, hf_fast, [_T10, "x"], truncation=True, max_length=6, stride=2)


# --------------------------------------------------------------------------- pairs
def test_pairs_match_hf(tok, hf_fast):
    """Pairs under only_first / only_second / longest_first: a pair's windows are the cross product of its
    sequences' windows in tokenizers' order; 'too short' and stride refusals where transformers refuses."""
    rng = random.Random(19)
    words = "a b c d e f g h i j hello world caf\u00e9 \u4e2d\u6587 don't [MASK] \U0001f600".split()
    rt = lambda k: " ".join(rng.choice(words) for _ in range(k))  # noqa: E731
    n_ok = n_err = 0
    for _ in range(8):
        bs = rng.randint(1, 4)
        a = [rt(rng.choice([0, 1, 3, 8, 20])) for _ in range(bs)]
        b = [rt(rng.choice([0, 1, 3, 8, 20])) for _ in range(bs)]
        for tr, L, S, side in itertools.product(("only_second", "only_first", "longest_first"), (3, 4, 6, 9, 30),
                                                (0, 1, 2, 5), ("right", "left")):
            tok.truncation_side = hf_fast.truncation_side = side
            r = _both(tok, hf_fast, a, b, truncation=tr, max_length=L, stride=S, return_overflowing_tokens=True,
                      return_offsets_mapping=True, return_special_tokens_mask=True, return_length=True,
                      padding=rng.choice([False, True, "max_length"]))
            n_ok += not isinstance(r, Exception)
            n_err += isinstance(r, Exception)
    tok.truncation_side = hf_fast.truncation_side = "right"
    assert n_ok > 300 and n_err > 30, (n_ok, n_err)


def test_pairs_on_songs(tok, hf_fast, songs):
    """Question-answering style: a short first text, a long lyric cut with only_second; and a long first
    sequence with only_first / longest_first."""
    sub = songs[::97]
    q = ["who sings this song?"] * len(sub)
    for tr, L, S in (("only_second", 128, 32), ("only_second", 512, 128), ("longest_first", 128, 16)):
        _both(tok, hf_fast, q, sub, truncation=tr, max_length=L, stride=S, return_overflowing_tokens=True,
              return_offsets_mapping=True, padding=True, return_tensors="np")
    _both(tok, hf_fast, sub, q, truncation="only_first", max_length=64, stride=8, return_overflowing_tokens=True,
          return_offsets_mapping=True)


def test_pair_refusals_match_hf(tok, hf_fast):
    long_, short = _T10, "x y"
    kw = dict(return_overflowing_tokens=True)
    # HF: "Truncation error: Sequence to truncate too short to respect the provided max_length"
    with pytest.raises(ValueError, match="too short"):
        tok([long_], ["z"], truncation="only_second", max_length=8, stride=0, **kw)
    assert _hf(hf_fast, [long_], ["z"], truncation="only_second", max_length=8, stride=0, **kw)[1] is not None
    # HF: "Second sequence not provided"
    with pytest.raises(ValueError, match="Second sequence not provided"):
        tok([long_], truncation="only_second", max_length=6, stride=1, **kw)
    assert _hf(hf_fast, [long_], truncation="only_second", max_length=6, stride=1, **kw)[1] is not None
    # the room left for the cut sequence is smaller than the stride: HF panics, lyricnn names the numbers
    with pytest.raises(ValueError, match=r"text 1 of the batch: stride=3 is too large for max_length=8 here: "
                                         r"truncation='only_second' leaves 3 tokens of text_pair"):
        tok(["a", short], ["b", "k l m n o p q r s t"], truncation="only_second", max_length=8, stride=3, **kw)
    assert _hf(hf_fast, [short], ["k l m n o p q r s t"], truncation="only_second", max_length=8, stride=3,
               **kw)[1] is not None
    # ... also without return_overflowing_tokens, as transformers (it computes the windows regardless)
    with pytest.raises(ValueError, match="stride=3 is too large"):
        tok([short], ["k l m n o p q r s t"], truncation="only_second", max_length=8, stride=3)


# --------------------------------------------------------------------------- bad input
def test_bad_inputs(tok):
    t = [_T10]
    with pytest.raises(ValueError, match=r"stride=4 is too large for max_length=6: .* 4 tokens of the text .*"
                                         r"a stride below 4 or a max_length of at least 7"):
        tok(t, truncation=True, max_length=6, stride=4, return_overflowing_tokens=True)
    with pytest.raises(ValueError, match="stride=5 is too large for max_length=6"):  # HF: ValueError too
        tok(t, truncation=True, max_length=6, stride=5, return_overflowing_tokens=True)
    with pytest.raises(ValueError, match="stride=3 is too large for max_length=6: .* 3 tokens of the pair"):
        tok(t, t, truncation="only_second", max_length=6, stride=3, return_overflowing_tokens=True)
    with pytest.raises(ValueError, match="stride=1 is too large for max_length=2: .*use stride=0 or a max_length "
                                         "of at least 4"):
        tok(t, truncation=True, max_length=2, stride=1, return_overflowing_tokens=True)
    with pytest.raises(ValueError, match="stride=3 is too large for max_length=4: transformers refuses a stride "
                                         "above max_length - 2 even without special tokens"):
        tok(t, truncation=True, max_length=4, stride=3, return_overflowing_tokens=True, add_special_tokens=False)
    with pytest.raises(ValueError, match="stride=600 is too large for max_length=512"):  # model_max_length
        tok(t, truncation=True, stride=600, return_overflowing_tokens=True)
    with pytest.raises(ValueError, match="stride .* must be an int >= 0"):
        tok(t, truncation=True, max_length=6, stride=-1, return_overflowing_tokens=True)
    with pytest.raises(TypeError, match="stride"):
        tok(t, truncation=True, max_length=6, stride=2.0, return_overflowing_tokens=True)
    with pytest.raises(TypeError, match="stride"):
        tok(t, truncation=True, max_length=6, stride=None, return_overflowing_tokens=True)
    with pytest.raises(ValueError, match="max_length=1 is too small"):
        tok(t, truncation=True, max_length=1, return_overflowing_tokens=True)
    with pytest.raises(ValueError, match="not a multiple of pad_to_multiple_of"):
        tok(t, truncation=True, max_length=6, stride=2, return_overflowing_tokens=True, padding=True,
            pad_to_multiple_of=4)
    with pytest.raises(ValueError, match="Unable to create a np tensor"):
        tok([_T10, "x"], truncation=True, max_length=6, stride=2, return_overflowing_tokens=True, return_tensors="np")
    with pytest.raises(ValueError, match="text 1 of the batch: .*surrogate"):
        tok(["ok", "bad \ud800 text"], truncation=True, max_length=6, stride=2, return_overflowing_tokens=True)
    with pytest.raises(TypeError, match=r"text\[1\] is None"):
        tok(["ok", None], truncation=True, max_length=6, stride=2, return_overflowing_tokens=True)


def test_too_many_windows_is_refused_before_allocating(tok, monkeypatch):
    import lyricnn.tokenizer as T
    monkeypatch.setattr(T, "MAX_PADDED_CELLS", 1000)
    text = "word " * 400
    tok([text], truncation=True, max_length=64, stride=0, return_overflowing_tokens=True)  # ~470 ids: fine
    with pytest.raises(ValueError, match=r"would hold \d+ ids per array \(\d+ windows of 1 texts padded\).*"
                                         r"larger max_length - stride"):
        tok([text], truncation=True, max_length=64, stride=61, return_overflowing_tokens=True, padding="max_length")
    with pytest.raises(ValueError, match=r"would hold \d+ ids per array \(\d+ windows of 1 texts\)"):
        tok([text], truncation=True, max_length=64, stride=61, return_overflowing_tokens=True)


# --------------------------------------------------------------------------- head_tail (lyricnn's own)
def test_head_tail(tok, hf_fast, songs):
    """truncation='head_tail': [CLS] + the first h tokens + the last L-2-h + [SEP], cut from the untruncated
    encoding (HF's ids and offsets of the whole text); texts that fit are untouched."""
    sub = songs[::13] + ["", "short one"]
    L, h = 128, 32
    full = _hf(hf_fast, sub, add_special_tokens=False, return_offsets_mapping=True)[0]
    e = tok(sub, truncation="head_tail", max_length=L, head_tokens=h, return_offsets_mapping=True, padding=True,
            return_tensors="np")
    assert e["input_ids"].shape == (len(sub), L)
    for i in range(len(sub)):
        ids, offs = full["input_ids"][i], full["offset_mapping"][i]
        keep = list(range(len(ids))) if len(ids) <= L - 2 else list(range(h)) + list(range(len(ids) - (L - 2 - h),
                                                                                        len(ids)))
        want = [101] + [ids[k] for k in keep] + [102]
        n = len(want)
        assert e["input_ids"][i, :n].tolist() == want and not e["input_ids"][i, n:].any()
        assert e["attention_mask"][i].sum() == n
        assert [tuple(x) for x in e["offset_mapping"][i, 1:n - 1].tolist()] == [offs[k] for k in keep]
    # head_tokens = 0: the tail only; = L - 2: the head only (truncation=True)
    a = tok(sub, truncation="head_tail", max_length=L, head_tokens=0)["input_ids"]
    tl = tok.truncation_side
    tok.truncation_side = "left"
    try:
        b = tok(sub, truncation=True, max_length=L)["input_ids"]
    finally:
        tok.truncation_side = tl
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    a = tok(sub, truncation="head_tail", max_length=L, head_tokens=L - 2)["input_ids"]
    b = tok(sub, truncation=True, max_length=L)["input_ids"]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    # default head_tokens: 128 (Sun et al. 2019 at 512)
    d = tok(songs[:50], truncation="head_tail", max_length=512)["input_ids"]
    x = tok(songs[:50], truncation="head_tail", max_length=512, head_tokens=128)["input_ids"]
    assert all(np.array_equal(p, q) for p, q in zip(d, x))


def test_head_tail_bad_inputs(tok):
    with pytest.raises(ValueError, match="head_tokens=128 is too large for max_length=64: .* head_tokens <= 62"):
        tok(["a b"], truncation="head_tail", max_length=64)
    with pytest.raises(ValueError, match="takes single texts, not pairs"):
        tok(["a b"], ["c"], truncation="head_tail", max_length=64, head_tokens=8)
    with pytest.raises(ValueError, match="does not combine with return_overflowing_tokens"):
        tok(["a b"], truncation="head_tail", max_length=64, head_tokens=8, return_overflowing_tokens=True)
    with pytest.raises(ValueError, match="only used with truncation='head_tail'"):
        tok(["a b"], truncation=True, max_length=64, head_tokens=8)
    with pytest.raises(ValueError, match="head_tokens .* must be an int >= 0"):
        tok(["a b"], truncation="head_tail", max_length=64, head_tokens=-1)
