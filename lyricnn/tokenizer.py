"""BERT / DistilBERT WordPiece tokenizer on the C engine, with the ids and offsets of Hugging Face's
``BertTokenizerFast`` and its call signature.

>>> tok = Tokenizer.from_pretrained("distilbert-base-uncased")     # bundled vocab, offline
>>> enc = tok(["Hello, world!", "hi [MASK] there"], padding=True)
>>> enc["input_ids"].shape, enc.attention_mask.dtype
((2, 6), dtype('int64'))
"""
import json
import os
import pathlib

import numpy as np

from ._loader import _C
from ._C import CheckpointError
from ._validate import check_bool, check_int

__all__ = ["Tokenizer", "BatchEncoding"]

_DATA = pathlib.Path(__file__).resolve().parent / "data"
_BUNDLED = {
    "distilbert-base-uncased": ("bert-base-uncased-vocab.txt", "distilbert"),
    "distilbert/distilbert-base-uncased": ("bert-base-uncased-vocab.txt", "distilbert"),
    "bert-base-uncased": ("bert-base-uncased-vocab.txt", "bert"),
    "google-bert/bert-base-uncased": ("bert-base-uncased-vocab.txt", "bert"),
}
_LARGE = int(1e30)  # HF's VERY_LARGE_INTEGER: "no maximum length"
_SPECIAL_NAMES = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_DEFAULT_SPECIALS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                     "mask_token": "[MASK]"}
_TRUNC = {"longest_first": 1, "only_first": 2, "only_second": 3, "head_tail": 4}
#: head_tokens when truncation='head_tail' and none is given: Sun et al. 2019's best split at max_length=512
#: (head 128 + tail 382).
HEAD_TOKENS_DEFAULT = 128
#: The longest max_length / padded width a call accepts (2^24 tokens). A BERT-style model takes at most its
#: max_position_embeddings (512 for the bundled models); beyond this cap a value is a mistake, and with
#: padding='max_length' it would allocate rows x max_length ids before anything else happens.
MAX_LENGTH_LIMIT = 2 ** 24
#: The most ids one padded call may allocate per output array (rows x padded width): 2^30 (8 GiB of int64).
MAX_PADDED_CELLS = 2 ** 30
#: max_input_chars_per_word: the engine keeps a per-thread buffer of this many characters.
MAX_INPUT_CHARS_LIMIT = 2 ** 24
_NESTING_LIMIT = 200  # JSON nesting reported as "too deep" (HF tokenizer files are < 10 levels deep)


