"""Patterns from files run in bounded time (issue 20, case 1): adapter_config.json's target_modules,
layers_pattern and exclude_modules are regular expressions with Python's (peft's) semantics, matched by RE2
(the optional google-re2) or, without it, by lyricnn's bounded Pike VM. Every test runs in both states.

- hostile patterns that make `re` run for minutes return in seconds;
- a seeded differential fuzz: random patterns give re's results (fullmatch, and the layer index group of
  peft's layers_pattern regex) on every module name of DistilBERT and BERT;
- peft's own check_target_module_exists chooses the same modules for the adapter configs tested;
- what is not regular is refused, naming the construct; bad fields name the file, the field and the fix.
"""
import json
import random
import re
import time
import types

import numpy as np
import pytest

from lyricnn import CheckpointError, SequenceClassifier, _patterns
from lyricnn._patterns import MAX_PROGRAM, PatternError, compile_untrusted
from lyricnn.lora import linear_modules, plan

ENGINES = ("re2", "pike-vm")
NAMES = ([m for m, _, _ in linear_modules("distilbert", 6, False)] +
         [m for m, _, _ in linear_modules("bert", 12, True)])
TINY = dict(model_type="distilbert", vocab_size=97, dim=32, n_layers=2, n_heads=2, hidden_dim=48,
            max_position_embeddings=40)


@pytest.fixture(params=ENGINES)
def engine(request, monkeypatch):
    """The optional RE2 installed, or absent (the Pike VM): the same results either way."""
    _patterns._compile.cache_clear()
    if request.param == "re2":
        if _patterns._re2 is None:
            pytest.skip("google-re2 is not installed (pip install google-re2): the Pike VM state is tested")
    else:
        monkeypatch.setattr(_patterns, "_re2", None)
    yield request.param
    _patterns._compile.cache_clear()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("base")
    SequenceClassifier.from_config(TINY, num_labels=2).save_pretrained(d)
    return d


def adapter_dir(tmp_path, base, **cfg):
    """A peft adapter of the tiny base (q_lin, v_lin) with adapter_config.json fields replaced by cfg."""
    d = tmp_path / "adapter"
    if not d.exists():
        SequenceClassifier.from_pretrained(base, num_labels=2, lora=dict(r=2)).save_adapter(d)
    c = json.loads((d / "adapter_config.json").read_text())
    c.update(cfg)
    (d / "adapter_config.json").write_text(json.dumps(c))
    return d


# ------------------------------------------------------------------------------------ the hangs

@pytest.mark.parametrize("pattern", ["(.*)*(.*)*(.*)*x", "(.*)*x", "(a|a)*b", "((((.*)*)*)*)*x",
                                     "(.*?)*(.*?)*(.*?)*\\.q_linx"])
def test_hostile_target_modules_returns_at_once(engine, tmp_path, base, pattern):
    d = adapter_dir(tmp_path, base, target_modules=pattern)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"adapter_config\.json: lora target_modules=.* selects no linear"):
        SequenceClassifier.from_pretrained(base, adapter=d)
    assert time.perf_counter() - t0 < 20  # re.fullmatch takes minutes on the first one
    assert compile_untrusted(pattern, "t").engine == engine


def test_worst_case_within_the_program_bound_is_seconds(engine):
    """Patterns at the size limit, against every BERT-base module name (73): bounded work per name."""
    bert = [m for m, _, _ in linear_modules("bert", 12, True)]
    for p in [r"(?:.*){320}x", r"(.?){240}x", r"(?:.*?\b.*?){130}", "(?:" + "|".join("m%d" % i for i in range(150)) +
              ")*x"]:
        c = compile_untrusted(p, "t")
        t0 = time.perf_counter()
        assert not any(c.fullmatch(n) for n in bert) or "b" in p
        lp = compile_untrusted(r"(?:^|.*?\.)%s\.(?P<idx>\d+)\." % p[:300], "t") if len(p) < 40 else None
        if lp is not None:
            [lp.match_group(n, "idx") for n in bert]
        assert time.perf_counter() - t0 < 30
    with pytest.raises(PatternError, match=r"too large to match in bounded time: its repeats expand to more than "
                                           r"%d steps" % MAX_PROGRAM):
        compile_untrusted("a{5000}", "adapter_config.json: target_modules")
    with pytest.raises(PatternError, match="is a pattern of 5000 characters"):
        compile_untrusted("a" * 5000, "t")


# ------------------------------------------------------------------------------------ re's semantics

