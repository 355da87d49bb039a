#!/usr/bin/env python3
"""Generate csrc/io/unicode_tables.{h,c}: the Unicode tables of the C WordPiece tokenizer.

The tables must reproduce HF `tokenizers` (Rust) BertNormalizer + BertPreTokenizer exactly, for
every code point. The Rust crates use their own Unicode versions (the `unicode_categories` and
`unicode-normalization-alignments` crates are older than Python's unicodedata; lowercase follows the
Rust std of the build). So the generator:

  1. builds a baseline from Python's unicodedata (categories, NFD, combining class, str.lower);
  2. probes the live Rust oracle (`tokenizers.normalizers.BertNormalizer` with one option on at a time,
     and `tokenizers.pre_tokenizers.BertPreTokenizer`) for EVERY code point 0..0x10FFFF (surrogates
     skipped), plus every pair of the combining characters that survive strip_accents (to pin the
     canonical combining classes the Rust NFD uses for reordering);
  3. applies the Rust answer where it differs, prints a summary, and writes the override list into the
     generated C file's comments.

Usage (dev only; users never run this, the generated C is committed):
    .venv/bin/python tools/gen_unicode.py            # writes csrc/io/unicode_tables.h and .c
    .venv/bin/python tools/gen_unicode.py --check    # exit 1 if the committed files are stale
Needs only Python 3 and `tokenizers`.
"""
import argparse
import os
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MAXCP = 0x110000

CONTROL, WHITESPACE, PUNCT, CJK, MN = 1, 2, 4, 8, 16
HAS_NFD, HAS_LOWER = 32, 64   # derived hint bits: NFD / lowercase is not the identity
FLAG_NAMES = {CONTROL: "CONTROL", WHITESPACE: "WHITESPACE", PUNCT: "PUNCT", CJK: "CJK", MN: "MN"}

# Rust char::is_whitespace = the Unicode White_Space property (not exposed by unicodedata).
WHITE_SPACE = [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
               0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
# tokenizers normalizers/bert.rs is_chinese_char
CJK_RANGES = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]
HANGUL_S, HANGUL_N = 0xAC00, 11172


def is_surrogate(c):
    return 0xD800 <= c <= 0xDFFF