class BatchEncoding(dict):
    """The output of a Tokenizer call: a dict of arrays that also allows attribute access
    (``enc.input_ids``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError("BatchEncoding has no field %r; it has %s" % (name, sorted(self))) from None

    def __dir__(self):
        return list(super().__dir__()) + list(self.keys())


def _content(tok):
    """A special token from a config: "[CLS]" or {"content": "[CLS]", ...}."""
    if isinstance(tok, dict):
        return tok.get("content")
    return tok


def _deep_nesting(text, limit=_NESTING_LIMIT):
    """(JSON path, character offset) where `text` first nests deeper than `limit` arrays/objects, or None."""
    stack = []  # [bracket, current key or index] per open container
    key = None  # the last string read (an object key when a ':' follows)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j, esc = i + 1, False
            while j < n and (esc or text[j] != '"'):
                esc = not esc and text[j] == "\\"
                j += 1
            key = text[i + 1:j]
            i = j
        elif c in "[{":
            stack.append([c, 0 if c == "[" else None])
            if len(stack) > limit:
                return _json_path(stack), i
        elif c in "]}":
            if stack:
                stack.pop()
        elif c == ":" and stack and stack[-1][0] == "{":
            stack[-1][1] = key
        elif c == "," and stack and stack[-1][0] == "[":
            stack[-1][1] += 1
        i += 1
    return None


def _json_path(stack, max_chars=60):
    out = ""
    for kind, k in stack[:-1]:
        if kind == "[":
            out += "[%d]" % k
        elif k is not None:
            out += ("." if out else "") + k
    if len(out) > max_chars:
        out = out[:max_chars] + "..."
    return out or "(top level)"


def _read_json(path):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise CheckpointError("cannot read %s: %s" % (path, e)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CheckpointError("%s is not UTF-8 (byte %d): %s; save it as UTF-8" % (path, e.start, e.reason)) from None
    try:
        return json.loads(text)
    except RecursionError:
        where = _deep_nesting(text)
        at = " (deeper than %d levels at %s, character %d)" % ((_NESTING_LIMIT,) + where) if where else ""
        raise CheckpointError("%s is nested too deeply to be a tokenizer file%s; it is damaged or not a Hugging "
                              "Face tokenizer file" % (path, at)) from None
    except ValueError as e:
        raise CheckpointError("%s is not valid JSON: %s" % (path, e)) from None


_JSON_NAMES = {dict: "an object", list: "an array", str: "a string", int: "an integer", float: "a number",
               bool: "a boolean (true or false)", type(None): "null"}


def _json_type(v):
    if isinstance(v, bool):
        return "a boolean (%s)" % json.dumps(v)
    for t in (dict, list, str, int, float, type(None)):
        if isinstance(v, t):
            r = json.dumps(v)[:40] if t in (str, int, float) else ""
            return _JSON_NAMES[t] + (" (%s)" % r if r else "")
    return type(v).__name__


def _is_json(v, types):
    for t in types:
        if t is int and isinstance(v, int) and not isinstance(v, bool):
            return True
        if t is float and isinstance(v, (int, float)) and not isinstance(v, bool):
            return True
        if t not in (int, float) and isinstance(v, t):
            return True
    return False


_MISSING = object()


def _field(obj, key, file, jpath, types, default=_MISSING):
    """obj[key] checked to be one of the JSON `types` (dict, list, str, int, float, bool, type(None));
    a CheckpointError naming `file` and the JSON path (jpath.key) otherwise. A missing key gives `default`
    (an error when there is none)."""
    full = "%s.%s" % (jpath, key) if jpath else key
    if key not in obj:
        if default is _MISSING:
            raise CheckpointError("%s: %s is missing; it must be %s" % (
                file, full, " or ".join(_JSON_NAMES[t] for t in types)))
        return default
    v = obj[key]
    if not _is_json(v, types):
        raise CheckpointError("%s: %s must be %s, got %s; fix that field in the file"
                              % (file, full, " or ".join(_JSON_NAMES[t] for t in types), _json_type(v)))
    return v


def _check_tokenizer_config(cfg, path):
    """Types of the tokenizer_config.json fields lyricnn reads: booleans must be JSON true/false ("no" is a
    non-empty, truthy string), sizes integers, names strings."""
    for k in ("do_lower_case", "tokenize_chinese_chars", "clean_up_tokenization_spaces"):
        if cfg.get(k) is not None:
            _field(cfg, k, path, "", (bool,))
    _field(cfg, "strip_accents", path, "", (bool, type(None)), None)
    for k in ("padding_side", "truncation_side"):
        v = _field(cfg, k, path, "", (str, type(None)), None)
        if v is not None and v not in ("right", "left"):
            raise CheckpointError("%s: %s must be \"right\" or \"left\", got %s" % (path, k, json.dumps(v)))
    v = _field(cfg, "model_max_length", path, "", (int, float, type(None)), None)
    if v is not None and not v >= 0:
        raise CheckpointError("%s: model_max_length must be >= 0, got %r" % (path, v))
    names = _field(cfg, "model_input_names", path, "", (list, type(None)), None)
    for i, x in enumerate(names or []):
        if not isinstance(x, str):
            raise CheckpointError("%s: model_input_names[%d] must be a string, got %s" % (path, i, _json_type(x)))
    _field(cfg, "tokenizer_class", path, "", (str, type(None)), None)
    for k in _SPECIAL_NAMES:
        v = _field(cfg, k, path, "", (str, dict, type(None)), None)
        if isinstance(v, dict):
            _field(v, "content", path, k, (str,))


def _hf_cache_dirs():
    dirs = []
    if os.environ.get("HF_HUB_CACHE"):
        dirs.append(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        dirs.append(os.environ["HUGGINGFACE_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        dirs.append(os.path.join(os.environ["HF_HOME"], "hub"))
    base = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
    dirs.append(os.path.join(base, "huggingface", "hub"))
    return dirs


def _find_in_hf_cache(repo_id):
    """The snapshot folder of an HF hub id in the local cache, or None."""
    folder = "models--" + repo_id.replace("/", "--")
    for d in _hf_cache_dirs():
        root = os.path.join(d, folder)
        snaps = os.path.join(root, "snapshots")
        if not os.path.isdir(snaps):
            continue
        ref = os.path.join(root, "refs", "main")
        if os.path.isfile(ref):
            with open(ref) as f:
                p = os.path.join(snaps, f.read().strip())
            if os.path.isdir(p):
                return p
        cands = [os.path.join(snaps, s) for s in os.listdir(snaps)]
        cands = [c for c in cands if os.path.isfile(os.path.join(c, "tokenizer.json"))
                 or os.path.isfile(os.path.join(c, "vocab.txt"))]
        if cands:
            return max(cands, key=os.path.getmtime)
    return None


def _decode_vocab_bytes(raw, path):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CheckpointError("%s is not UTF-8 text (invalid byte at offset %d: %s); the vocab must be saved as "
                              "UTF-8, one token per line" % (path, e.start, e.reason)) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [l[:-1] if l.endswith("\r") else l for l in lines]


class Tokenizer:
    """WordPiece tokenizer (BERT / DistilBERT) on the C engine.

    Build it with :meth:`from_pretrained`. Calling it follows ``transformers``: ``tok(texts, text_pair=None,
    padding=False, truncation=None, max_length=None, ...)``; padded output is numpy int64 2-D arrays.
    """

    def __init__(self, vocab, do_lower_case=True, strip_accents=None, tokenize_chinese_chars=True, clean_text=True,
                 unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]",
                 added_tokens=None, model_max_length=_LARGE, max_input_chars_per_word=100,
                 continuing_subword_prefix="##", clean_up_tokenization_spaces=False, model_input_names=None,
                 padding_side="right", truncation_side="right", name_or_path=""):
        """vocab: list of tokens in id order. added_tokens: list of (content, id, special) split out of the raw text
        before normalization (default: the special tokens)."""
        self._init_args = dict(do_lower_case=do_lower_case, strip_accents=strip_accents,
                               tokenize_chinese_chars=tokenize_chinese_chars, clean_text=clean_text,
                               unk_token=unk_token, sep_token=sep_token, pad_token=pad_token, cls_token=cls_token,
                               mask_token=mask_token, added_tokens=added_tokens, model_max_length=model_max_length,
                               max_input_chars_per_word=max_input_chars_per_word,
                               continuing_subword_prefix=continuing_subword_prefix,
                               clean_up_tokenization_spaces=clean_up_tokenization_spaces,
                               model_input_names=model_input_names, padding_side=padding_side,
                               truncation_side=truncation_side,
                               name_or_path=name_or_path)
        vocab = list(vocab)
        if not vocab:
            raise CheckpointError("the vocab is empty")
        for i, t in enumerate(vocab):
            if not isinstance(t, str):
                raise CheckpointError("vocab token %d is %s, not a str" % (i, type(t).__name__))
            if "\n" in t or t.endswith("\r"):
                raise CheckpointError("vocab token %d (%r) contains a line break, which lyricnn does not support" % (i, t))
        self._vocab = vocab
        self.do_lower_case = check_bool(do_lower_case, "do_lower_case")
        self.strip_accents = check_bool(strip_accents, "strip_accents (None: as do_lower_case)", allow_none=True)
        self.tokenize_chinese_chars = check_bool(tokenize_chinese_chars, "tokenize_chinese_chars")
        self.clean_text = check_bool(clean_text, "clean_text")
        mml = model_max_length
        if mml is None or isinstance(mml, (float, np.floating)) and not isinstance(mml, bool) and mml >= _LARGE:
            self.model_max_length = _LARGE  # None, 1e30 or inf: no maximum (as transformers)
        else:
            self.model_max_length = min(check_int(mml, "model_max_length (None: no maximum)", min=0), _LARGE)
        self.max_input_chars_per_word = check_int(max_input_chars_per_word, "max_input_chars_per_word (the longest "
                                                  "word split into pieces; longer words become unk_token)", min=1,
                                                  max=MAX_INPUT_CHARS_LIMIT)
        if not isinstance(continuing_subword_prefix, str):
            raise TypeError("continuing_subword_prefix must be a str such as '##', got %r" % (continuing_subword_prefix,))
        self.continuing_subword_prefix = continuing_subword_prefix
        self.clean_up_tokenization_spaces = check_bool(clean_up_tokenization_spaces, "clean_up_tokenization_spaces")
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.name_or_path = name_or_path
        self.model_input_names = list(model_input_names or ["input_ids", "token_type_ids", "attention_mask"])
        self._tok2id = None
        specials = dict(unk_token=unk_token, sep_token=sep_token, pad_token=pad_token, cls_token=cls_token,
                        mask_token=mask_token)
        index = {}
        for i, t in enumerate(vocab):
            if t in index:
                raise CheckpointError("duplicate token %r in the vocab: ids %d and %d; each token must appear once"
                                      % (t, index[t], i))
            index[t] = i
        self._tok2id = index
        for name, tok in specials.items():
            if tok is None:
                raise CheckpointError("the special token %s is not set; BERT tokenizers need %s" % (name, ", ".join(
                    _SPECIAL_NAMES)))
            if tok not in index and not any(a[0] == tok for a in (added_tokens or [])):
                raise CheckpointError("the special token %s=%r is missing from the vocab (%d tokens); use the vocab "
                                      "the model was trained with" % (name, tok, len(vocab)))
            setattr(self, name, tok)
        if added_tokens is None:
            added_tokens = []
            seen = set()
            for name in ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"):
                t = specials[name]
                if t not in seen:
                    seen.add(t)
                    added_tokens.append((t, index[t], True))
        self._added = sorted([(str(c), int(i), bool(s)) for c, i, s in added_tokens], key=lambda a: a[1])
        self._id2tok = {}
        for c, i, s in self._added:
            if i < 0:
                raise CheckpointError("added token %r has a negative id %d" % (c, i))
            if i < len(vocab) and vocab[i] != c:
                raise CheckpointError("added token %r has id %d, which the vocab gives to %r" % (c, i, vocab[i]))
            if i >= len(vocab):
                self._id2tok[i] = c
                index.setdefault(c, i)
        self._special_ids = {i for c, i, s in self._added if s}
        for name, tok in specials.items():
            setattr(self, name + "_id", index[tok])
        raw = "\n".join(vocab).encode("utf-8")
        strip = -1 if strip_accents is None else int(bool(strip_accents))
        self._h = _C.tok_new(raw, unk_token, continuing_subword_prefix, int(self.do_lower_case), strip,
                             int(self.clean_text), int(self.tokenize_chinese_chars), self.max_input_chars_per_word,
                             [a[0] for a in self._added], [a[1] for a in self._added])

    def __getstate__(self):  # picklable (e.g. for multiprocessing data loaders): rebuilt from the vocab
        return {"vocab": self._vocab, "kwargs": self._init_args}

    def __setstate__(self, state):
        self.__init__(state["vocab"], **state["kwargs"])

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, name_or_path, **overrides):
        """Load from an HF model directory (tokenizer.json, or vocab.txt + tokenizer_config.json), the names
        'distilbert-base-uncased' / 'bert-base-uncased' (bundled vocab, offline), or an HF hub id found in the
        local HF cache. Keyword overrides: do_lower_case, strip_accents, model_max_length, ..."""
        p = os.fspath(name_or_path)
        if os.path.isdir(p):
            return cls._from_dir(p, overrides)
        if os.path.isfile(p):
            if p.endswith(".json"):
                return cls._from_tokenizer_json(p, {}, overrides, p)
            return cls._from_vocab_txt(p, {}, overrides, p)
        if p in _BUNDLED:
            fname, kind = _BUNDLED[p]
            kw = dict(do_lower_case=True, model_max_length=512, name_or_path=p)
            if kind == "distilbert":
                kw["model_input_names"] = ["input_ids", "attention_mask"]
            kw.update(overrides)
            return cls._from_vocab_txt(str(_DATA / fname), {}, kw, p)
        snap = _find_in_hf_cache(p) if p.count("/") <= 1 and not p.startswith((".", "/")) else None
        if snap:
            return cls._from_dir(snap, overrides)
        raise OSError(
            "no tokenizer found for %r: it is not a directory, not a bundled name (%s), and not in the local Hugging "
            "Face cache (%s). Fix: download it once, e.g. `huggingface-cli download %s tokenizer.json vocab.txt "
            "tokenizer_config.json` (or `AutoTokenizer.from_pretrained(%r)` in transformers), or pass the folder "
            "that holds vocab.txt / tokenizer.json." % (p, ", ".join(sorted(_BUNDLED)), ", ".join(_hf_cache_dirs()),
                                                        p, p))

    @classmethod
    def _from_dir(cls, d, overrides):
        cfg = {}
        cfg_path = os.path.join(d, "tokenizer_config.json")
        if os.path.isfile(cfg_path):
            cfg = _read_json(cfg_path)
            if not isinstance(cfg, dict):
                raise CheckpointError("%s must hold a JSON object" % cfg_path)
            _check_tokenizer_config(cfg, cfg_path)
        stm = os.path.join(d, "special_tokens_map.json")
        if os.path.isfile(stm):
            m = _read_json(stm)
            if isinstance(m, dict):
                for k in _SPECIAL_NAMES:
                    if k in m and k not in cfg:
                        v = _field(m, k, stm, "", (str, dict, type(None)))
                        if isinstance(v, dict):
                            _field(v, "content", stm, k, (str,))
                        cfg[k] = v
        model_type = None
        if os.path.isfile(os.path.join(d, "config.json")):
            try:
                model_type = _read_json(os.path.join(d, "config.json")).get("model_type")
            except Exception:
                model_type = None
        kw = {"name_or_path": d}
        cls_name = str(cfg.get("tokenizer_class") or "")
        if model_type == "distilbert" or cls_name.startswith("DistilBert"):
            kw["model_input_names"] = ["input_ids", "attention_mask"]
        kw.update(overrides)
        tj, vt = os.path.join(d, "tokenizer.json"), os.path.join(d, "vocab.txt")
        if os.path.isfile(tj):
            return cls._from_tokenizer_json(tj, cfg, kw, d)
        if os.path.isfile(vt):
            return cls._from_vocab_txt(vt, cfg, kw, d)
        raise CheckpointError("%s has neither tokenizer.json nor vocab.txt; copy the tokenizer files of the model "
                              "there" % d)

    @staticmethod
    def _config_kwargs(cfg):
        kw = {}
        for k in ("do_lower_case", "strip_accents", "tokenize_chinese_chars", "clean_up_tokenization_spaces",
                  "padding_side", "truncation_side"):
            if k in cfg and cfg[k] is not None or k == "strip_accents" and k in cfg:
                kw[k] = cfg[k]
        for k in _SPECIAL_NAMES:
            if cfg.get(k) is not None:
                kw[k] = _content(cfg[k])
        if cfg.get("model_max_length") is not None:
            kw["model_max_length"] = int(min(cfg["model_max_length"], _LARGE))
        if isinstance(cfg.get("model_input_names"), list):
            kw["model_input_names"] = cfg["model_input_names"]
        return kw

    @classmethod
    def _from_vocab_txt(cls, path, cfg, overrides, name):
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise CheckpointError("cannot read the vocab %s: %s" % (path, e)) from None
        vocab = _decode_vocab_bytes(raw, path)
        kw = cls._config_kwargs(cfg)
        atd = cfg.get("added_tokens_decoder")
        if isinstance(atd, dict) and atd:
            try:
                added = [(_content(v), int(k), bool(v.get("special", True)) if isinstance(v, dict) else True)
                         for k, v in atd.items()]
            except (TypeError, ValueError) as e:
                raise CheckpointError("%s: bad added_tokens_decoder: %s" % (name, e)) from None
            kw["added_tokens"] = added
        kw.update(overrides)
        kw.setdefault("name_or_path", name)
        return cls(vocab, **kw)

    @classmethod
    def _from_tokenizer_json(cls, path, cfg, overrides, name):
        # Every field is type-checked: a wrong type raises CheckpointError naming the file and the JSON path
        # (e.g. "model.vocab['hello']", "added_tokens[3].id"), never an AttributeError from deep inside.
        j = _read_json(path)
        if not isinstance(j, dict) or "model" not in j:
            raise CheckpointError("%s is not a Hugging Face tokenizer.json (no 'model' object)" % path)
        F = lambda obj, key, jpath, types, default=_MISSING: _field(obj, key, path, jpath, types, default)
        m = F(j, "model", "", (dict,))
        mtype = F(m, "type", "model", (str,), "WordPiece")
        if mtype != "WordPiece":
            raise CheckpointError("%s holds a %s model; lyricnn supports WordPiece (BERT / DistilBERT) tokenizers"
                                  % (path, mtype))
        if "vocab" not in m:
            raise CheckpointError("%s: model.vocab is missing" % path)
        v = F(m, "vocab", "model", (dict, list))
        if isinstance(v, dict):
            n = len(v)
            vocab = [None] * n
            for tok, i in v.items():
                if not _is_json(i, (int,)) or not 0 <= i < n or vocab[i] is not None:
                    raise CheckpointError("%s: the vocab ids must be 0..%d, each once; model.vocab[%s] is %s"
                                          % (path, n - 1, json.dumps(tok), _json_type(i)))
                vocab[i] = tok
        else:  # [[token, score]] or [token]
            vocab = []
            for k, t in enumerate(v):
                tok = t[0] if isinstance(t, list) and t else t
                if not isinstance(tok, str):
                    raise CheckpointError("%s: model.vocab[%d] must be a token string (or [token, score]), got %s"
                                          % (path, k, _json_type(t)))
                vocab.append(tok)
        kw = cls._config_kwargs(cfg)
        kw["unk_token"] = F(m, "unk_token", "model", (str,), kw.get("unk_token", "[UNK]"))
        kw["continuing_subword_prefix"] = F(m, "continuing_subword_prefix", "model", (str,), "##")
        mic = F(m, "max_input_chars_per_word", "model", (int,), 100)
        if not 1 <= mic <= MAX_INPUT_CHARS_LIMIT:
            raise CheckpointError("%s: model.max_input_chars_per_word must be in [1, %d], got %d (100 is the BERT "
                                  "default)" % (path, MAX_INPUT_CHARS_LIMIT, mic))
        kw["max_input_chars_per_word"] = mic
        norm = F(j, "normalizer", "", (dict, type(None)), None)
        njp = "normalizer"
        if isinstance(norm, dict) and F(norm, "type", njp, (str,), None) == "Sequence":
            parts = F(norm, "normalizers", njp, (list,), [])
            for k, x in enumerate(parts):
                if not isinstance(x, dict):
                    raise CheckpointError("%s: normalizer.normalizers[%d] must be an object, got %s"
                                          % (path, k, _json_type(x)))
                F(x, "type", "normalizer.normalizers[%d]" % k, (str,), None)
            bert = [k for k, x in enumerate(parts) if x.get("type") == "BertNormalizer"]
            if len(bert) == 1 and len(parts) == 1:
                norm, njp = parts[0], "normalizer.normalizers[0]"
        if norm is None:
            kw.update(do_lower_case=False, strip_accents=False, tokenize_chinese_chars=False, clean_text=False)
        elif norm.get("type") == "BertNormalizer":
            kw["do_lower_case"] = F(norm, "lowercase", njp, (bool,), True)
            kw["strip_accents"] = F(norm, "strip_accents", njp, (bool, type(None)), None)
            kw["tokenize_chinese_chars"] = F(norm, "handle_chinese_chars", njp, (bool,), True)
            kw["clean_text"] = F(norm, "clean_text", njp, (bool,), True)
        else:
            raise CheckpointError("%s: normalizer %r is not supported (lyricnn implements BertNormalizer)"
                                  % (path, norm.get("type")))
        pre = F(j, "pre_tokenizer", "", (dict, type(None)), None)
        if pre is not None and F(pre, "type", "pre_tokenizer", (str,), None) != "BertPreTokenizer":
            raise CheckpointError("%s: pre_tokenizer %r is not supported (lyricnn implements BertPreTokenizer)"
                                  % (path, pre.get("type")))
        added = []
        for k, a in enumerate(F(j, "added_tokens", "", (list, type(None)), None) or []):
            ajp = "added_tokens[%d]" % k
            if not isinstance(a, dict) or "content" not in a or "id" not in a:
                raise CheckpointError("%s: bad added_tokens entry %r (%s must be an object with \"content\" and "
                                      "\"id\")" % (path, a, ajp))
            content = F(a, "content", ajp, (str,))
            tid = F(a, "id", ajp, (int,))
            flags = [F(a, f, ajp, (bool,), False) for f in ("normalized", "lstrip", "rstrip", "single_word")]
            if any(flags):
                raise CheckpointError("%s: added token %r uses normalized/lstrip/rstrip/single_word, which lyricnn does "
                                      "not support" % (path, content))
            added.append((content, tid, F(a, "special", ajp, (bool,), True)))
        kw["added_tokens"] = added
        pp = F(j, "post_processor", "", (dict, type(None)), None) or {}
        ptype = F(pp, "type", "post_processor", (str,), None) if pp else None
        if ptype == "BertProcessing":  # older files: {"sep": ["[SEP]", 102], "cls": ["[CLS]", 101]}
            toks = {}
            for key in ("cls", "sep"):
                x = F(pp, key, "post_processor", (list,))
                if len(x) != 2 or not isinstance(x[0], str) or not _is_json(x[1], (int,)):
                    raise CheckpointError("%s: post_processor.%s must be [token string, id], got %s"
                                          % (path, key, json.dumps(x)[:60]))
                toks[key] = x[0]
            kw["cls_token"], kw["sep_token"] = toks["cls"], toks["sep"]
        elif ptype == "TemplateProcessing":
            single = []
            for k, x in enumerate(F(pp, "single", "post_processor", (list,), [])):
                xjp = "post_processor.single[%d]" % k
                if not isinstance(x, dict):
                    raise CheckpointError("%s: %s must be an object, got %s" % (path, xjp, _json_type(x)))
                if "SpecialToken" in x:
                    st = F(x, "SpecialToken", xjp, (dict,))
                    single.append(F(st, "id", xjp + ".SpecialToken", (str,)))
            if len(single) == 2:
                kw.setdefault("cls_token", single[0])
                kw.setdefault("sep_token", single[1])
        elif pp:
            raise CheckpointError("%s: post_processor %r is not supported (lyricnn implements the BERT template)"
                                  % (path, ptype))
        kw.update(overrides)
        kw.setdefault("name_or_path", name)
        if "added_tokens" in kw and kw["added_tokens"] == []:
            kw["added_tokens"] = None
        return cls(vocab, **kw)

    # ------------------------------------------------------------------ vocab
    @property
    def vocab_size(self):
        """Size of the base vocab (without added tokens beyond it)."""
        return len(self._vocab)

    def __len__(self):
        return len(self._vocab) + len(self._id2tok)

    def get_vocab(self):
        """token -> id (a copy)."""
        return dict(self._tok2id)

    @property
    def all_special_tokens(self):
        return [c for c, i, s in self._added if s]

    @property
    def all_special_ids(self):
        return [i for c, i, s in self._added if s]

    def __repr__(self):
        return ("Tokenizer(name_or_path=%r, vocab_size=%d, do_lower_case=%s, strip_accents=%r, model_max_length=%d)"
                % (self.name_or_path, self.vocab_size, self.do_lower_case, self.strip_accents, self.model_max_length))

    def convert_tokens_to_ids(self, tokens):
        """A token or list of tokens -> id(s); unknown tokens give unk_token_id."""
        if isinstance(tokens, str):
            return self._tok2id.get(tokens, self.unk_token_id)
        return [self._tok2id.get(t, self.unk_token_id) for t in tokens]

    def _id_to_token(self, i):
        """Token of an id; None for an unknown id (as transformers); negative ids are an error."""
        i = int(i)
        if 0 <= i < len(self._vocab):
            return self._vocab[i]
        if i < 0:
            raise ValueError("token ids must be >= 0, got %d" % i)
        return self._id2tok.get(i)

    def convert_ids_to_tokens(self, ids, skip_special_tokens=False):
        """An id or list/array of ids -> token(s); unknown ids give None (as transformers)."""
        if isinstance(ids, (int, np.integer)):
            return self._id_to_token(ids)
        return [self._id_to_token(i) for i in np.asarray(ids).reshape(-1).tolist()
                if not (skip_special_tokens and i in self._special_ids)]

    # ------------------------------------------------------------------ encoding
    @staticmethod
    def _as_texts(x, argname):
        """-> (list of texts, is_single)."""
        if isinstance(x, str):
            return [x], True
        if isinstance(x, (list, tuple)):
            return x, False
        if isinstance(x, np.ndarray):
            if x.ndim == 0:
                return [x.item()], True
            if x.ndim != 1:
                raise ValueError("%s must be 1-D; got an array of shape %s" % (argname, x.shape))
            return x.tolist(), False
        if hasattr(x, "tolist") and hasattr(x, "index") and hasattr(x, "dtype"):  # pandas Series / Index
            return list(x.tolist()), False
        if x is None:
            raise TypeError("%s is None; pass a str or a list of str" % argname)
        raise TypeError("%s must be a str, a list/tuple of str, a numpy array or a pandas Series; got %s"
                        % (argname, type(x).__name__))

    def _strategies(self, padding, truncation, max_length, pad_to_multiple_of, has_pair):
        max_length = check_int(max_length, "max_length", min=0, allow_none=True)
        pad_to_multiple_of = check_int(pad_to_multiple_of, "pad_to_multiple_of", min=1, allow_none=True)
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"
        if padding is False or padding is None or padding == "do_not_pad":
            pad = 0
        elif padding is True or padding == "longest":
            pad = 1
        elif padding == "max_length":
            pad = 2
        else:
            raise ValueError("padding must be False, True, 'longest', 'max_length' or 'do_not_pad'; got %r" % (padding,))
        if truncation is None or truncation is False or truncation == "do_not_truncate":
            trunc = 0
        elif truncation is True:
            trunc = 1
        elif truncation in _TRUNC:
            trunc = _TRUNC[truncation]
        else:
            raise ValueError("truncation must be True, False, 'longest_first', 'only_first', 'only_second', "
                             "'head_tail' or 'do_not_truncate'; got %r" % (truncation,))
        if max_length is None:
            if pad == 2:
                if self.model_max_length >= _LARGE:
                    pad = 0
                else:
                    max_length = self.model_max_length
            if trunc:
                if self.model_max_length >= _LARGE:
                    trunc = 0
                else:
                    max_length = self.model_max_length
        if trunc and pad and pad_to_multiple_of is not None and max_length is not None \
                and max_length % pad_to_multiple_of:
            raise ValueError("Truncation and padding are both activated but truncation length (%d) is not a multiple "
                             "of pad_to_multiple_of (%d)." % (max_length, pad_to_multiple_of))
        return pad, trunc, max_length

    @staticmethod
    def _check_windows(trunc, max_length, stride, overflow, head_tokens, nspec, has_pair):
        """Refuse a stride that leaves windows no room to advance, and head_tail misuse; -> head_tokens for C."""
        budget = None if max_length is None else max_length - nspec
        if trunc and stride and stride >= budget:
            fix = ("a stride below %d or " % budget) if budget > 0 else "stride=0 or "
            raise ValueError(
                "stride=%d is too large for max_length=%d: a window holds max_length - %d special tokens = %d tokens "
                "of %s and consecutive windows overlap by stride tokens, so they could not advance (transformers: "
                "the stride must be less than the effective max length, max_length minus the special tokens); use "
                "%sa max_length of at least %d" % (stride, max_length, nspec, budget,
                                                   "the pair" if has_pair else "the text", fix, stride + nspec + 1))
        if trunc and max_length >= 2 and stride > max_length - 2:  # only reachable without special tokens
            raise ValueError(
                "stride=%d is too large for max_length=%d: transformers refuses a stride above max_length - 2 even "
                "without special tokens (tokenizer stride set to %d, which is greater than or equal to its effective "
                "max length of %d), and lyricnn does too; use a stride of at most %d or a max_length of at least %d"
                % (stride, max_length, stride, max_length - 2, max_length - 2, stride + 2))
        if trunc != _TRUNC["head_tail"]:
            if head_tokens is not None:
                raise ValueError("head_tokens=%r is only used with truncation='head_tail'" % (head_tokens,))
            return 0
        if has_pair:
            raise ValueError("truncation='head_tail' takes single texts, not pairs; use 'longest_first', "
                             "'only_first' or 'only_second' with text_pair")
        if overflow:
            raise ValueError("truncation='head_tail' keeps one window (head + tail) per text; it does not combine "
                             "with return_overflowing_tokens=True (use truncation=True for every window)")
        h = check_int(HEAD_TOKENS_DEFAULT if head_tokens is None else head_tokens,
                      "head_tokens (tokens kept from the start with truncation='head_tail')", min=0)
        if h > budget:
            raise ValueError("head_tokens=%d is too large for max_length=%d: a text keeps max_length - %d special "
                             "tokens = %d tokens, the first head_tokens and then the last ones; use head_tokens <= %d"
                             % (h, max_length, nspec, budget, budget))
        return h

    def _check_sizes(self, rows, pad, max_length, given, pad_to_multiple_of):
        """Refuse absurd lengths before the engine allocates rows x width ids (see MAX_LENGTH_LIMIT)."""
        src = "max_length" if given is not None else "model_max_length (from the tokenizer config)"
        # a model_max_length beyond the cap only matters when it is a padding width (truncating there is a no-op)
        if max_length is not None and max_length > MAX_LENGTH_LIMIT and (given is not None or pad == 2):
            raise ValueError("%s=%d is too large: the tokenizer accepts at most %d tokens per text (BERT models take "
                             "max_position_embeddings, 512 for the bundled ones); pass max_length=512 or the "
                             "model's limit" % (src, max_length, MAX_LENGTH_LIMIT))
        if pad_to_multiple_of is not None and pad_to_multiple_of > MAX_LENGTH_LIMIT:
            raise ValueError("pad_to_multiple_of=%d is too large: at most %d; use a small multiple such as 8"
                             % (pad_to_multiple_of, MAX_LENGTH_LIMIT))
        width = max_length if pad == 2 else (pad_to_multiple_of if pad and pad_to_multiple_of else 0)
        if width and rows * width > MAX_PADDED_CELLS:
            raise ValueError("padding %d texts to %d tokens would allocate %d ids per output array (%.1f GiB as "
                             "int64), more than the %d this tokenizer allows; use a smaller %s, padding=True "
                             "(pad to the longest text) or tokenize in smaller batches"
                             % (rows, width, rows * width, rows * width * 8 / 2**30, MAX_PADDED_CELLS,
                                src if pad == 2 else "pad_to_multiple_of"))

    def __call__(self, text, text_pair=None, add_special_tokens=True, padding=False, truncation=None,
                 max_length=None, stride=0, pad_to_multiple_of=None, padding_side=None, return_tensors=None,
                 return_token_type_ids=None, return_attention_mask=None, return_overflowing_tokens=False,
                 return_offsets_mapping=False, return_special_tokens_mask=False, return_length=False,
                 head_tokens=None, dtype=np.int64):
        """Encode a text or a batch (str, list/tuple of str, numpy array, pandas Series), optionally with pairs.

        Returns a BatchEncoding with input_ids, token_type_ids (BERT), attention_mask and, if asked,
        offset_mapping, special_tokens_mask and length. Padded batches are 2-D numpy arrays (dtype int64 or
        int32); unpadded batches are lists of 1-D arrays; a single str gives 1-D arrays.

        ``return_overflowing_tokens=True`` with truncation returns every window of every text, as
        ``BertTokenizerFast``: each window holds [CLS], up to ``max_length - 2`` tokens and [SEP] (pairs: the
        truncated sequence is cut into windows, see ``truncation``), consecutive windows overlap by ``stride``
        tokens, and ``overflow_to_sample_mapping`` gives the text of each window (output rows are windows;
        a single str gives a batch of its windows).

        ``truncation='head_tail'`` (lyricnn's own, single texts only) keeps the first ``head_tokens`` tokens
        (default 128) and the last ``max_length - 2 - head_tokens`` of a text that is too long."""
        texts, single = self._as_texts(text, "text")
        pairs = None
        if single and isinstance(text_pair, str) and text_pair == "":
            text_pair = None  # as transformers: an empty pair for a single text means no pair
        if text_pair is not None:
            pairs, single_p = self._as_texts(text_pair, "text_pair")
            if single_p != single:
                raise ValueError("text and text_pair must both be a str or both be batches")
            if len(pairs) != len(texts):
                raise ValueError("text_pair has %d texts but text has %d; pass one pair per text"
                                 % (len(pairs), len(texts)))
        dt = np.dtype(dtype)
        if dt not in (np.dtype(np.int64), np.dtype(np.int32)):
            raise ValueError("dtype must be np.int64 or np.int32, got %s" % dt)
        if return_tensors not in (None, "np", "pt"):
            raise ValueError("return_tensors must be None, 'np' or 'pt', got %r" % (return_tensors,))
        given = max_length
        pad, trunc, max_length = self._strategies(padding, truncation, max_length, pad_to_multiple_of,
                                                  pairs is not None)
        self._check_sizes(len(texts), pad, max_length, given, pad_to_multiple_of)
        nspec = (3 if pairs is not None else 2) if add_special_tokens else 0
        if trunc and max_length is not None and max_length < nspec:
            raise ValueError("max_length=%d is too small for the %d special tokens a %s needs ([CLS] ... [SEP]); use "
                             "max_length >= %d" % (max_length, nspec, "pair" if pairs is not None else "text",
                                                   nspec + 1))
        stride = check_int(stride, "stride (tokens shared by consecutive windows)", min=0)
        overflow = bool(return_overflowing_tokens)
        head = self._check_windows(trunc, max_length, stride, overflow, head_tokens, nspec, pairs is not None)
        if overflow:
            single = False  # as transformers: the windows of one text are a batch
        if self.truncation_side not in ("right", "left"):
            raise ValueError("truncation_side must be 'right' or 'left', got %r" % (self.truncation_side,))
        side = padding_side or self.padding_side
        if side not in ("right", "left"):
            raise ValueError("padding_side must be 'right' or 'left', got %r" % (side,))
        want_type = ("token_type_ids" in self.model_input_names) if return_token_type_ids is None \
            else bool(return_token_type_ids)
        want_mask = True if return_attention_mask is None else bool(return_attention_mask)
        r = _C.tok_encode(self._h, texts if isinstance(texts, (list, tuple)) else list(texts), pairs,
                          int(bool(add_special_tokens)), trunc, int(max_length or 0), self.cls_token_id,
                          self.sep_token_id, pad, int(max_length or 0), int(pad_to_multiple_of or 0),
                          int(side == "left"), self.pad_token_id, int(want_type), int(want_mask),
                          int(bool(return_offsets_mapping)), int(bool(return_special_tokens_mask)),
                          int(dt == np.int32), int(self.truncation_side == "left"), stride if trunc else 0,
                          int(overflow and bool(trunc)), head, MAX_PADDED_CELLS)
        splits = r.pop("row_splits", None)
        length = r.pop("length")
        mapping = r.pop("overflow_to_sample_mapping", None)
        out = BatchEncoding()
        if splits is not None and not single:
            sl = splits.tolist()
            bounds = list(zip(sl[:-1], sl[1:]))
        for k in ("input_ids", "token_type_ids", "attention_mask", "offset_mapping", "special_tokens_mask"):
            if k not in r:
                continue
            a = r[k]
            if splits is not None:
                if single:
                    pass  # the flat array is the one row
                elif return_tensors is not None:
                    raise ValueError("Unable to create a %s tensor from rows of different lengths; use padding=True "
                                     "or padding='max_length' with truncation=True" % return_tensors)
                else:
                    a = [a[i:j] for i, j in bounds]
            elif single:
                a = a[0]
            out[k] = a
        if return_length:
            if pad:  # HF reports the length after padding
                length = np.diff(splits).astype(dt) if splits is not None else \
                    np.full_like(length, r["input_ids"].shape[-1])
            out["length"] = length[0] if single else length
        if overflow:
            out["overflow_to_sample_mapping"] = mapping if mapping is not None else np.arange(len(texts), dtype=dt)
        if return_tensors == "pt":
            import torch
            for k in list(out):
                out[k] = torch.from_numpy(np.asarray(out[k]))
        return out

    def encode(self, text, text_pair=None, add_special_tokens=True, padding=False, truncation=None, max_length=None,
               **kwargs):
        """One text (and optional pair) -> list of ids."""
        if not isinstance(text, str):
            raise TypeError("encode() takes one str; got %s (use tok(texts) for batches)" % type(text).__name__)
        enc = self(text, text_pair, add_special_tokens=add_special_tokens, padding=padding, truncation=truncation,
                   max_length=max_length, return_attention_mask=False, return_token_type_ids=False, **kwargs)
        return enc["input_ids"].tolist()

    def tokenize(self, text, text_pair=None, add_special_tokens=False):
        """One text -> list of WordPiece tokens (no special tokens unless asked)."""
        if not isinstance(text, str):
            raise TypeError("tokenize() takes one str; got %s" % type(text).__name__)
        ids = self.encode(text, text_pair, add_special_tokens=add_special_tokens)
        return [self._id_to_token(i) for i in ids]

    # ------------------------------------------------------------------ decoding
    @staticmethod
    def clean_up_tokenization(s):
        """Remove spaces before punctuation and in English contractions (as transformers does)."""
        return (s.replace(" .", ".").replace(" ?", "?").replace(" !", "!").replace(" ,", ",").replace(" ' ", "'")
                .replace(" n't", "n't").replace(" 'm", "'m").replace(" 's", "'s").replace(" 've", "'ve")
                .replace(" 're", "'re"))

    @staticmethod
    def _wp_cleanup(s):
        # the WordPiece decoder's own per-token cleanup (tokenizers decoders::wordpiece::cleanup)
        return (s.replace(" .", ".").replace(" ?", "?").replace(" !", "!").replace(" ,", ",").replace(" ' ", "'")
                .replace(" n't", "n't").replace(" 'm", "'m").replace(" do not", " don't").replace(" 's", "'s")
                .replace(" 've", "'ve").replace(" 're", "'re"))

    def decode(self, token_ids, skip_special_tokens=False, clean_up_tokenization_spaces=None):
        """ids -> text, as BertTokenizerFast.decode."""
        if isinstance(token_ids, (int, np.integer)):
            token_ids = [int(token_ids)]
        ids = np.asarray(token_ids)
        if ids.ndim > 1:
            raise ValueError("decode() takes one sequence of ids; use batch_decode() for a batch")
        prefix = self.continuing_subword_prefix
        parts = []
        for i in ids.reshape(-1).tolist():
            if skip_special_tokens and i in self._special_ids:
                continue
            tok = self._id_to_token(i)
            if tok is None:  # unknown ids are skipped, as tokenizers does
                continue
            if parts:
                tok = tok[len(prefix):] if tok.startswith(prefix) else " " + tok
            parts.append(self._wp_cleanup(tok))
        text = "".join(parts)
        cu = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        return self.clean_up_tokenization(text) if cu else text

    def batch_decode(self, sequences, skip_special_tokens=False, clean_up_tokenization_spaces=None):
        """A batch of id sequences (list of lists / 2-D array) -> list of texts."""
        return [self.decode(s, skip_special_tokens, clean_up_tokenization_spaces) for s in sequences]

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, save_directory):
        """Write vocab.txt, tokenizer_config.json, special_tokens_map.json and tokenizer.json that
        transformers' BertTokenizerFast (and lyricnn) load identically. Returns the file paths."""
        d = os.fspath(save_directory)
        os.makedirs(d, exist_ok=True)
        paths = []
        p = os.path.join(d, "vocab.txt")
        with open(p, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(self._vocab) + "\n")
        paths.append(p)
        specials = {k: getattr(self, k) for k in _SPECIAL_NAMES}
        atd = {str(i): {"content": c, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                        "special": s} for c, i, s in self._added}
        cfg = dict(added_tokens_decoder=atd, clean_up_tokenization_spaces=self.clean_up_tokenization_spaces,
                   do_lower_case=self.do_lower_case, model_max_length=self.model_max_length,
                   strip_accents=self.strip_accents, tokenize_chinese_chars=self.tokenize_chinese_chars,
                   tokenizer_class="BertTokenizer", padding_side=self.padding_side,
                   truncation_side=self.truncation_side,
                   model_input_names=self.model_input_names, **specials)
        p = os.path.join(d, "tokenizer_config.json")
        with open(p, "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2, ensure_ascii=False)
        paths.append(p)
        p = os.path.join(d, "special_tokens_map.json")
        with open(p, "w", encoding="utf-8") as f:
            json.dump(specials, f, indent=2, ensure_ascii=False)
        paths.append(p)
        vocab = {t: i for i, t in enumerate(self._vocab)}
        cls_, sep = self.cls_token, self.sep_token
        tj = {
            "version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
                              "normalized": False, "special": s} for c, i, s in self._added],
            "normalizer": {"type": "BertNormalizer", "clean_text": self.clean_text,
                           "handle_chinese_chars": self.tokenize_chinese_chars, "strip_accents": self.strip_accents,
                           "lowercase": self.do_lower_case},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": cls_, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                           {"SpecialToken": {"id": sep, "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": cls_, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": sep, "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                         {"SpecialToken": {"id": sep, "type_id": 1}}],
                "special_tokens": {cls_: {"id": cls_, "ids": [self.cls_token_id], "tokens": [cls_]},
                                   sep: {"id": sep, "ids": [self.sep_token_id], "tokens": [sep]}}},
            "decoder": {"type": "WordPiece", "prefix": self.continuing_subword_prefix, "cleanup": True},
            "model": {"type": "WordPiece", "unk_token": self.unk_token,
                      "continuing_subword_prefix": self.continuing_subword_prefix,
                      "max_input_chars_per_word": self.max_input_chars_per_word, "vocab": vocab},
        }
        p = os.path.join(d, "tokenizer.json")
        with open(p, "w", encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False)
        paths.append(p)
        return tuple(paths)