_ATOMS = ["a", "e", "i", "l", "n", "q", "r", "s", "t", "u", "y", "_", "1", "0", "\\.", ".", "[a-z]", "[^.]", "\\d",
          "\\w", "\\W", "[aeiou_]", "[0-9]", "(?i:Q)", "[.]", "\\s", "[^a-m]", "[[:alpha:]]", "(?i:[K])"]
_QUANT = ["", "", "", "*", "+", "?", "*?", "+?", "??", "{1,2}", "{,2}", "{2}", "{0,1}?"]


def _expr(rng, depth, quantified):
    """A random pattern; quantifiers never nest, so that `re` (the oracle) stays fast."""
    parts = []
    for _ in range(rng.randint(1, 4)):
        r = rng.random()
        if depth < 2 and r < 0.25:
            inner = _expr(rng, depth + 1, True)
            if rng.random() < 0.4:
                inner += "|" + _expr(rng, depth + 1, True)
            grp = rng.choice(["(%s)", "(?:%s)", "(?P<g%d>%%s)" % rng.randint(0, 10 ** 6)]) % inner
            parts.append(grp if quantified or rng.random() < 0.5 else grp + rng.choice(["*", "?", "+?", "{1,2}"]))
        elif r < 0.3:
            parts.append(rng.choice(["^", "$", "\\b", "\\B", "\\A", "\\Z"]))
        else:
            parts.append(rng.choice(_ATOMS) + ("" if quantified else rng.choice(_QUANT)))
    return "".join(parts)


def _patterns_for_fuzz(seed, n):
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        p = rng.choice(["", ".*", ".*?", ".*\\.", "(?:.*\\.)?"]) + _expr(rng, 0, False) + rng.choice(["", ".*", "$"])
        try:
            re.compile(p)
        except re.error:
            continue
        out.append(p)
    return out


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_differential_fuzz_against_re(engine):
    """Seeded random patterns: fullmatch gives re.fullmatch's answer on every module name, and peft's
    layers_pattern regex gives re.match's idx group."""
    hits = 0
    for p in _patterns_for_fuzz(20, 250):
        c = compile_untrusted(p, "fuzz")
        for n in NAMES:
            want = re.fullmatch(p, n) is not None
            assert c.fullmatch(n) == want, (p, n, want)
            hits += want
        lp = r"(?:^|.*?\.)%s\.(?P<idx>\d+)\." % p
        try:
            rx = re.compile(lp)
        except re.error:
            continue
        c = compile_untrusted(lp, "fuzz")
        for n in NAMES[::3]:
            m = rx.match(n)
            assert c.match_group(n, "idx") == (m.group("idx") if m else None), (lp, n)
    assert hits > 100  # the fuzz matches, not only fails


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("pattern", [r"[[:alpha:]]+", r"a{,3}", r".*\Z", r".*q_lin\Z", r"(?i).*Q_LIN",
                                     r".*\.[[:alpha:]]_lin", r".*lin{1,}\d", r"(?a).*\w+", r"(?s).*\.lin.",
                                     r"(?x) .* \. q_lin  # comment", r".*(?P<x>q|v)_lin", r".*\x71_lin"])
def test_python_syntax_keeps_python_meaning(engine, pattern):
    """Where RE2 reads the same text differently ([[:alpha:]] is a POSIX class there, a{,3} a literal, \\Z an
    error), the pattern still means what it means to re (and to peft)."""
    c = compile_untrusted(pattern, "t")
    assert [c.fullmatch(n) for n in NAMES] == [re.fullmatch(pattern, n) is not None for n in NAMES]


@pytest.mark.parametrize("cfg", [
    dict(target_modules=".*\\.(q_lin|v_lin)"),
    dict(target_modules=".*layer\\.1\\..*lin\\d"),
    dict(target_modules=["q_lin", "lin2"], layers_to_transform=[1]),
    dict(target_modules=["q_lin", "lin2"], layers_to_transform=0, layers_pattern="layer"),
    dict(target_modules=["q_lin", "lin2"], layers_to_transform=[0, 1], layers_pattern=["layers", "l.y.r"]),
    dict(target_modules=["q_lin", "v_lin", "lin1"], exclude_modules=".*layer\\.0\\..*"),
    dict(target_modules="all-linear", exclude_modules=["lin1", "distilbert.transformer.layer.1.attention.q_lin"]),
])
def test_same_modules_as_peft(engine, cfg):
    tu = pytest.importorskip("peft.tuners.tuners_utils")
    full = dict(target_modules=None, layers_to_transform=None, layers_pattern=None, exclude_modules=None,
                modules_to_save=None, target_parameters=None)
    full.update(cfg)
    if cfg["target_modules"] == "all-linear":  # peft expands it to the linears' names (the head left out)
        full["target_modules"] = ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"]
    ns = types.SimpleNamespace(**full)
    names = [m for m, _, _ in linear_modules("distilbert", 2, False)]
    want = [n for n in names if bool(tu.check_target_module_exists(ns, n))]
    spec = dict(target_modules=cfg["target_modules"], modules_to_save=None)
    got = plan(spec, "distilbert", 2, False, ["pre_classifier.weight", "classifier.weight"], False,
               cfg.get("layers_to_transform"), cfg.get("layers_pattern"), cfg.get("exclude_modules"))
    assert [m for m, _, _ in got["sites"]] == want