# ----------------------------------------------------------------------------------------------
# 1. baseline from unicodedata
def baseline():
    flags = [0] * MAXCP
    ccc = [0] * MAXCP
    nfd = [None] * MAXCP     # tuple of code points, None = maps to itself
    lower = [None] * MAXCP
    ws = set(WHITE_SPACE)
    for c in range(MAXCP):
        if is_surrogate(c):
            flags[c] = CONTROL
            continue
        ch = chr(c)
        cat = unicodedata.category(ch)
        f = 0
        if c in (0, 0xFFFD) or (cat in ("Cc", "Cf", "Co") and c not in (9, 10, 13)):
            f |= CONTROL
        if c in ws:
            f |= WHITESPACE
        if cat[0] == "P" or (c < 128 and ch in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"):
            f |= PUNCT
        if cat == "Mn":
            f |= MN
        for lo, hi in CJK_RANGES:
            if lo <= c <= hi:
                f |= CJK
        flags[c] = f
        ccc[c] = unicodedata.combining(ch)
        d = unicodedata.normalize("NFD", ch)
        if d != ch:
            nfd[c] = tuple(map(ord, d))
        lo_ = ch.lower()
        if lo_ != ch:
            lower[c] = tuple(map(ord, lo_))
    return flags, ccc, nfd, lower


# ----------------------------------------------------------------------------------------------
# 2. probing the Rust oracle
SEP = "#@#"


def probe_norm(normalizer, cps, chunk=1 << 16):
    """Rust normalize_str of each single code point, batched with an invariant separator."""
    out = []
    for i in range(0, len(cps), chunk):
        part = cps[i:i + chunk]
        res = normalizer.normalize_str(SEP.join(map(chr, part))).split(SEP)
        if len(res) != len(part):  # a separator character inside an output: do it one by one
            res = [normalizer.normalize_str(chr(c)) for c in part]
        out.extend(res)
    # '#', '@' themselves (and anything that printed them) are rechecked one by one
    for k, c in enumerate(cps):
        if "#" in out[k] or "@" in out[k]:
            out[k] = normalizer.normalize_str(chr(c))
    return out


def probe_pretok(cps, chunk=1 << 16):
    """Class of each code point for BertPreTokenizer on 'a'+c+'a': 'ws' removed, 'punct' isolated,
    'word' merged into the surrounding word."""
    from tokenizers.pre_tokenizers import BertPreTokenizer
    pt = BertPreTokenizer()
    out = []
    for i in range(0, len(cps), chunk):
        part = cps[i:i + chunk]
        s = "a" + "a".join(map(chr, part)) + "a"
        cls = ["ws"] * len(part)   # positions 2k+1; covered by no word -> whitespace
        for _, (b, e) in pt.pre_tokenize_str(s):
            if e - b == 1 and b % 2 == 1:
                cls[b // 2] = "punct"
            else:
                for pos in range(b | 1, e, 2):
                    cls[pos // 2] = "word"
        out.extend(cls)
    return out


def make_norm(**kw):
    from tokenizers.normalizers import BertNormalizer
    opts = dict(clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    opts.update(kw)
    return BertNormalizer(**opts)


def full_nfd(c, nfd):
    if HANGUL_S <= c < HANGUL_S + HANGUL_N:
        return tuple(map(ord, unicodedata.normalize("NFD", chr(c))))
    return nfd[c] if nfd[c] is not None else (c,)


def compose_strip(cps, nfd, ccc, flags):
    """NFD (decompose + stable canonical reorder) then drop Mn, per our tables."""
    seq = []
    for c in cps:
        seq.extend(full_nfd(c, nfd))
    # canonical ordering: stable sort of each run of non-starters by ccc
    i = 0
    while i < len(seq):
        if ccc[seq[i]] == 0:
            i += 1
            continue
        j = i
        while j < len(seq) and ccc[seq[j]] != 0:
            j += 1
        seq[i:j] = sorted(seq[i:j], key=lambda x: ccc[x])
        i = j
    return "".join(chr(x) for x in seq if not flags[x] & MN)


def probe_and_override(flags, ccc, nfd, lower, log):
    cps = [c for c in range(MAXCP) if not is_surrogate(c)]
    overrides = []   # (kind, code point, python value, rust value)

    # clean_text only: '' = dropped (CONTROL), ' ' = whitespace, c = kept
    res = probe_norm(make_norm(clean_text=True), cps)
    clean_ws = set()
    for c, r in zip(cps, res):
        if r == "":
            want_ctrl = True
        elif r == " ":
            want_ctrl = False
            clean_ws.add(c)
        elif r == chr(c):
            want_ctrl = False
        else:
            raise SystemExit("unexpected clean_text output for U+%04X: %r" % (c, r))
        if bool(flags[c] & CONTROL) != want_ctrl:
            overrides.append(("CONTROL", c, bool(flags[c] & CONTROL), want_ctrl))
            flags[c] ^= CONTROL
    # pre-tokenizer: whitespace / punctuation
    res = probe_pretok(cps)
    for c, r in zip(cps, res):
        for bit, want in ((WHITESPACE, r == "ws"), (PUNCT, r == "punct")):
            if bool(flags[c] & bit) != want:
                overrides.append((FLAG_NAMES[bit], c, bool(flags[c] & bit), want))
                flags[c] ^= bit
    # the normalizer's whitespace (clean_text) must be the same set, seen where not dropped
    for c in cps:
        if not flags[c] & CONTROL and (c in clean_ws) != bool(flags[c] & WHITESPACE) and c != 0x20:
            raise SystemExit("clean_text whitespace and pre-tokenizer whitespace differ at U+%04X: "
                             "the tables need two flags" % c)
    # handle_chinese_chars only
    res = probe_norm(make_norm(handle_chinese_chars=True), cps)
    for c, r in zip(cps, res):
        want = r == " %s " % chr(c)
        if not want and r != chr(c):
            raise SystemExit("unexpected handle_chinese_chars output for U+%04X: %r" % (c, r))
        if bool(flags[c] & CJK) != want:
            overrides.append(("CJK", c, bool(flags[c] & CJK), want))
            flags[c] ^= CJK
    # lowercase only
    res = probe_norm(make_norm(lowercase=True), cps)
    for c, r in zip(cps, res):
        want = tuple(map(ord, r))
        have = lower[c] if lower[c] is not None else (c,)
        if want != have:
            overrides.append(("LOWER", c, have, want))
            lower[c] = None if want == (c,) else want
    # strip_accents only (NFD, drop Mn): first Mn of the code points that do not decompose
    res = probe_norm(make_norm(strip_accents=True), cps)
    strip = dict(zip(cps, res))
    for c in cps:
        if full_nfd(c, nfd) == (c,):
            r = strip[c]
            if r not in ("", chr(c)):
                raise SystemExit("U+%04X: Rust decomposes it, Python does not: %r" % (c, r))
            want = r == ""
            if bool(flags[c] & MN) != want:
                overrides.append(("MN", c, bool(flags[c] & MN), want))
                flags[c] ^= MN
    # then the decompositions
    for c in cps:
        if full_nfd(c, nfd) == (c,):
            continue
        r = strip[c]
        if compose_strip([c], nfd, ccc, flags) == r:
            continue
        if r in ("", chr(c)):   # the Rust NFD does not know this decomposition (older Unicode)
            overrides.append(("NFD", c, nfd[c], None))
            nfd[c] = None
            if bool(flags[c] & MN) != (r == ""):
                overrides.append(("MN", c, bool(flags[c] & MN), r == ""))
                flags[c] ^= MN
        else:
            raise SystemExit("U+%04X: strip_accents gives %r, tables give %r"
                             % (c, r, compose_strip([c], nfd, ccc, flags)))
    # canonical combining classes, observable only on marks that survive strip_accents:
    # every pair of code points whose stripped NFD keeps a character with ccc != 0.
    keep = [c for c in cps if any(ccc[x] and not flags[x] & MN for x in full_nfd(c, nfd))]
    cand = [c for c in cps if ccc[c] and not flags[c] & MN]
    log("ccc probe: %d code points keep a non-starter after strip_accents" % len(keep))
    norm = make_norm(strip_accents=True)
    for _round in range(5):
        bad = []
        pairs = [(x, y) for x in keep for y in keep]
        got = probe_norm_strings(norm, ["".join(map(chr, p)) for p in pairs])
        for p, r in zip(pairs, got):
            if compose_strip(list(p), nfd, ccc, flags) != r:
                bad.append((p, r))
        if not bad:
            break
        log("ccc probe round %d: %d pairs disagree, e.g. %s" % (_round, len(bad), bad[:3]))
        # fix: a code point whose ccc the Rust NFD does not know reorders as a starter (ccc 0)
        fixed = False
        for c in cand:
            if ccc[c] == 0:
                continue
            old = ccc[c]
            ccc[c] = 0
            if all(compose_strip(list(p), nfd, ccc, flags) == r for p, r in bad if c in p):
                # keep the change only if it fixes its pairs and breaks none
                if all(compose_strip(list(p), nfd, ccc, flags) == r for p, r in zip(pairs, got) if c in p):
                    overrides.append(("CCC", c, old, 0))
                    fixed = True
                    continue
            ccc[c] = old
        if not fixed:
            raise SystemExit("cannot explain the NFD ordering of %s" % bad[:5])
    else:
        raise SystemExit("ccc probe did not converge")
    return overrides


def probe_norm_strings(normalizer, strings, chunk=1 << 14):
    out = []
    for i in range(0, len(strings), chunk):
        part = strings[i:i + chunk]
        res = normalizer.normalize_str(SEP.join(part)).split(SEP)
        if len(res) != len(part):
            res = [normalizer.normalize_str(s) for s in part]
        out.extend(res)
    return out


# ----------------------------------------------------------------------------------------------
# 3. tables
def two_stage(values, shift):
    """values: list of small ints over MAXCP -> (stage1 block ids, stage2 flattened unique blocks)."""
    size = 1 << shift
    blocks, ids, stage1 = [], {}, []
    for b in range(0, MAXCP, size):
        blk = tuple(values[b:b + size])
        if blk not in ids:
            ids[blk] = len(blocks)
            blocks.append(blk)
        stage1.append(ids[blk])
    return stage1, [v for blk in blocks for v in blk]


def ctype(maxval):
    return "uint8_t" if maxval < 256 else "uint16_t" if maxval < 65536 else "uint32_t"


def csize(t):
    return {"uint8_t": 1, "uint16_t": 2, "uint32_t": 4}[t]


def best_two_stage(values):
    best = None
    for shift in range(4, 11):
        s1, s2 = two_stage(values, shift)
        t1, t2 = ctype(max(s1)), ctype(max(s2))
        cost = len(s1) * csize(t1) + len(s2) * csize(t2)
        if best is None or cost < best[0]:
            best = (cost, shift, s1, s2, t1, t2)
    return best[1:]


def c_array(name, ctyp, vals, per_line=24, static=True, hexa=False):
    fmt = "0x%X" if hexa else "%d"
    lines = []
    for i in range(0, len(vals), per_line):
        lines.append("  " + ",".join(fmt % v for v in vals[i:i + per_line]) + ",")
    return "%sconst %s %s[%d] = {\n%s\n};\n" % ("static " if static else "", ctyp, name, len(vals),
                                                "\n".join(lines))


def seq_table(mapping):
    """mapping: list over MAXCP of tuple|None -> (index per cp, data: [count, cps...] runs; 0 = none)."""
    data, idx, seen = [0], [0] * MAXCP, {}
    for c, m in enumerate(mapping):
        if m is None:
            continue
        if m not in seen:
            seen[m] = len(data)
            data.append(len(m))
            data.extend(m)
        idx[c] = seen[m]
    return idx, data


def ranges_text(cps):
    cps = sorted(cps)
    out, i = [], 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        out.append("%04X" % cps[i] if i == j else "%04X-%04X" % (cps[i], cps[j]))
        i = j + 1
    return out


def summarize(overrides):
    """Human-readable lines: per kind, count, and the code point ranges (grouped by direction)."""
    groups = {}
    for kind, c, old, new in overrides:
        if kind in ("LOWER", "NFD", "CCC"):
            key = (kind, "")
        else:
            key = (kind, "set" if new else "cleared")
        groups.setdefault(key, []).append(c)
    lines = []
    for (kind, how), cs in sorted(groups.items()):
        rs = ranges_text(cs)
        lines.append("%s %s: %d code points (Python -> Rust)" % (kind, how, len(cs)))
        for i in range(0, len(rs), 10):
            lines.append("    " + " ".join(rs[i:i + 10]))
    return lines


def generate(log=print):
    import tokenizers
    log("baseline: Python unicodedata %s" % unicodedata.unidata_version)
    flags, ccc, nfd, lower = baseline()
    log("probing tokenizers %s for all code points ..." % tokenizers.__version__)
    overrides = probe_and_override(flags, ccc, nfd, lower, log)
    summary = summarize(overrides)
    log("%d values differ between Python unicodedata and Rust tokenizers:" % len(overrides))
    for line in summary:
        log("  " + line)
    # lower entries of LOWER overrides: show the mappings themselves too
    low_lines = ["U+%04X: %s -> %s" % (c, " ".join("%04X" % x for x in o),
                                        " ".join("%04X" % x for x in n))
                 for kind, c, o, n in overrides if kind == "LOWER"]

    # hint bits, so that one flags load tells the hot path whether the other lookups are needed
    for c in range(MAXCP):
        if full_nfd(c, nfd) != (c,):
            flags[c] |= HAS_NFD
        if lower[c] is not None:
            flags[c] |= HAS_LOWER
    # Hangul syllables are algorithmic in the C code: keep them out of the NFD table
    for c in range(HANGUL_S, HANGUL_S + HANGUL_N):
        nfd[c] = None
    f_shift, f_s1, f_s2, f_t1, f_t2 = best_two_stage(flags)
    c_shift, c_s1, c_s2, c_t1, c_t2 = best_two_stage(ccc)
    nfd_idx, nfd_data = seq_table(nfd)
    low_idx, low_data = seq_table(lower)
    assert max(len(m) for m in nfd if m) <= 4 and max(len(m) for m in lower if m) <= 3
    n_shift, n_s1, n_s2, n_t1, n_t2 = best_two_stage(nfd_idx)
    l_shift, l_s1, l_s2, l_t1, l_t2 = best_two_stage(low_idx)

    regen = "Regenerate: .venv/bin/python tools/gen_unicode.py (needs Python + tokenizers)."
    prov = ("Source: Python %s unicodedata %s, checked and overridden against HF tokenizers %s "
            "(Rust) for every code point." % (sys.version.split()[0], unicodedata.unidata_version,
                                              tokenizers.__version__))
    h = [
        "/* GENERATED by tools/gen_unicode.py -- DO NOT EDIT.",
        " * " + regen,
        " * " + prov,
        " *",
        " * Unicode tables for the BERT normalizer / pre-tokenizer (HF tokenizers BertNormalizer +",
        " * BertPreTokenizer semantics, exactly as the Rust crate sees each code point). */",
        "#ifndef LNN_UNICODE_TABLES_H",
        "#define LNN_UNICODE_TABLES_H",
        "#include <stdint.h>",
        "",
        "#define LNN_UC_CONTROL    1u  /* removed by clean_text (Rust: '\\0', U+FFFD, is_control) */",
        "#define LNN_UC_WHITESPACE 2u  /* mapped to ' ' by clean_text; a split point for BertPreTokenizer */",
        "#define LNN_UC_PUNCT      4u  /* BertPreTokenizer punctuation: isolated as its own word */",
        "#define LNN_UC_CJK        8u  /* handle_chinese_chars: padded with spaces */",
        "#define LNN_UC_MN        16u  /* nonspacing mark (Mn) dropped by strip_accents after NFD */",
        "/* Hint bits (test with &, never compare flags with ==): */",
        "#define LNN_UC_HAS_NFD   32u  /* lnn_uc_nfd(cp) is not cp itself (Hangul syllables included) */",
        "#define LNN_UC_HAS_LOWER 64u  /* lnn_uc_lower(cp) is not cp itself */",
        "",
        "#define LNN_UC_NFD_MAX   4    /* longest full canonical decomposition */",
        "#define LNN_UC_LOWER_MAX 3    /* longest lowercase mapping */",
        "",
        "uint32_t lnn_uc_flags(uint32_t cp);             /* cp > 0x10FFFF -> 0 */",
        "uint8_t  lnn_uc_ccc(uint32_t cp);               /* canonical combining class (NFD reordering) */",
        "int lnn_uc_nfd(uint32_t cp, uint32_t out[4]);   /* full canonical decomposition (Hangul too);",
        "                                                   count >= 1 (cp itself if none) */",
        "int lnn_uc_lower(uint32_t cp, uint32_t out[3]); /* Rust char::to_lowercase as tokenizers uses it;",
        "                                                   count >= 1 */",
        "",
        "/* Raw tables, for the inline fast paths below. */",
        "extern const uint8_t lnn_uc_ascii_flags[128];",
        "extern const %s lnn_uc_flags_s1[%d];" % (f_t1, len(f_s1)),
        "extern const %s lnn_uc_flags_s2[%d];" % (f_t2, len(f_s2)),
        "#define LNN_UC_FLAGS_SHIFT %d" % f_shift,
        "",
        "/* Same as lnn_uc_flags(), inlined; ASCII is one load. */",
        "static inline uint32_t lnn_uc_flags_inline(uint32_t cp) {",
        "    if (cp < 128) return lnn_uc_ascii_flags[cp];",
        "    if (cp > 0x10FFFF) return 0;",
        "    return lnn_uc_flags_s2[((uint32_t)lnn_uc_flags_s1[cp >> LNN_UC_FLAGS_SHIFT] << LNN_UC_FLAGS_SHIFT)",
        "                           | (cp & ((1u << LNN_UC_FLAGS_SHIFT) - 1u))];",
        "}",
        "",
        "/* ASCII lowercase (Rust to_lowercase and NFD are the identity on ASCII except A-Z). */",
        "static inline uint32_t lnn_uc_ascii_lower(uint32_t cp) {",
        "    return (cp - 'A' < 26u) ? cp + 32u : cp;",
        "}",
        "",
        "#endif /* LNN_UNICODE_TABLES_H */",
        "",
    ]
    ascii_flags = flags[:128]
    c = [
        "/* GENERATED by tools/gen_unicode.py -- DO NOT EDIT.",
        " * " + regen,
        " * " + prov,
        " *",
        " * Tables: two-stage lookups (stage1[cp >> shift] selects a deduplicated block of stage2).",
        " *   flags: shift %d, %d + %d entries; ccc: shift %d, %d + %d entries;" % (
            f_shift, len(f_s1), len(f_s2), c_shift, len(c_s1), len(c_s2)),
        " *   nfd index: shift %d, %d + %d entries, %d data words; lower index: shift %d, %d + %d, %d words." % (
            n_shift, len(n_s1), len(n_s2), len(nfd_data), l_shift, len(l_s1), len(l_s2), len(low_data)),
        " *   nfd/lower data: runs of [count, code points...]; index 0 = maps to itself.",
        " *   Hangul syllables (U+AC00..U+D7A3) decompose algorithmically.",
        " *",
        " * Overrides: values where Rust tokenizers disagrees with Python unicodedata (%d in all)." % len(overrides),
        " * The Rust crates (unicode_categories, unicode-normalization-alignments) are on older Unicode",
        " * versions; lowercase follows the Rust std of the tokenizers build.",
    ]
    c += [" *   " + line for line in summary]
    if low_lines:
        c.append(" *   LOWER mappings (Python -> Rust):")
        c += [" *     " + line for line in low_lines]
    c += [
        " */",
        '#include "io/unicode_tables.h"',
        "",
        c_array("lnn_uc_ascii_flags", "uint8_t", ascii_flags, per_line=16, static=False),
        c_array("lnn_uc_flags_s1", f_t1, f_s1, static=False),
        c_array("lnn_uc_flags_s2", f_t2, f_s2, per_line=32, static=False),
        c_array("ccc_s1", c_t1, c_s1),
        c_array("ccc_s2", c_t2, c_s2, per_line=32),
        c_array("nfd_s1", n_t1, n_s1),
        c_array("nfd_s2", n_t2, n_s2),
        c_array("nfd_data", "uint32_t", nfd_data, per_line=12, hexa=True),
        c_array("lower_s1", l_t1, l_s1),
        c_array("lower_s2", l_t2, l_s2),
        c_array("lower_data", "uint32_t", low_data, per_line=12, hexa=True),
        "#define LOOKUP(name, shift, cp) \\",
        "    name##_s2[((uint32_t)name##_s1[(cp) >> (shift)] << (shift)) | ((cp) & ((1u << (shift)) - 1u))]",
        "",
        "uint32_t lnn_uc_flags(uint32_t cp) {",
        "    if (cp < 128) return lnn_uc_ascii_flags[cp];",
        "    if (cp > 0x10FFFF) return 0;",
        "    return LOOKUP(lnn_uc_flags, LNN_UC_FLAGS_SHIFT, cp);",
        "}",
        "",
        "uint8_t lnn_uc_ccc(uint32_t cp) {",
        "    if (cp < 0x300 || cp > 0x10FFFF) return 0;",
        "    return LOOKUP(ccc, %d, cp);" % c_shift,
        "}",
        "",
        "#define HANGUL_S 0xAC00u",
        "#define HANGUL_L 0x1100u",
        "#define HANGUL_V 0x1161u",
        "#define HANGUL_T 0x11A7u",
        "#define HANGUL_COUNT 11172u",
        "",
        "int lnn_uc_nfd(uint32_t cp, uint32_t out[4]) {",
        "    if (cp < 0xC0 || cp > 0x10FFFF) { out[0] = cp; return 1; }",
        "    if (cp - HANGUL_S < HANGUL_COUNT) {",
        "        uint32_t s = cp - HANGUL_S, t = s % 28u;",
        "        out[0] = HANGUL_L + s / (21u * 28u);",
        "        out[1] = HANGUL_V + (s % (21u * 28u)) / 28u;",
        "        if (t == 0) return 2;",
        "        out[2] = HANGUL_T + t;",
        "        return 3;",
        "    }",
        "    uint32_t i = LOOKUP(nfd, %d, cp);" % n_shift,
        "    if (i == 0) { out[0] = cp; return 1; }",
        "    int n = (int)nfd_data[i];",
        "    for (int k = 0; k < n; k++) out[k] = nfd_data[i + 1 + (uint32_t)k];",
        "    return n;",
        "}",
        "",
        "int lnn_uc_lower(uint32_t cp, uint32_t out[3]) {",
        "    if (cp < 128) { out[0] = lnn_uc_ascii_lower(cp); return 1; }",
        "    if (cp > 0x10FFFF) { out[0] = cp; return 1; }",
        "    uint32_t i = LOOKUP(lower, %d, cp);" % l_shift,
        "    if (i == 0) { out[0] = cp; return 1; }",
        "    int n = (int)lower_data[i];",
        "    for (int k = 0; k < n; k++) out[k] = lower_data[i + 1 + (uint32_t)k];",
        "    return n;",
        "}",
        "",
    ]
    assert all(nfd_data[i] for i in set(nfd_idx) if i) and all(c < 0x300 or True for c in [0])
    # the fast paths in C rely on these
    assert all(ccc[x] == 0 for x in range(0x300)) and all(nfd[x] is None for x in range(0xC0))
    assert all(lower[x] == ((x + 32,) if 65 <= x <= 90 else None) for x in range(128))
    return "\n".join(h), "\n".join(c)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the committed files are stale")
    ap.add_argument("--outdir", default=os.path.join(ROOT, "csrc", "io"))
    args = ap.parse_args()
    h, c = generate(log=lambda s: print(s, file=sys.stderr))
    paths = {os.path.join(args.outdir, "unicode_tables.h"): h, os.path.join(args.outdir, "unicode_tables.c"): c}
    if args.check:
        stale = [p for p, txt in paths.items() if not os.path.exists(p) or open(p).read() != txt]
        if stale:
            print("stale: %s (regenerate with tools/gen_unicode.py)" % ", ".join(stale), file=sys.stderr)
            sys.exit(1)
        print("unicode tables are up to date", file=sys.stderr)
        return
    for p, txt in paths.items():
        with open(p, "w") as f:
            f.write(txt)
        print("wrote %s (%d bytes)" % (p, len(txt)), file=sys.stderr)


if __name__ == "__main__":
    main()
