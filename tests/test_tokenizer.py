"""lyricnn.Tokenizer against the live Hugging Face oracles (tokenizers / transformers BertTokenizerFast):
the 244 hard cases (and their stored Rust outputs), every text of the real corpora, seeded random Unicode,
pairs x truncation x padding, offsets, decode, loaders and bad inputs."""
import ast
import glob
import json
import os
import random
import warnings

import numpy as np
import pytest

from conftest import shared_path

import lyricnn
from lyricnn import CheckpointError
from lyricnn.tokenizer import BatchEncoding, Tokenizer

tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")



@pytest.fixture(scope="module")
def tok():
    return Tokenizer.from_pretrained("bert-base-uncased")


def _hf_dir():
    return shared_path("distilbert-base-uncased")


@pytest.fixture(scope="module")
def hf_fast():
    d = _hf_dir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.BertTokenizerFast.from_pretrained(str(d))


@pytest.fixture(scope="module")
def hf_rust():
    return tokenizers.Tokenizer.from_file(str(_hf_dir() / "tokenizer.json"))


def _rust_encode(hf_rust, texts, max_length=None, pairs=None):
    if max_length:
        hf_rust.enable_truncation(max_length)
    else:
        hf_rust.no_truncation()
    hf_rust.no_padding()
    try:
        if pairs is None:
            return hf_rust.encode_batch(list(texts))
        return hf_rust.encode_batch(list(zip(texts, pairs)))
    finally:
        hf_rust.no_truncation()


def _ids(enc):
    return [np.asarray(x).tolist() for x in enc["input_ids"]]


# --------------------------------------------------------------------------- reference cases
def _tricky():
    d = shared_path("tokenizer-reference")
    rows = [json.loads(l) for l in open(d / "tricky_texts.jsonl", encoding="utf-8")]
    ref = [json.loads(l) for l in open(d / "tricky_ref_rust.jsonl", encoding="utf-8")]
    ref32 = [json.loads(l) for l in open(d / "tricky_ref_rust_max32_pad.jsonl", encoding="utf-8")]
    assert len(rows) == len(ref) == len(ref32) == 244
    return [r["text"] for r in rows], ref, ref32


def test_reference_cases_stored_rust_outputs(tok):
    texts, ref, ref32 = _tricky()
    enc = tok(texts, truncation=True, max_length=512)
    for i, r in enumerate(ref):
        assert enc["input_ids"][i].tolist() == r["input_ids"], (i, texts[i])
        assert enc["attention_mask"][i].tolist() == r["attention_mask"]
        assert tok.convert_ids_to_tokens(enc["input_ids"][i]) == r["tokens"], i
    e32 = tok(texts, truncation=True, max_length=32, padding="max_length")
    assert e32["input_ids"].shape == (244, 32)
    assert e32["input_ids"].tolist() == [r["input_ids"] for r in ref32]
    assert e32["attention_mask"].tolist() == [r["attention_mask"] for r in ref32]


def test_reference_cases_live_with_offsets(tok, hf_fast):
    texts, _, _ = _tricky()
    h = hf_fast(texts, return_offsets_mapping=True, return_special_tokens_mask=True)
    e = tok(texts, return_offsets_mapping=True, return_special_tokens_mask=True)
    for i in range(len(texts)):
        assert e["input_ids"][i].tolist() == h["input_ids"][i], i
        assert e["token_type_ids"][i].tolist() == h["token_type_ids"][i]
        assert [tuple(x) for x in e["offset_mapping"][i].tolist()] == h["offset_mapping"][i], (i, texts[i])
        assert e["special_tokens_mask"][i].tolist() == h["special_tokens_mask"][i]
    # one at a time gives the same as the batch
    for i in range(0, len(texts), 7):
        s = tok(texts[i], return_offsets_mapping=True)
        assert s["input_ids"].tolist() == e["input_ids"][i].tolist()
        assert s["offset_mapping"].tolist() == e["offset_mapping"][i].tolist()
        assert tok.tokenize(texts[i]) == hf_fast.tokenize(texts[i])