# ------------------------------------------------------------------------------------ refusals and messages

@pytest.mark.parametrize("pattern,what", [
    (r"(a)\1", r"a backreference"), (r"(?P<n>a)(?P=n)", "a backreference"), (r".*(?=q_lin)q_lin", "a lookahead"),
    (r".*(?<!ffn\.)lin1", "a negative lookahead or lookbehind"), (r"(x)?(?(1)a|b)", "a conditional group"),
    (r"(?>.*)x", "an atomic group"), (r".*+x", "a possessive repeat")])
def test_non_regular_constructs_are_refused_by_name(engine, tmp_path, base, pattern, what):
    d = adapter_dir(tmp_path, base, target_modules=pattern)
    with pytest.raises(CheckpointError, match=r"adapter_config\.json: lora target_modules %s uses %s.*, which lyricnn "
                                              r"does not support: .*linear-time engine .*cannot hang the process"
                                              % (re.escape(repr(pattern)), what)):
        SequenceClassifier.from_pretrained(base, adapter=d)


def test_bad_target_modules_argument_names_it(engine):
    with pytest.raises(ValueError, match=r"lora target_modules '\(' is not a valid regular expression: missing \), "
                                         r"unterminated subpattern at position 0; give module names"):
        SequenceClassifier.from_config(TINY, lora=dict(target_modules="("))
    assert isinstance(PatternError("x"), ValueError)
    m = SequenceClassifier.from_config(TINY, lora=dict(target_modules=r".*\.(q_lin|v_lin)"))
    assert len(m._lora_plan["sites"]) == 4


@pytest.mark.parametrize("cfg,msg", [
    (dict(layers_to_transform="abc"), r"layers_to_transform must be a layer index \(an int >= 0\) or a list of them, "
                                      r"got 'abc'"),
    (dict(layers_to_transform=[1, True]), r"layers_to_transform must be a layer index"),
    (dict(layers_to_transform=[99]), r"layers_to_transform=\[99\] selects no layer of this 2-layer distilbert model "
                                     r"\(its layers are 0 to 1\)"),
    (dict(layers_to_transform=[0], layers_pattern="("), r"layers_pattern '\(' \(peft matches it as .*\) is not a valid "
                                                        r"regular expression: missing \)"),
    (dict(layers_to_transform=[0], layers_pattern=5), r"layers_pattern must be a str \(the name of the layer list"),
    (dict(layers_to_transform=[0], layers_pattern="(a+)+$"), r"selects no linear layer of this distilbert model: its "
                                                              r"layers are named distilbert\.transformer\.layer\.0\."),
    (dict(layers_pattern="layer"), r"layers_pattern is set \('layer'\) but layers_to_transform is not"),
    (dict(target_modules=".*q_lin", layers_to_transform=[0]), r"layers_to_transform cannot be used when "
                                                              r"target_modules is a regular expression"),
    (dict(exclude_modules=5), r"exclude_modules must be a regular expression \(a str\) or a list of module names, "
                              r"got 5"),
    (dict(exclude_modules="(?<=x)y"), r"exclude_modules '\(\?<=x\)y' uses a lookahead or lookbehind"),
])
def test_bad_layer_fields_name_the_file_and_field(engine, tmp_path, base, cfg, msg):
    d = adapter_dir(tmp_path, base, **cfg)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"adapter_config\.json: .*" + msg):
        SequenceClassifier.from_pretrained(base, adapter=d)
    assert time.perf_counter() - t0 < 20


def test_layer_fields_that_peft_accepts_load(engine, tmp_path, base):
    d = adapter_dir(tmp_path, base, target_modules=["q_lin", "v_lin"], layers_to_transform=[1],
                    layers_pattern="layer")
    with pytest.raises(CheckpointError, match="missing: -; unexpected: .*layer.0"):  # the file has layer 0's tensors
        SequenceClassifier.from_pretrained(base, adapter=d)
    m = SequenceClassifier.from_pretrained(base, num_labels=2, lora=dict(r=2))
    np.testing.assert_array_equal(m._lora_plan["masks"], [0b101, 0b101])
