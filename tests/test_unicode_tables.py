"""Exhaustive check of csrc/io/unicode_tables.c against the live Rust `tokenizers`.

A tiny C driver (tests/unicode_tables_driver.c) dumps the tables for every code point. From them the
test composes, per code point and per option combination, what BertNormalizer and BertPreTokenizer
must output, and compares with `tokenizers` for ALL code points (surrogates excepted). Multi-char
strings check NFD canonical reordering (the combining classes) where strip_accents keeps the marks.
"""
import os
import random
import shutil
import subprocess

import numpy as np
import pytest

tokenizers = pytest.importorskip("tokenizers", reason="the oracle `tokenizers` is not installed")
from tokenizers.normalizers import BertNormalizer  # noqa: E402
from tokenizers.pre_tokenizers import BertPreTokenizer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTROL, WHITESPACE, PUNCT, CJK, MN = 1, 2, 4, 8, 16
MAXCP = 0x110000
REC = np.dtype([("flags", "u1"), ("ccc", "u1"), ("n_nfd", "u1"), ("n_lower", "u1"),
                ("nfd", "<u4", 4), ("lower", "<u4", 3)])
SEP = "#@#"
CPS = [c for c in range(MAXCP) if not 0xD800 <= c <= 0xDFFF]


def _compiler():
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class Tables:
    def __init__(self, recs):
        self.flags = recs["flags"].astype(np.int64).tolist()
        self.ccc = recs["ccc"].tolist()
        self.nfd, self.lower = {}, {}
        n_nfd, nfd, n_low, low = recs["n_nfd"], recs["nfd"], recs["n_lower"], recs["lower"]
        idx = np.arange(MAXCP)
        for c in np.nonzero((n_nfd != 1) | (nfd[:, 0] != idx))[0].tolist():
            self.nfd[c] = "".join(map(chr, nfd[c, :n_nfd[c]].tolist()))
        for c in np.nonzero((n_low != 1) | (low[:, 0] != idx))[0].tolist():
            self.lower[c] = "".join(map(chr, low[c, :n_low[c]].tolist()))

    # -- composition of the normalizer from the tables (what the C tokenizer does) --
    def clean(self, s):
        out = []
        for ch in s:
            f = self.flags[ord(ch)]
            out.append("" if f & CONTROL else " " if f & WHITESPACE else ch)
        return "".join(out)

    def chinese(self, s):
        return "".join(" %s " % ch if self.flags[ord(ch)] & CJK else ch for ch in s)

    def strip(self, s, reorder=True):
        seq = [ord(x) for ch in s for x in self.nfd.get(ord(ch), ch)]
        if reorder:  # canonical ordering: stable sort of each run of non-starters by ccc
            i = 0
            while i < len(seq):
                j = i
                while j < len(seq) and self.ccc[seq[j]]:
                    j += 1
                if j > i:
                    seq[i:j] = sorted(seq[i:j], key=self.ccc.__getitem__)
                i = j + 1
        return "".join(chr(x) for x in seq if not self.flags[x] & MN)

    def lowercase(self, s):
        return "".join(self.lower.get(ord(ch), ch) for ch in s)

    def normalize(self, s, clean_text, handle_chinese_chars, strip_accents, lowercase):
        if strip_accents is None:
            strip_accents = lowercase
        if clean_text:
            s = self.clean(s)
        if handle_chinese_chars:
            s = self.chinese(s)
        if strip_accents:
            s = self.strip(s)
        if lowercase:
            s = self.lowercase(s)
        return s


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    cc = _compiler()
    if cc is None:
        pytest.skip("no C compiler (cc/gcc/clang) on PATH to build the table driver")
    d = tmp_path_factory.mktemp("uc")
    exe = str(d / "driver")
    r = subprocess.run([cc, "-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-I", os.path.join(ROOT, "csrc"),
                        os.path.join(ROOT, "tests", "unicode_tables_driver.c"),
                        os.path.join(ROOT, "csrc", "io", "unicode_tables.c"), "-o", exe],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([exe], capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    recs = np.frombuffer(r.stdout, dtype=REC)
    assert recs.shape == (MAXCP,)
    return Tables(recs)


def rust_outputs(normalizer, strings, chunk=1 << 15):
    """normalize_str of each string, batched with a separator the normalizer leaves alone."""
    out = []
    for i in range(0, len(strings), chunk):
        part = strings[i:i + chunk]
        res = normalizer.normalize_str(SEP.join(part)).split(SEP)
        if len(res) != len(part):
            res = [normalizer.normalize_str(s) for s in part]
        out.extend(res)
    for k, s in enumerate(out):  # an output that itself holds '#'/'@': redo it alone
        if "#" in s or "@" in s:
            out[k] = normalizer.normalize_str(strings[k])
    return out


def _report(bad):
    return "%d code points differ, first: %s" % (
        len(bad), ["U+%04X rust=%r tables=%r" % b for b in bad[:12]])


CONFIGS = [  # (clean_text, handle_chinese_chars, strip_accents, lowercase)
    (True, False, False, False),
    (False, True, False, False),
    (False, False, True, False),
    (False, False, False, True),
    (True, True, None, True),    # BertNormalizer() default = distilbert/bert-base-uncased
    (True, True, None, False),   # cased BERT (strip_accents unset -> off)
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "clean%d-cjk%d-strip%s-lower%d" % (
    c[0], c[1], {None: "Unset", True: "1", False: "0"}[c[2]], c[3]))
def test_normalizer_every_code_point(tables, config):
    kw = dict(zip(("clean_text", "handle_chinese_chars", "strip_accents", "lowercase"), config))
    chars = [chr(c) for c in CPS]
    got = rust_outputs(BertNormalizer(**kw), chars)
    bad = []
    for ch, r in zip(chars, got):
        t = tables.normalize(ch, **kw)
        if t != r:
            bad.append((ord(ch), r, t))
    assert not bad, _report(bad)


def test_pretokenizer_every_code_point(tables):
    """'a'+c+'a' for every c: whitespace is removed, punctuation isolated, anything else joins the word."""
    pt = BertPreTokenizer()
    bad = []
    chunk = 1 << 16
    for i in range(0, len(CPS), chunk):
        part = CPS[i:i + chunk]
        s = "a" + "a".join(map(chr, part)) + "a"
        cls = ["ws"] * len(part)  # char k sits at 2k+1; covered by no word -> whitespace
        for _, (b, e) in pt.pre_tokenize_str(s):
            if e - b == 1 and b % 2 == 1:
                cls[b // 2] = "punct"
            else:
                for pos in range(b | 1, e, 2):
                    cls[pos // 2] = "word"
        for c, r in zip(part, cls):
            f = tables.flags[c]
            t = "ws" if f & WHITESPACE else "punct" if f & PUNCT else "word"
            if t != r:
                bad.append((c, r, t))
    assert not bad, _report(bad)


def test_known_rust_facts(tables):
    """Facts from the reference data README, where Rust differs from Python's unicodedata."""
    assert not tables.flags[0x378] & CONTROL            # unassigned U+0378 is kept
    assert tables.flags[0x20000] & CJK and tables.flags[0x2A6DF] & CJK   # CJK Ext-B padded per char
    assert tables.lower[0x3A3] == "\u03c3"              # capital sigma -> sigma, never final sigma
    assert tables.lower[0x130] == "i\u0307"             # one char -> two
    assert tables.normalize("\u0130", True, True, None, True) == "i"   # NFD + drop Mn before lowercasing
    for c in (0, 0xFFFD, 0x7F, 0x85, 0x200B, 0xFEFF, 0xE000):
        assert tables.flags[c] & CONTROL, hex(c)
    for c in (9, 10, 13):
        assert not tables.flags[c] & CONTROL and tables.flags[c] & WHITESPACE
    assert tables.nfd[0xAC01] == "\u1100\u1161\u11a8"    # Hangul, algorithmic
    assert tables.nfd[0x1F82] == "\u03b1\u0313\u0300\u0345"  # a 4-long full decomposition


def _keepers(tables):
    """Code points whose stripped NFD keeps a non-starter: where canonical order is observable."""
    return [c for c in CPS
            if any(tables.ccc[ord(x)] and not tables.flags[ord(x)] & MN for x in tables.nfd.get(c, chr(c)))]


def test_nfd_reordering_examples(tables):
    norm = BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False)
    cases = [
        "a\u0301\u0316",                       # two Mn: reordered then both dropped
        "x\U0001D16D\U0001D165",               # Mc ccc 226 then Mc ccc 216 -> swapped
        "x\U0001D16D\u0301\U0001D165\u0316",   # Mc and Mn mixed
        "\U0001D160\U0001D165",                # decomposes to 1D158 1D165 1D16E, then 1D165
        "\U0001D16E\U0001D165\U0001D16D\U0001D166",
        "e\u0301\U0001D16D\U0001D165 \u00e9",
    ]
    for s in cases:
        assert tables.strip(s) == norm.normalize_str(s), ascii(s)
    # the combining class matters: without reordering these would come out wrong
    assert norm.normalize_str("x\U0001D16D\U0001D165") == "x\U0001D165\U0001D16D"
    assert tables.strip("x\U0001D16D\U0001D165", reorder=False) != norm.normalize_str("x\U0001D16D\U0001D165")
    keep = _keepers(tables)
    assert 0x1D165 in keep and len(keep) > 50


def test_nfd_reordering_all_pairs_and_random(tables):
    """Every pair of keepers, and random strings of keepers, marks and starters, under strip_accents
    and the default normalizer."""
    keep = [chr(c) for c in _keepers(tables)]
    strings = [x + y for x in keep for y in keep]
    rng = random.Random(1234)
    marks = [chr(c) for c in (0x300, 0x301, 0x316, 0x327, 0x345, 0x5B0, 0x93C, 0x94D, 0x0F71, 0x0F72, 0x0F74)]
    starters = list("aEzÅ\u1e69\uac01\u4e00 ") + ["\u0130", "\u03a3"]
    pool = keep + marks + starters
    for _ in range(3000):
        strings.append("".join(rng.choice(pool) for _ in range(rng.randint(2, 8))))
    for kw in (dict(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False),
               dict(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)):
        got = rust_outputs(BertNormalizer(**kw), strings)
        bad = [(s, r, tables.normalize(s, **kw)) for s, r in zip(strings, got) if tables.normalize(s, **kw) != r]
        assert not bad, "%d strings differ, first: %s" % (len(bad), [ascii(b) for b in bad[:8]])


def test_generated_files_are_committed_form():
    """The generated C names its generator and how to regenerate it."""
    for name in ("unicode_tables.h", "unicode_tables.c"):
        with open(os.path.join(ROOT, "csrc", "io", name)) as f:
            head = f.read(400)
        assert "GENERATED by tools/gen_unicode.py" in head and "Regenerate" in head