# --------------------------------------------------------------------------- real corpora
def _csv(path, cols, **kw):
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(path, **kw)
    out = []
    for c in cols:
        if c in df:
            out += [t for t in df[c].tolist() if isinstance(t, str)]
    return out


def _musicoset(path):
    """TAB-separated song_id, lyrics; lyrics is a quoted Python-list repr (the last row is cut short)."""
    out = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")[1:]
    for line in lines:
        if "\t" not in line:
            continue
        s = line.split("\t", 1)[1]
        if s.startswith('"'):
            s = s[1:-1] if s.endswith('"') and len(s) > 1 else s[1:]
            s = s.replace('""', '"')
        if not s.strip():
            continue
        try:
            v = ast.literal_eval(s)
            out.append("\n".join(v) if isinstance(v, list) else str(v))
        except (ValueError, SyntaxError):
            out.append(s)
    return out


CORPORA = {
    "song_lyrics_21_artists": lambda d: sum((_csv(f, ["Lyric", "lyrics", "Title", "title", "Album"])
                                             for f in sorted(glob.glob(str(d / "*.csv")))), []),
    "taylor_swift": lambda d: _csv(d / "songs.csv", ["Title", "Album", "Lyrics"])
    + _csv(d / "lyrics.csv", ["Song", "Album", "Lyric", "Previous Lyric", "Next Lyric"]),
    "musicoset": lambda d: _musicoset(d / "lyrics.csv"),
    "disaster_tweets": lambda d: _csv(d / "train.csv", ["keyword", "location", "text"])
    + _csv(d / "test.csv", ["keyword", "location", "text"]),
    "pd_poets": lambda d: _csv(d / "pd_poets.csv", ["text", "title"]),
    "pd_songs_hymns_rhymes": lambda d: _csv(d / "pd_songs_hymns_rhymes.csv", ["text", "title"]),
}


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_real_corpus_matches_100_percent(tok, hf_rust, name):
    d = shared_path("datasets", name)
    texts = CORPORA[name](d)
    assert len(texts) > 100
    ref = _rust_encode(hf_rust, texts, max_length=512)
    enc = tok(texts, truncation=True, max_length=512)
    bad = [i for i, r in enumerate(ref) if enc["input_ids"][i].tolist() != r.ids]
    assert not bad, "%d/%d texts differ, first %r" % (len(bad), len(texts), texts[bad[0]][:200])
    # offsets on a subset (untruncated)
    sub = texts[::17]
    ref = _rust_encode(hf_rust, sub)
    enc = tok(sub, return_offsets_mapping=True)
    for i, r in enumerate(ref):
        assert enc["input_ids"][i].tolist() == r.ids
        assert [tuple(x) for x in enc["offset_mapping"][i].tolist()] == r.offsets, sub[i][:200]


# --------------------------------------------------------------------------- random unicode
_POOLS = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    " \t\n\r\x0b\x0c\u00a0\u1680\u2000\u2003\u200a\u2028\u2029\u202f\u205f\u3000\u0085\u200b\ufeff",
    ".,;:!?'\"()[]{}<>-_/\\@#$%^&*+=~`|\u00a1\u00bf\u2014\u2026\u3001\u3002\u00ab\u00bb\u2018\u2019\u201c\u201d",
    "\u00e9\u00e8\u00ea\u00eb\u00c0\u00c9\u00d1\u00f1\u00fc\u00df\u0130\u0131\u03a3\u03c3\u03c2\u0394\u1e9e\u01c5\u2126",
    "\u0300\u0301\u0302\u0308\u0316\u0327\u0345\u034f\u0591\u05b0\u093c\u0e38\u302a\u1dc0\u20d0"
    "\u302e\u302f\U0001d165\U0001d16d\U00016ff0\u0f39\u0903\u20dd",  # kept marks with ccc (Mc, Me)
    "\u4e00\u4e8c\u4e09\u6587\u5b57\u3042\u3044\u30a2\u30ab\uac00\ud55c\uae00\uf900\ufa30\u3400",
    "\U00020000\U0002a700\U0002f800\U0001f600\U0001f44d\U0001f3fd\u200d\u2764\ufe0f\U0001f468\U0001f469\U0001f467",
    "\u0410\u0411\u0430\u0431\u0628\u062a\u0915\u0916\u0e01\u05d0\u10d0\u0531\u1100\u1161\u11a8",
    "\x00\x01\x07\x1b\x7f\x80\x9f\u00ad\u200e\u2066\ue000\U000f0000\ufffd\u0378\u0380\U000e0001\ufff0",
    "[CLS][SEP][MASK][PAD][UNK][mask] ##",
    "\u2160\u24b6\u00bd\u00b2\ufb01\u1e9b\u0149\u01f0\u0390\u1f80\u212b\u00c5\u0041\u030a",
]


def _random_texts(seed, n, maxlen=60):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(0, maxlen)
        pools = rng.sample(_POOLS, rng.randint(1, 4))
        s = "".join(rng.choice(rng.choice(pools)) for _ in range(k))
        if rng.random() < 0.1:  # very long words
            s += " " + "".join(rng.choice("abcxyz\u00e9") for _ in range(rng.randint(95, 130)))
        if rng.random() < 0.05:
            s += " " + "".join(chr(rng.randint(0x80, 0x2FFFF)) for _ in range(20)).replace("\ud800", "")
        if rng.random() < 0.05:  # long runs of combining marks (canonical reordering of > 32 marks)
            s += rng.choice("ae\u00e9 ") + "".join(rng.choice(_POOLS[4] + "\u00e9\u0344") for _ in range(rng.randint(20, 80)))
        out.append("".join(c for c in s if not 0xD800 <= ord(c) <= 0xDFFF))
    return out


def _variant(hf_rust, **norm):
    t = tokenizers.Tokenizer.from_str(hf_rust.to_str())
    t.normalizer = tokenizers.normalizers.BertNormalizer(**norm)
    return t


@pytest.mark.parametrize("variant", [
    dict(),
    dict(lowercase=False, strip_accents=False),
    dict(lowercase=False, strip_accents=True),
    dict(lowercase=True, strip_accents=False),
    dict(lowercase=True, handle_chinese_chars=False, clean_text=False),
])
def test_random_unicode_texts(hf_rust, variant):
    ref_tok = _variant(hf_rust, **variant) if variant else hf_rust
    kw = dict(do_lower_case=variant.get("lowercase", True), strip_accents=variant.get("strip_accents"),
              tokenize_chinese_chars=variant.get("handle_chinese_chars", True),
              clean_text=variant.get("clean_text", True))
    vocab = [l.rstrip("\n") for l in open(_hf_dir() / "vocab.txt", encoding="utf-8")]
    t = Tokenizer(vocab, **kw)
    texts = _random_texts(1234 + len(variant), 1500)
    ref = ref_tok.encode_batch(texts)
    enc = t(texts, return_offsets_mapping=True)
    for i, r in enumerate(ref):
        assert enc["input_ids"][i].tolist() == r.ids, (i, texts[i])
        assert [tuple(x) for x in enc["offset_mapping"][i].tolist()] == r.offsets, (i, texts[i])


# --------------------------------------------------------------------------- pairs, truncation, padding
_PAIR_TEXTS = ["Hello, world! How are you doing today?", "short", "", "a b c d e f g h i j k l m n o p",
               "Caf\u00e9 d\u00e9j\u00e0 vu \u4e2d\u6587 [MASK] emojis \U0001f600\U0001f600", "x " * 40]


def _hf_call(hf, *args, **kw):
    """(result, None) or (None, the oracle's exception); a pyo3 PanicException is a BaseException."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return hf(*args, **kw), None
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # noqa: BLE001 - the oracle's errors are compared by kind
            return None, e


@pytest.mark.parametrize("truncation", [None, False, True, "longest_first", "only_first", "only_second"])
@pytest.mark.parametrize("padding", [False, True, "longest", "max_length"])
def test_pairs_truncation_padding_matrix(tok, hf_fast, truncation, padding):
    rng = random.Random(7)
    a = [rng.choice(_PAIR_TEXTS) for _ in range(6)]
    b = [rng.choice(_PAIR_TEXTS) for _ in range(6)]
    for pairs, add in ((None, True), (b, True), (None, False), (b, False)):
        for max_length in (None, 3, 4, 5, 8, 13, 64):
            for mult in (None, 4):
                for side in ("right", "left"):
                    kw = dict(padding=padding, truncation=truncation, max_length=max_length, pad_to_multiple_of=mult,
                              add_special_tokens=add,
                              padding_side=side, return_offsets_mapping=True, return_special_tokens_mask=True,
                              return_length=True)
                    h, herr = _hf_call(hf_fast, a, pairs, **kw)
                    try:
                        e, err = tok(a, pairs, **kw), None
                    except (ValueError, TypeError) as ex:
                        e, err = None, ex
                    if herr is not None or err is not None:
                        if herr is None and err is not None and "too small for the" in str(err):
                            continue  # lyricnn rejects max_length < special tokens; HF silently skips truncation
                        assert herr is not None and err is not None, (kw, pairs is not None, herr, err)
                        continue
                    for k in ("input_ids", "token_type_ids", "attention_mask", "special_tokens_mask"):
                        assert [np.asarray(x).tolist() for x in e[k]] == h[k], (k, kw, pairs is not None)
                    assert [[tuple(o) for o in np.asarray(x).tolist()] for x in e["offset_mapping"]] == \
                        [list(map(tuple, x)) for x in h["offset_mapping"]]
                    assert np.asarray(e["length"]).tolist() == h["length"], kw


def test_single_text_and_no_special_tokens(tok, hf_fast):
    for text, pair in [("Hello there, General Kenobi!", None), ("first part", "second part"), ("", "")]:
        for add in (True, False):
            h = hf_fast(text, pair, add_special_tokens=add, return_offsets_mapping=True)
            e = tok(text, pair, add_special_tokens=add, return_offsets_mapping=True)
            assert e["input_ids"].ndim == 1
            assert e["input_ids"].tolist() == h["input_ids"]
            assert e["token_type_ids"].tolist() == h["token_type_ids"]
            assert [tuple(x) for x in e["offset_mapping"].tolist()] == h["offset_mapping"]
            assert tok.encode(text, pair, add_special_tokens=add) == hf_fast.encode(text, pair, add_special_tokens=add)


def test_max_length_too_small_is_an_error(tok):
    with pytest.raises(ValueError, match="max_length=1 is too small"):
        tok("hello world", truncation=True, max_length=1)
    with pytest.raises(ValueError, match="pair"):
        tok("hello", "world", truncation=True, max_length=2)
    with pytest.raises(ValueError, match="Second sequence not provided"):
        tok("hello world foo bar", truncation="only_second", max_length=5)
    with pytest.raises(ValueError, match="too short"):
        tok("hello world foo", "a b c d e f", truncation="only_first", max_length=8)
    with pytest.raises(ValueError, match="multiple of pad_to_multiple_of"):
        tok(["a"], padding=True, truncation=True, max_length=10, pad_to_multiple_of=4)


# --------------------------------------------------------------------------- offsets
def test_offsets_special_tokens_accents_cjk_emoji(tok, hf_fast):
    texts = ["hi [MASK] there[SEP]x", "Cafe\u0301 na\u00efve \u00c5ngstr\u00f6m", "\u4e2d\u6587abc\u6587",
             "\U0001f468\u200d\U0001f469\u200d\U0001f467 family \U0001f600!", "[CLS][CLS] [UNK]x[PAD]",
             "\u0130stanbul \u1e9e \ufb01", "a\u0301\u0316\u0302b"]
    e = tok(texts, return_offsets_mapping=True)
    h = hf_fast(texts, return_offsets_mapping=True)
    assert _ids(e) == h["input_ids"]
    assert [[tuple(o) for o in x.tolist()] for x in e["offset_mapping"]] == h["offset_mapping"]
    assert tok("hi [MASK] there")["input_ids"].tolist() == [101, 7632, 103, 2045, 102]


# --------------------------------------------------------------------------- decode
def test_decode_matches_oracle(tok, hf_fast):
    texts, _, _ = _tricky()
    for skip in (False, True):
        for cu in (None, False, True):
            for t in texts[::3]:
                ids = hf_fast(t)["input_ids"]
                assert tok.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=cu) == \
                    hf_fast.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=cu), t
    rng = np.random.default_rng(0)
    seqs = rng.integers(0, tok.vocab_size, size=(50, 12))
    assert tok.batch_decode(seqs) == hf_fast.batch_decode(seqs.tolist())
    assert tok.batch_decode(seqs, skip_special_tokens=True) == hf_fast.batch_decode(seqs.tolist(),
                                                                                     skip_special_tokens=True)
    # round trip on plain lowercase text
    s = "the quick brown fox jumps over the lazy dog, doesn't it?"
    assert tok.decode(tok.encode(s), skip_special_tokens=True, clean_up_tokenization_spaces=True) == \
        hf_fast.decode(hf_fast.encode(s), skip_special_tokens=True, clean_up_tokenization_spaces=True)


def test_token_conversions(tok, hf_fast):
    toks = ["hello", "##ing", "[MASK]", "notaword", "[CLS]"]
    assert tok.convert_tokens_to_ids(toks) == hf_fast.convert_tokens_to_ids(toks)
    assert tok.convert_tokens_to_ids("hello") == hf_fast.convert_tokens_to_ids("hello")
    ids = [101, 7592, 2088, 102, 0]
    assert tok.convert_ids_to_tokens(ids) == hf_fast.convert_ids_to_tokens(ids)
    assert tok.convert_ids_to_tokens(ids, skip_special_tokens=True) == \
        hf_fast.convert_ids_to_tokens(ids, skip_special_tokens=True)
    assert tok.convert_ids_to_tokens(7592) == "hello"
    assert len(tok) == len(hf_fast) and tok.vocab_size == hf_fast.vocab_size
    for name in ("pad_token_id", "cls_token_id", "sep_token_id", "unk_token_id", "mask_token_id", "cls_token"):
        assert getattr(tok, name) == getattr(hf_fast, name)
    assert tok.convert_ids_to_tokens([10 ** 6]) == hf_fast.convert_ids_to_tokens([10 ** 6]) == [None]
    assert tok.decode([7592, 10 ** 6, 2088]) == hf_fast.decode([7592, 10 ** 6, 2088]) == "hello world"
    with pytest.raises(ValueError, match=">= 0"):
        tok.decode([-1])


# --------------------------------------------------------------------------- inputs and outputs
def test_input_types_and_output_shapes(tok):
    pd = pytest.importorskip("pandas")
    texts = ["Hello world", "Good morning, sunshine!", "\u00e9t\u00e9"]
    ref = tok(texts, padding=True)
    assert isinstance(ref, BatchEncoding) and ref.input_ids is ref["input_ids"]
    assert ref["input_ids"].dtype == np.int64 and ref["input_ids"].ndim == 2
    for alt in (tuple(texts), np.array(texts), np.array(texts, dtype=object), pd.Series(texts, index=[5, 9, 2])):
        e = tok(alt, padding=True)
        for k in ref:
            assert np.array_equal(e[k], ref[k]), (type(alt), k)
    e32 = tok(texts, padding="max_length", max_length=16, truncation=True, dtype=np.int32)
    assert e32["input_ids"].dtype == np.int32 and e32["input_ids"].shape == (3, 16)
    un = tok(texts)
    assert isinstance(un["input_ids"], list) and [len(x) for x in un["input_ids"]] == [4, 7, 4]
    one = tok("Hello world")
    assert one["input_ids"].tolist() == [101, 7592, 2088, 102] and one["attention_mask"].ndim == 1
    assert tok(np.array("Hello world"))["input_ids"].tolist() == [101, 7592, 2088, 102]
    d = Tokenizer.from_pretrained("distilbert-base-uncased")
    assert "token_type_ids" not in d(texts) and "token_type_ids" in d(texts, return_token_type_ids=True)
    assert tok([], padding=True)["input_ids"].shape[0] == 0
    with pytest.raises(ValueError, match="different lengths"):
        tok(texts, return_tensors="np")


def test_batch_equals_single_and_thread_counts(tok):
    texts = _random_texts(99, 300, maxlen=200)
    n0 = lyricnn.get_num_threads()
    try:
        lyricnn.set_num_threads(1)
        e1 = tok(texts, return_offsets_mapping=True)
        lyricnn.set_num_threads(max(2, n0))
        e2 = tok(texts, return_offsets_mapping=True)
    finally:
        lyricnn.set_num_threads(n0)
    for i, t in enumerate(texts):
        s = tok(t, return_offsets_mapping=True)
        assert e1["input_ids"][i].tolist() == e2["input_ids"][i].tolist() == s["input_ids"].tolist()
        assert e1["offset_mapping"][i].tolist() == s["offset_mapping"].tolist()


# --------------------------------------------------------------------------- bad inputs
def test_bad_texts_name_the_position(tok):
    with pytest.raises(TypeError, match=r"text\[1\] is None"):
        tok(["ok", None])
    with pytest.raises(TypeError, match=r"text\[2\] is NaN"):
        tok(["ok", "fine", float("nan")])
    with pytest.raises(TypeError, match=r"text\[0\] is of type int"):
        tok([3])
    pd = pytest.importorskip("pandas")
    with pytest.raises(TypeError, match=r"text\[1\] is a missing value"):
        tok(pd.Series(["a", pd.NA], dtype="string"))
    with pytest.raises(TypeError, match=r"text_pair\[1\]"):
        tok(["a", "b"], ["c", 5])
    with pytest.raises(ValueError, match=r"text 1 of the batch: lone surrogate U\+D83D at index 3"):
        tok(["fine", "abc\ud83d"])
    with pytest.raises(ValueError, match=r"lone surrogate U\+DC00 at index 0"):
        tok("\udc00x")
    with pytest.raises(TypeError, match="text is None"):
        tok(None)
    with pytest.raises(TypeError, match="must be a str"):
        tok(12)
    with pytest.raises(ValueError, match="padding must be"):
        tok("a", padding="bogus")
    with pytest.raises(ValueError, match="truncation must be"):
        tok("a", truncation="bogus")
    with pytest.raises(ValueError, match="one pair per text"):
        tok(["a", "b"], ["c"])


# --------------------------------------------------------------------------- loading
def test_from_pretrained_sources(tmp_path, hf_fast, monkeypatch):
    texts = ["Hello, World! \u00c9t\u00e9 [MASK]", "\u4e2d\u6587 emoji \U0001f600 sentence-final."]
    ref = hf_fast(texts)["input_ids"]
    # model dir with tokenizer.json (current format) and with vocab.txt only
    a = Tokenizer.from_pretrained(str(_hf_dir()))
    assert _ids(a(texts)) == ref and a.model_max_length == 512
    vdir = tmp_path / "vocab_only"
    vdir.mkdir()
    (vdir / "vocab.txt").write_bytes((_hf_dir() / "vocab.txt").read_bytes())
    assert _ids(Tokenizer.from_pretrained(vdir)(texts)) == ref
    # model fixtures (tokenizer.json + config)
    for m in ("tiny-random-bert-seqcls-encoderfile", "tiny-random-bert-lmhead-lmbuddy"):
        d = shared_path("models", m)
        assert _ids(Tokenizer.from_pretrained(d)(texts)) == ref
    # old compact tokenizer.json: minified, model without "type", BertProcessing post-processor
    j = json.loads((_hf_dir() / "tokenizer.json").read_text(encoding="utf-8"))
    j["model"].pop("type", None)
    j.pop("version", None)
    j["post_processor"] = {"type": "BertProcessing", "sep": ["[SEP]", 102], "cls": ["[CLS]", 101]}
    cdir = tmp_path / "compact"
    cdir.mkdir()
    (cdir / "tokenizer.json").write_text(json.dumps(j, separators=(",", ":")), encoding="utf-8")
    c = Tokenizer.from_pretrained(cdir)
    assert _ids(c(texts)) == ref
    oracle = tokenizers.Tokenizer.from_file(str(cdir / "tokenizer.json"))
    assert [e.ids for e in oracle.encode_batch(texts)] == ref
    # pickling rebuilds an identical tokenizer
    import pickle
    assert _ids(pickle.loads(pickle.dumps(c))(texts)) == ref
    # HF hub id from a local cache
    snap = tmp_path / "hub" / "models--someorg--somebert" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "tokenizer.json").write_bytes((_hf_dir() / "tokenizer.json").read_bytes())
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert _ids(Tokenizer.from_pretrained("someorg/somebert")(texts)) == ref
    with pytest.raises(OSError, match="huggingface-cli download"):
        Tokenizer.from_pretrained("nobody/nothing-here")


def test_cased_vocab(tmp_path):
    # a cased vocab: add capitalised forms to the uncased one, do_lower_case false
    base = [l.rstrip("\n") for l in open(_hf_dir() / "vocab.txt", encoding="utf-8")]
    seen = set(base)
    extra = [w.capitalize() for w in base[2000:6000] if w.isalpha() and w.capitalize() not in seen]
    vocab = base + extra + ["\u00c9t\u00e9", "##\u00e9"]
    d = tmp_path / "cased"
    d.mkdir()
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (d / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "model_max_length": 128}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = transformers.BertTokenizerFast.from_pretrained(str(d))
    t = Tokenizer.from_pretrained(d)
    assert not t.do_lower_case and t.model_max_length == 128
    texts = ["The Quick Brown Fox", "\u00c9t\u00e9 \u00e9t\u00e9 Caf\u00e9", "HELLO World [MASK] Paris"] + \
        _random_texts(5, 200)
    e = t(texts, return_offsets_mapping=True)
    h = hf(texts, return_offsets_mapping=True)
    assert _ids(e) == h["input_ids"]
    assert [[tuple(o) for o in x.tolist()] for x in e["offset_mapping"]] == h["offset_mapping"]
    # save_pretrained round trip: transformers and lyricnn load the saved files identically
    out = tmp_path / "saved"
    t.save_pretrained(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf2 = transformers.BertTokenizerFast.from_pretrained(str(out))
    assert hf2(texts)["input_ids"] == h["input_ids"]
    assert _ids(Tokenizer.from_pretrained(out)(texts)) == h["input_ids"]
    os.remove(out / "tokenizer.json")
    assert _ids(Tokenizer.from_pretrained(out)(texts)) == h["input_ids"]


def test_save_pretrained_uncased(tmp_path, tok, hf_fast):
    tok.save_pretrained(tmp_path)
    for f in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"):
        assert (tmp_path / f).is_file()
    texts, _, _ = _tricky()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf2 = transformers.BertTokenizerFast.from_pretrained(str(tmp_path))
    assert hf2(texts)["input_ids"] == hf_fast(texts)["input_ids"]
    assert hf2.model_max_length == 512


def _write(d, name, data):
    d.mkdir(exist_ok=True)
    (d / name).write_bytes(data)
    return d


def test_corrupt_vocab_files(tmp_path):
    good = (_hf_dir() / "vocab.txt").read_bytes()
    with pytest.raises(CheckpointError, match="not UTF-8"):
        Tokenizer.from_pretrained(_write(tmp_path / "a", "vocab.txt", good[:1000] + b"\xff\xfe" + good[1000:]))
    lines = good.split(b"\n")
    dup = b"\n".join(lines[:3000] + [lines[2500]] + lines[3000:])
    with pytest.raises(CheckpointError, match="duplicate token"):
        Tokenizer.from_pretrained(_write(tmp_path / "b", "vocab.txt", dup))
    nounk = b"\n".join(l for l in lines if l != b"[UNK]")
    with pytest.raises(CheckpointError, match="unk_token='\\[UNK\\]' is missing"):
        Tokenizer.from_pretrained(_write(tmp_path / "c", "vocab.txt", nounk))
    nomask = b"\n".join(l for l in lines if l != b"[MASK]")
    with pytest.raises(CheckpointError, match="mask_token"):
        Tokenizer.from_pretrained(_write(tmp_path / "d", "vocab.txt", nomask))
    with pytest.raises(CheckpointError, match="empty"):
        Tokenizer.from_pretrained(_write(tmp_path / "e", "vocab.txt", b""))
    with pytest.raises(CheckpointError, match="not valid JSON"):
        Tokenizer.from_pretrained(_write(tmp_path / "f", "tokenizer.json", b"{\"model\": {"))
    with pytest.raises(CheckpointError, match="neither tokenizer.json nor vocab.txt"):
        (tmp_path / "g").mkdir()
        Tokenizer.from_pretrained(tmp_path / "g")
    j = json.loads((_hf_dir() / "tokenizer.json").read_text(encoding="utf-8"))
    j["model"]["type"] = "BPE"
    with pytest.raises(CheckpointError, match="BPE"):
        Tokenizer.from_pretrained(_write(tmp_path / "h", "tokenizer.json", json.dumps(j).encode()))
    # wrong encoding of the whole file (UTF-16)
    with pytest.raises(CheckpointError, match="not UTF-8"):
        Tokenizer.from_pretrained(_write(tmp_path / "i", "vocab.txt", good.decode("utf-8").encode("utf-16")))


def test_random_corrupt_loader_inputs(tmp_path):
    """Randomly corrupted vocab.txt / tokenizer.json: a clean error or a working tokenizer, never a crash."""
    rng = random.Random(3)
    vocab = (_hf_dir() / "vocab.txt").read_bytes()[:20000] + b"\n[UNK]\n[SEP]\n[PAD]\n[CLS]\n[MASK]\n"
    tj = (_hf_dir() / "tokenizer.json").read_bytes()
    i = tj.index(b'"vocab"')
    tj = tj[:i + 2000]  # truncated: invalid
    for k in range(60):
        src = bytearray(vocab if k % 2 == 0 else tj)
        for _ in range(rng.randint(1, 20)):
            p = rng.randrange(len(src))
            src[p] = rng.randrange(256)
        d = _write(tmp_path / ("r%d" % k), "vocab.txt" if k % 2 == 0 else "tokenizer.json", bytes(src))
        try:
            t = Tokenizer.from_pretrained(d)
        except (CheckpointError, ValueError):
            continue
        t(["some text, [MASK] \u00e9t\u00e9", "x" * 300])


def test_two_tokenizers_and_python_threads(tok, hf_rust):
    """The per-thread word cache is tagged per tokenizer; concurrent calls (GIL released) agree."""
    import threading
    texts = ["Hello hello HELLO world, the quick brown fox " * 5 + str(i) for i in range(50)]
    vocab = [l.rstrip("\n") for l in open(_hf_dir() / "vocab.txt", encoding="utf-8")]
    cased = Tokenizer(vocab, do_lower_case=False)
    ref_cased = _variant(hf_rust, lowercase=False, strip_accents=False).encode_batch(texts)
    ref = hf_rust.encode_batch(texts)
    for _ in range(2):
        for t in texts[:5]:
            assert tok(t)["input_ids"].tolist() == ref[texts.index(t)].ids
            assert cased(t)["input_ids"].tolist() == ref_cased[texts.index(t)].ids
    results, errors = {}, []

    def work(k):
        try:
            tk = tok if k % 2 else cased
            results[k] = _ids(tk(texts * 4))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for k, ids in results.items():
        want = [r.ids for r in (ref if k % 2 else ref_cased)] * 4
        assert ids == want


def test_truncation_side_left(hf_fast):
    t = Tokenizer.from_pretrained("bert-base-uncased")
    t.truncation_side = "left"
    a = ["one two three four five six seven eight", "a b", "Caf\u00e9 \u4e2d\u6587 x y z w"]
    b = ["alpha beta gamma delta epsilon", "c d e f g h i j k", ""]
    try:
        hf_fast.truncation_side = "left"
        for pairs in (None, b):
            for strategy in ("longest_first", "only_first", "only_second"):
                for m in (4, 6, 9):
                    h, herr = _hf_call(hf_fast, a, pairs, truncation=strategy, max_length=m,
                                       return_offsets_mapping=True)
                    try:
                        e, err = t(a, pairs, truncation=strategy, max_length=m, return_offsets_mapping=True), None
                    except ValueError as ex:
                        e, err = None, ex
                    if herr is not None or err is not None:
                        assert herr is not None and err is not None, (strategy, m, herr, err)
                        continue
                    assert _ids(e) == h["input_ids"], (strategy, m, pairs is not None)
                    assert [[tuple(o) for o in x.tolist()] for x in e["offset_mapping"]] == h["offset_mapping"]
    finally:
        hf_fast.truncation_side = "right"
