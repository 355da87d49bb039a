"""LoRA adapters with peft's semantics and file format, on the C engine.

    m = lyricnn.SequenceClassifier.from_pretrained(base, num_labels=3,
                                                   lora=dict(r=8, alpha=16, dropout=0.1, target_modules=("q_lin", "v_lin")))
    m.save_adapter("adapter/")        # adapter_config.json + adapter_model.safetensors, as peft writes them
    m2 = lyricnn.SequenceClassifier.from_pretrained(base, adapter="adapter/")   # an adapter of peft's or ours

The branch y = W x + b + scale * B A dropout(x) runs in C (the backend op pair lora_forward /
lora_backward, csrc/core/backend.h) on the encoder's linears; the base weights are frozen (no weight
gradients, no optimizer state), the head trains (peft's modules_to_save for sequence classification).

This module holds what is not the engine: the configuration (`normalize_lora`), the target modules and
their matching (peft's rules: a name matches a module whose full name equals it or ends with "." + it; a
string other than "all-linear" is a regular expression matched against the full name), the adapter
files (`write_adapter`, `read_adapter`) and peft's adapter_config.json (`lora_from_peft_config`).

The regular expressions (target_modules, layers_pattern, exclude_modules; adapter configs come from the
internet) are matched in bounded time with Python's semantics by lyricnn._patterns: RE2 when the optional
google-re2 is installed, else a bounded Pike VM; backreferences and lookaround are refused by name.
"""
import json
import math
import os
import re

import numpy as np

from ._C import CheckpointError
from ._patterns import PatternError, compile_untrusted
from ._validate import check_bool, check_choice, check_float, check_int

__all__ = ["normalize_lora", "LORA_KEYS", "ADAPTER_CONFIG", "ADAPTER_WEIGHTS"]

LORA_KEYS = ("r", "alpha", "dropout", "target_modules", "rslora", "init", "bias", "modules_to_save")
_ALIASES = {"lora_alpha": "alpha", "lora_dropout": "dropout", "use_rslora": "rslora", "init_lora_weights": "init"}
DEFAULTS = dict(r=8, alpha=16.0, dropout=0.1, target_modules=None, rslora=False, init="kaiming", bias="none",
                modules_to_save=None)
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_BIN = "adapter_model.bin"
PREFIX = "base_model.model."  # peft's prefix of every tensor of a PeftModel
#: The state_dict() entry of a model with adapters that records whether they are merged into the base weights
#: (int8 0 / 1): load_state_dict refuses a state of the other kind (a merged state into an unmerged model would
#: apply the adapters twice, as peft silently does).
MERGED_KEY = "lyricnn.lora_merged"

# The sites of models/encoder.h (LNN_LORA_Q .. LNN_LORA_F2), as HF module names inside a layer.
SITES = {"distilbert": ("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "ffn.lin1",
                        "ffn.lin2"),
         "bert": ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                  "intermediate.dense", "output.dense")}
SHORT = {"distilbert": ("q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"),
         "bert": ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense")}
LAYER = {"distilbert": "distilbert.transformer.layer.%d.", "bert": "bert.encoder.layer.%d."}
MODEL_PREFIX = {"distilbert": "distilbert.", "bert": "bert."}
POOLER = "bert.pooler.dense"
DEFAULT_TARGETS = {"distilbert": ["q_lin", "v_lin"], "bert": ["query", "value"]}  # peft's BERT default
ALL_LINEAR = "all-linear"


def normalize_lora(lora):
    """Check a lora= argument and fill in the defaults; returns a new dict with the keys LORA_KEYS.

    r: rank, an int >= 1 (8); alpha: > 0 (16); dropout on the branch's input, in [0, 1) (0.1);
    target_modules: module names (HF names such as "q_lin" or "query", full names, or "all-linear"), a
    regular expression string, or None for the model's default (query and value); rslora: scale
    alpha / sqrt(r) instead of alpha / r; init: "kaiming" (A kaiming-uniform with a=sqrt(5), B zeros, as
    peft) or "gaussian" (A normal(0, 1/r)); bias: "none", "all" (every bias trains) or "lora_only" (the
    adapted layers' biases train); modules_to_save: the head modules that train fully (None: the whole
    head). peft's spellings (lora_alpha, lora_dropout, use_rslora, init_lora_weights) are accepted."""
    if lora is True:
        lora = {}
    if not isinstance(lora, dict):
        raise TypeError("lora must be a dict such as dict(r=8, alpha=16, dropout=0.1, target_modules=['query', "
                        "'value']) (or True for the defaults), got %s" % type(lora).__name__)
    spec = {}
    for k, v in lora.items():
        key = _ALIASES.get(k, k)
        if key not in LORA_KEYS:
            raise ValueError("lora has an unknown key %r; known keys: %s" % (k, ", ".join(LORA_KEYS)))
        if key in spec:
            raise ValueError("lora sets %r twice (as %r and under another spelling)" % (key, k))
        spec[key] = v
    out = dict(DEFAULTS)
    out.update(spec)
    out["r"] = check_int(out["r"], "lora r (the rank)", min=1, max=65536)
    out["alpha"] = check_float(out["alpha"], "lora alpha", min=0, min_inclusive=False)
    out["dropout"] = check_float(out["dropout"] or 0.0, "lora dropout", min=0, max=1, max_inclusive=False)
    out["rslora"] = check_bool(out["rslora"], "lora rslora")
    init = out["init"]
    if init is True:
        init = "kaiming"
    if isinstance(init, str):
        init = init.lower()
    out["init"] = check_choice(init, "lora init", ("kaiming", "gaussian"))
    out["bias"] = check_choice(out["bias"], "lora bias", ("none", "all", "lora_only"))
    out["target_modules"] = _names_arg(out["target_modules"], "lora target_modules", allow_str=True)
    if isinstance(out["target_modules"], str) and out["target_modules"] != ALL_LINEAR:
        compile_untrusted(out["target_modules"], "lora target_modules")  # PatternError (a ValueError) names it
    out["modules_to_save"] = _names_arg(out["modules_to_save"], "lora modules_to_save", allow_str=False)
    return out


def _names_arg(v, what, allow_str):
    if v is None or (allow_str and isinstance(v, str)):
        return v
    if isinstance(v, str):
        v = [v]
    try:
        names = list(v)
    except TypeError:
        raise TypeError("%s must be a list of module names%s, got %r" % (what, " or a string" if allow_str else "", v)) \
            from None
    if not names or not all(isinstance(n, str) and n for n in names):
        raise TypeError("%s must be a non-empty list of module names (strings), got %r" % (what, v))
    return names


def scaling(spec):
    """peft's scaling: alpha / r, or alpha / sqrt(r) with rslora."""
    return spec["alpha"] / (math.sqrt(spec["r"]) if spec["rslora"] else spec["r"])


def linear_modules(model_type, n_layers, pooler):
    """The linears an adapter can sit on: [(full HF module name, layer, site)], site 0..5 per layer
    (models/encoder.h LNN_LORA_*) and 6 for the pooler (layer -1)."""
    out = [(LAYER[model_type] % l + SITES[model_type][k], l, k) for l in range(n_layers) for k in range(6)]
    if pooler:
        out.append((POOLER, -1, 6))
    return out


def _matches(entries, key, what="target_modules"):
    """peft's target rule: a regex (str) fullmatches the key (in bounded time: lyricnn._patterns); a list entry
    equals it or is a dotted suffix."""
    if isinstance(entries, str):
        return compile_untrusted(entries, what).fullmatch(key)
    return key in entries or any(key.endswith("." + e) for e in entries)


_LAYER_DEFAULT = re.compile(r".*?\.[^.]*\.(?P<idx>\d+)\.")  # ours, not from a file


def _layer_regex(p):
    """peft's layers_pattern regex around a pattern p (text from a file), checked and compiled."""
    return compile_untrusted(r"(?:^|.*?\.)%s\.(?P<idx>\d+)\." % p, "layers_pattern",
                             shown="%r (peft matches it as (?:^|.*?\\.)%s\\.(?P<idx>\\d+)\\.)" % (p, p))


def _layer_ok(key, layers, pattern):
    """peft's layers_to_transform / layers_pattern rule for a matched key."""
    if layers is None or (isinstance(layers, list) and not layers):
        return True
    idx = None
    if not pattern:
        m = _LAYER_DEFAULT.match(key)
        idx = m.group("idx") if m else None
    else:
        for p in ([pattern] if isinstance(pattern, str) else pattern):
            idx = _layer_regex(p).match_group(key, "idx")
            if idx is not None:
                break
    if idx is None:
        return False
    idx = int(idx)
    return idx == layers if isinstance(layers, int) else idx in layers


def check_layer_args(layers_to_transform, layers_pattern, exclude_modules, target_modules, where):
    """adapter_config.json's layers_to_transform, layers_pattern and exclude_modules, checked as peft's
    LoraConfig does (and their patterns compiled): CheckpointError naming the file, the field and the fix."""
    def bad(msg):
        raise CheckpointError("%s: %s" % (where, msg))
    ltt, lpat, excl = layers_to_transform, layers_pattern, exclude_modules
    if ltt is not None:
        items = ltt if isinstance(ltt, list) else [ltt]
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in items):
            bad("layers_to_transform must be a layer index (an int >= 0) or a list of them, got %r" % (ltt,))
        if isinstance(target_modules, str):
            bad("layers_to_transform cannot be used when target_modules is a regular expression (%r); peft's "
                "LoraConfig refuses this config too" % target_modules)
    if lpat is not None:
        pats = lpat if isinstance(lpat, list) else [lpat]
        if not all(isinstance(p, str) for p in pats):
            bad("layers_pattern must be a str (the name of the layer list, e.g. 'layer') or a list of them, got %r"
                % (lpat,))
        if isinstance(target_modules, str):
            bad("layers_pattern cannot be used when target_modules is a regular expression (%r); peft's LoraConfig "
                "refuses this config too" % target_modules)
        if pats and any(pats) and ltt is None:
            bad("layers_pattern is set (%r) but layers_to_transform is not; peft's LoraConfig refuses this config "
                "too: give the layer indices" % (lpat,))
        try:
            for p in pats:
                _layer_regex(p)
        except PatternError as e:
            bad(str(e))
    if excl is not None:
        if isinstance(excl, str):
            try:
                compile_untrusted(excl, "exclude_modules")
            except PatternError as e:
                bad(str(e))
        elif not isinstance(excl, list) or not all(isinstance(e, str) and e for e in excl):
            bad("exclude_modules must be a regular expression (a str) or a list of module names, got %r" % (excl,))


def head_modules(head_names):
    """The head's modules (the tensor names without their last part), in order."""
    out = []
    for n in head_names:
        mod = n.rsplit(".", 1)[0]
        if mod not in out:
            out.append(mod)
    return out


def plan(spec, model_type, n_layers, pooler, head_names, strict=True, layers_to_transform=None, layers_pattern=None,
         exclude_modules=None):
    """Where the adapters go: dict(sites=[(module, layer, site)], masks=[per-layer bit mask], pooler=bool,
    save=[head modules that train], modules=[every adaptable module]).

    pooler: the pooler is used by the head (BERT's HF head) and may take an adapter. strict: every
    target_modules entry must match a linear and every modules_to_save entry a head module (user input);
    an adapter file's config is read leniently (peft's default modules_to_save lists "score")."""
    mods = linear_modules(model_type, n_layers, pooler)
    heads = head_modules(head_names)
    save_entries = spec["modules_to_save"]
    if save_entries is None:
        save = list(heads)
    else:
        avail = heads + (["bert.pooler"] if pooler else [])
        save = [h for h in avail if any(h.endswith(e) for e in save_entries)]
        if strict:
            bad = [e for e in save_entries if e != "score" and not any(h.endswith(e) for h in avail)]
            if bad:
                raise ValueError("lora modules_to_save: %s matches no module of the head; the head's modules are %s"
                                 % (", ".join(map(repr, bad)), ", ".join(avail)))
    targets = spec["target_modules"]
    if targets is None:
        targets = DEFAULT_TARGETS[model_type]
    full = [m for m, _, _ in mods]
    if targets == ALL_LINEAR:
        chosen = [m for m in mods]
    else:
        if strict and not isinstance(targets, str):
            known = set(heads) | {"pre_classifier", "classifier"}
            for e in targets:
                if any(e == h or h.endswith("." + e) for h in known):
                    raise ValueError("lora target_modules: %r is the classification head, which trains fully (peft's "
                                     "modules_to_save); target the encoder's linears: %s"
                                     % (e, ", ".join(SHORT[model_type])))
                if not any(_matches([e], m) for m in full):
                    raise ValueError("lora target_modules: %r matches no linear layer of this %s model; valid names: %s"
                                     "%s (or full module names such as %s), or 'all-linear'"
                                     % (e, model_type, ", ".join(SHORT[model_type]), ", dense (pooler)" if pooler else "",
                                        full[0] if full else POOLER))
        chosen = [m for m in mods if _matches(targets, m[0]) and _layer_ok(m[0], layers_to_transform, layers_pattern)]
    if exclude_modules:
        chosen = [m for m in chosen if not _matches(exclude_modules, m[0], "exclude_modules")]
    # peft never puts an adapter inside a module it saves whole
    chosen = [m for m in chosen if not any(re.match(r"(^|.*\.)%s($|\..*)" % re.escape(s), m[0]) for s in save)]
    if not chosen and layers_to_transform is not None and layers_to_transform != []:
        idx = layers_to_transform if isinstance(layers_to_transform, list) else [layers_to_transform]
        if not any(0 <= i < n_layers for i in idx):
            raise ValueError("layers_to_transform=%r selects no layer of this %d-layer %s model (its layers are 0 to "
                             "%d); the adapter was made for a deeper model or the indices are wrong"
                             % (layers_to_transform, n_layers, model_type, n_layers - 1))
        raise ValueError("layers_to_transform=%r with layers_pattern=%r selects no linear layer of this %s model: "
                         "its layers are named %s" % (layers_to_transform, layers_pattern, model_type,
                                                      LAYER[model_type] % 0))
    if not chosen:
        raise ValueError("lora target_modules=%r selects no linear layer of this %s model; valid names: %s, or "
                         "'all-linear'" % (targets, model_type, ", ".join(SHORT[model_type])))
    masks = [0] * n_layers
    for _, l, k in chosen:
        if l >= 0:
            masks[l] |= 1 << k
    return dict(sites=chosen, masks=masks, pooler=any(k == 6 for _, _, k in chosen), save=save, modules=mods)


def c_name(module, model_type):
    """The engine's (prefix-free) name of a module: distilbert.transformer.layer.0... -> transformer.layer.0..."""
    p = MODEL_PREFIX[model_type]
    return module[len(p):] if module.startswith(p) else module


# ------------------------------------------------------------------ adapter files

def write_adapter(directory, tensors, config):
    """adapter_config.json and adapter_model.safetensors (peft's metadata {"format": "pt"}), atomically."""
    from . import checkpoint
    d = os.fspath(directory)
    os.makedirs(d, exist_ok=True)
    checkpoint.save_safetensors(os.path.join(d, ADAPTER_WEIGHTS), tensors, metadata={"format": "pt"})
    tmp = os.path.join(d, "." + ADAPTER_CONFIG + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    os.replace(tmp, os.path.join(d, ADAPTER_CONFIG))


def read_adapter(directory):
    """(adapter_config dict, {name: float32 array}) of a peft adapter directory (safetensors or .bin)."""
    from . import checkpoint
    d = os.fspath(directory)
    cfg_path = os.path.join(d, ADAPTER_CONFIG)
    if not os.path.isdir(d) or not os.path.isfile(cfg_path):
        raise CheckpointError("%s: not an adapter directory (%s not found); write one with model.save_adapter(dir) "
                              "or peft's PeftModel.save_pretrained(dir)" % (d, ADAPTER_CONFIG))
    cfg = checkpoint.read_config(cfg_path)
    st, pt = os.path.join(d, ADAPTER_WEIGHTS), os.path.join(d, ADAPTER_BIN)
    if os.path.isfile(st):
        tensors = checkpoint.read_safetensors(st, to_float32=True)
    elif os.path.isfile(pt):
        tensors = checkpoint.load_state_dict(pt)
    else:
        raise CheckpointError("%s: has %s but no %s (nor %s)" % (d, ADAPTER_CONFIG, ADAPTER_WEIGHTS, ADAPTER_BIN))
    return cfg, {k: np.asarray(v) for k, v in tensors.items()}


def lora_from_peft_config(cfg, where):
    """The lora= dict of a peft adapter_config.json (LoRA only; the features lyricnn does not run are
    refused by name), plus (layers_to_transform, layers_pattern, exclude_modules)."""
    def refuse(what):
        raise CheckpointError("%s: %s; lyricnn runs plain LoRA adapters (peft LoraConfig with r, lora_alpha, "
                              "lora_dropout, target_modules, use_rslora, bias, modules_to_save)" % (where, what))
    if cfg.get("peft_type", "LORA") != "LORA":
        refuse("peft_type is %r, not 'LORA'" % cfg.get("peft_type"))
    for key, what in (("use_dora", "DoRA (use_dora)"), ("fan_in_fan_out", "fan_in_fan_out"),
                      ("lora_bias", "lora_bias"), ("layer_replication", "layer_replication"),
                      ("target_parameters", "target_parameters"), ("trainable_token_indices", "trainable tokens"),
                      ("rank_pattern", "a per-module rank (rank_pattern)"),
                      ("alpha_pattern", "a per-module alpha (alpha_pattern)"), ("use_qalora", "QALoRA"),
                      ("alora_invocation_tokens", "aLoRA"), ("use_bdlora", "BD-LoRA")):
        if cfg.get(key):
            refuse("it uses %s" % what)
    init = cfg.get("init_lora_weights", True)
    if init not in (True, False, "gaussian"):
        refuse("init_lora_weights=%r changes the base weights" % (init,))
    try:
        spec = normalize_lora(dict(r=cfg.get("r", 8), alpha=cfg.get("lora_alpha", 8),
                                   dropout=cfg.get("lora_dropout", 0.0) or 0.0,
                                   target_modules=cfg.get("target_modules"), rslora=bool(cfg.get("use_rslora", False)),
                                   init="gaussian" if init == "gaussian" else "kaiming",
                                   bias=cfg.get("bias", "none") or "none", modules_to_save=cfg.get("modules_to_save")))
    except (TypeError, ValueError) as e:
        raise CheckpointError("%s: %s" % (where, e)) from None
    if spec["target_modules"] is None:
        raise CheckpointError("%s: target_modules is not set" % where)
    extra = cfg.get("layers_to_transform"), cfg.get("layers_pattern"), cfg.get("exclude_modules")
    check_layer_args(*extra, spec["target_modules"], where)
    return (spec,) + extra


def peft_config(spec, sites, save, base_path):
    """adapter_config.json contents (peft's LoraConfig fields) for an adapter of `sites`."""
    names = sorted({m for m, _, _ in sites})
    return {"peft_type": "LORA", "task_type": "SEQ_CLS", "base_model_name_or_path": base_path,
            "r": spec["r"], "lora_alpha": spec["alpha"], "lora_dropout": spec["dropout"], "target_modules": names,
            "use_rslora": spec["rslora"], "init_lora_weights": True if spec["init"] == "kaiming" else "gaussian",
            "bias": spec["bias"], "modules_to_save": list(save) or None, "fan_in_fan_out": False,
            "inference_mode": True, "use_dora": False, "lora_bias": False, "layers_to_transform": None,
            "layers_pattern": None, "rank_pattern": {}, "alpha_pattern": {}, "exclude_modules": None,
            "revision": None}


# ------------------------------------------------------------------ the model side (SequenceClassifier)

class LoraMixin:
    """LoRA on a SequenceClassifier: its adapters (`lora_config`, `params` under peft's names), merge(),
    unmerge(), merge_and_unload(), save_adapter(), and the adapter side of from_pretrained."""

    lora_config = None  # the normalized lora dict (normalize_lora), None without adapters
    _lora_plan = None
    _merged = False
    _lora_source = None

    # -------------------------------------------------------------- construction (called by __init__)
    def _lora_prepare(self, lora, adapter, freeze_encoder, model_type, n_layers, head, head_tensors):
        """Check the adapters' configuration and place them; the Engine's lora argument (or None)."""
        if adapter is not None:
            spec, extra, strict = adapter["spec"], adapter["extra"], False
        elif lora is None or lora is False:
            return None
        else:
            spec, extra, strict = normalize_lora(lora), (None, None, None), True
        if freeze_encoder:
            raise ValueError("freeze_encoder=True and lora are exclusive: with lora the encoder's weights are frozen "
                             "and the adapters and the head train; pass one of them")
        pooler = model_type == "bert" and head is None  # the HF head reads the pooler
        try:
            self._lora_plan = plan(spec, model_type, n_layers, pooler, [t[0] for t in head_tensors], strict, *extra)
        except ValueError as e:
            if adapter is None:
                raise
            raise CheckpointError("%s: %s" % (os.path.join(adapter["where"], ADAPTER_CONFIG), e)) from None
        self._lora_plan["pooler_used"] = pooler
        self.lora_config = spec
        self._lora_scale = scaling(spec)
        return (spec["r"], self._lora_scale, spec["dropout"], self._lora_plan["masks"], self._lora_plan["pooler"])

    def _lora_full_name(self, name):
        """peft's name of an engine tensor that is a LoRA adapter, else None."""
        if name.endswith((".lora_A.weight", ".lora_B.weight")):
            return PREFIX + MODEL_PREFIX[self.model_type] + name
        return None

    def _lora_sites(self):
        """[(module, base weight, lora_A, lora_B)] under the model's (params) names."""
        p = MODEL_PREFIX[self.model_type]
        return [(m, p + c_name(m, self.model_type) + ".weight", PREFIX + m + ".lora_A.weight", PREFIX + m + ".lora_B.weight")
                for m, _, _ in self._lora_plan["sites"]]

    def _lora_trained_biases(self):
        """Engine names of the encoder biases that train (bias='all' / 'lora_only')."""
        pl, mt = self._lora_plan, self.model_type
        if self.lora_config["bias"] == "all":
            return [n for n, _, _, _ in self._enc_names
                    if n.endswith("bias") and (pl["pooler_used"] or not n.startswith("pooler."))]
        if self.lora_config["bias"] == "lora_only":
            return [c_name(m, mt) + ".bias" for m, _, _ in pl["sites"]]
        return []

    def _lora_finish(self):
        """Freeze what does not train (every encoder tensor but the trained biases; head modules not saved) and
        give the adapters peft's seeded init."""
        self._merged = False
        if not self.lora_config:
            return
        pl = self._lora_plan
        keep = set(self._lora_trained_biases())
        if "bert.pooler" in pl["save"]:
            keep |= {"pooler.dense.weight", "pooler.dense.bias"}
        enc = [n for n, _, _, _ in self._enc_names]
        self.encoder.freeze(True, names=[n for n in enc if n not in keep])
        if keep:
            self.encoder.freeze(False, names=sorted(keep))
        frozen_head = [n for n in self._head_names if n.rsplit(".", 1)[0] not in pl["save"]]
        if frozen_head:
            self.encoder.freeze(True, names=frozen_head)
        self._opt = None
        self._init_lora()

    def _init_lora(self):
        """peft's init with a seeded numpy generator: A kaiming-uniform (a=sqrt(5): U(+-1/sqrt(in))) or
        normal(0, 1/r) ("gaussian"), B zeros."""
        rng = np.random.default_rng([self.seed, 2])
        store, r = self._pstore, self.lora_config["r"]
        for _, _, a, b in self._lora_sites():
            shape = store.layout[a][1]
            if self.lora_config["init"] == "gaussian":
                value = rng.normal(0.0, 1.0 / r, size=shape)
            else:
                bound = 1.0 / math.sqrt(shape[1])
                value = rng.uniform(-bound, bound, size=shape)
            store.write(a, value.astype(np.float32))
            store.write(b, np.zeros(store.layout[b][1], np.float32))
        store.done()

    # -------------------------------------------------------------- merging
    @property
    def merged(self):
        """Whether the adapters are merged into the base weights (merge())."""
        return bool(self._merged)

    def _need_lora(self, what):
        if not self.lora_config:
            from ._C import LyricnnError
            raise LyricnnError("%s needs LoRA adapters; this model has none (create it with lora=dict(...) or "
                               "adapter=dir)" % what)

    def _lora_delta(self, a, b):
        """peft's delta weight: (B @ A) * scaling, in float32."""
        A, B = (np.asarray(self._pstore.read(n), np.float32) for n in (a, b))
        return np.matmul(B, A) * np.float32(self._lora_scale)

    def _lora_apply(self, sign):
        store = self._pstore
        for _, w, a, b in self._lora_sites():
            d = self._lora_delta(a, b)
            store.write(w, store.read(w) + d if sign > 0 else store.read(w) - d)
        store.done()

    def merge(self):
        """Add the adapters into the base weights (W += scaling * B @ A, as peft's merge_adapter); the forward
        then skips the branches. Training needs unmerge() first.

        state_dict() records the merge (its entry "lyricnn.lora_merged"), and load_state_dict() refuses a state
        of the other kind: a merged model's state loaded into an unmerged model would add the adapters twice
        (peft does that silently). Merge or unmerge the receiving model to match, or use merge_and_unload()."""
        self._need_lora("merge()")
        if self._merged:
            return self
        self._lora_apply(+1)
        self.encoder._engine.set_lora_enabled(False)
        self._merged = True
        return self

    def unmerge(self):
        """Undo merge() (W -= scaling * B @ A, as peft's unmerge_adapter)."""
        self._need_lora("unmerge()")
        if not self._merged:
            return self
        self._lora_apply(-1)
        self.encoder._engine.set_lora_enabled(True)
        self._merged = False
        return self

    def _lora_check_merged(self, state):
        """load_state_dict's check of the merged entry (MERGED_KEY) against this model's state."""
        if MERGED_KEY not in state or not self.lora_config:
            return
        v = np.asarray(state[MERGED_KEY])
        if v.shape != () or v.dtype.kind not in "iub" or int(v) not in (0, 1):
            raise CheckpointError("%s must be 0 or 1 (whether the adapters of the model the state comes from were "
                                  "merged), got %r" % (MERGED_KEY, state[MERGED_KEY]))
        if bool(int(v)) and not self._merged:
            raise CheckpointError("the state dict comes from a model whose LoRA adapters were merged into its base "
                                  "weights (%s = 1), but this model's adapters are not merged: loading it would apply "
                                  "the adapters twice. Call merge() on this model first, or take the state dict before "
                                  "merge() (or after unmerge())" % MERGED_KEY)
        if not int(v) and self._merged:
            raise CheckpointError("the state dict comes from a model whose LoRA adapters were not merged (%s = 0), "
                                  "but this model's are: its base weights would lose the adapters. Call unmerge() on "
                                  "this model first" % MERGED_KEY)

    def _lora_merged_state(self):
        """state_dict() with the adapters merged into the base weights and the adapter tensors left out."""
        sd = self.state_dict()
        sd.pop(MERGED_KEY, None)
        if not self.lora_config:
            return sd
        for _, w, a, b in self._lora_sites():
            if not self._merged:
                sd[w] = sd[w] + self._lora_delta(a, b)
            del sd[a], sd[b]
        return sd

    def merge_and_unload(self):
        """A plain SequenceClassifier (no adapters) with the merged weights, the head and its buffers (this
        model keeps its adapters). Its save_pretrained() directory loads in transformers."""
        self._need_lora("merge_and_unload()")
        m = type(self)(self.config, num_labels=self.num_labels, problem_type=self.problem_type, head=self.head,
                       num_features=self.num_features, seed=self.seed, device=self.device, precision=self.precision,
                       add_pooling_layer=bool(self.encoder._settings["pooler"]), long_text=self.long_text,
                       window_pooling=self.window_pooling)
        m.long_text_settings = dict(self.long_text_settings)
        m.load_state_dict(self._lora_merged_state())
        m.id2label = dict(self.id2label)
        m.unpad = self.unpad
        m.step = self.step
        return m

    # -------------------------------------------------------------- adapter files
    def save_adapter(self, save_directory):
        """Write the adapters as peft does (adapter_config.json + adapter_model.safetensors): lora_A / lora_B
        under peft's names, the head modules that train (modules_to_save) and the trained biases.
        peft's PeftModel.from_pretrained(base, dir) loads it (HF heads), as does from_pretrained(base, adapter=dir)."""
        self._need_lora("save_adapter()")
        store, pl, mp = self._pstore, self._lora_plan, MODEL_PREFIX[self.model_type]
        tensors = {}
        for _, _, a, b in self._lora_sites():
            tensors[a], tensors[b] = store.read(a), store.read(b)
        for name in self._head_names:
            if name.rsplit(".", 1)[0] in pl["save"]:
                tensors[PREFIX + name] = store.read(name)
        bufs = self.buffers
        for k, v in bufs.items():
            mod = k.rsplit(".", 1)[0]
            if mod in pl["save"]:
                tensors[PREFIX + k] = np.array(v, np.float32)
                tensors[PREFIX + mod + ".num_batches_tracked"] = np.array(self._num_batches[mod], np.int64)
        if "bert.pooler" in pl["save"]:
            for leaf in ("weight", "bias"):
                tensors[PREFIX + "bert.pooler.dense." + leaf] = store.read("bert.pooler.dense." + leaf)
        sites = {m for m, _, _ in pl["sites"]}
        for cname in self._lora_trained_biases():
            module = mp + cname[:-len(".bias")]
            key = PREFIX + (module + ".base_layer.bias" if module in sites else mp + cname)
            tensors[key] = store.read(mp + cname)
        write_adapter(save_directory, tensors, peft_config(self.lora_config, pl["sites"], pl["save"],
                                                           self._lora_source))
        return save_directory

    @staticmethod
    def _lora_read_adapter(adapter, lora, config, path, freeze_encoder=False):
        """The adapter directory's parts for from_pretrained (None without adapter=), its model type checked."""
        if freeze_encoder and (adapter is not None or (lora is not None and lora is not False)):
            raise ValueError("freeze_encoder=True and lora are exclusive: with lora the encoder's weights are frozen "
                             "and the adapters and the head train; pass one of them")
        if adapter is None:
            return None
        if lora is not None and lora is not False:
            raise ValueError("pass lora=dict(...) for new adapters or adapter=dir to load saved ones, not both")
        where = os.path.join(os.fspath(adapter), ADAPTER_CONFIG)
        cfg, tensors = read_adapter(adapter)
        spec, ltt, lpat, excl = lora_from_peft_config(cfg, where)
        mt = config.get("model_type")
        if mt not in MODEL_PREFIX:
            raise CheckpointError("%s: model_type must be 'distilbert' or 'bert', got %r" % (path, mt))
        head, body = {}, {}
        for k, v in tensors.items():
            if ".original_module." in k or ".modules_to_save." in k:
                continue  # peft's bias="all" saves its wrapper's copies of a saved module's bias
            if not k.startswith(PREFIX):
                raise CheckpointError("%s: tensor %s is not named as peft names a PeftModel's tensors (%s...)"
                                      % (adapter, k, PREFIX))
            name = k[len(PREFIX):]
            other = [o for o in MODEL_PREFIX if o != mt and name.startswith(MODEL_PREFIX[o])]
            if other:
                raise CheckpointError("%s: the adapter is for a %s model (tensor %s) but the base model %s is a %s model"
                                      % (adapter, other[0], k, path, mt))
            (body if name.startswith(MODEL_PREFIX[mt]) else head)[name] = v
        return dict(spec=spec, extra=(ltt, lpat, excl), head=head, body=body, where=os.fspath(adapter))

    def _lora_load_adapter(self, st):
        """Write an adapter's tensors (from _lora_read_adapter) into this model; mismatches name what differs."""
        where, store = st["where"], self._pstore
        expected = {a: store.layout[a][1] for _, _, a, _ in self._lora_sites()}
        expected.update({b: store.layout[b][1] for _, _, _, b in self._lora_sites()})
        got = {PREFIX + k: v for k, v in st["body"].items() if ".lora_A." in k or ".lora_B." in k}
        missing, unknown = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        if missing or unknown:
            n_layers = self.encoder._settings["num_layers"]
            deep = [k for k in unknown if any(".layer.%d." % l in k for l in range(n_layers, n_layers + 1000))]
            hint = (" (the adapter has layers this %d-layer model lacks: it was made for another base model)"
                    % n_layers) if deep else ""
            raise CheckpointError("%s: the adapter's LoRA tensors do not match what its config targets on this model%s;"
                                  " missing: %s; unexpected: %s" % (where, hint, ", ".join(missing[:6]) or "-",
                                                                    ", ".join(unknown[:6]) or "-"))
        for k, v in got.items():
            if tuple(v.shape) != tuple(expected[k]):
                raise CheckpointError("%s: %s has shape %s but this model needs %s: the adapter was made for a base "
                                      "model of other sizes (this one: hidden size %d, FFN %d)"
                                      % (where, k, tuple(v.shape), tuple(expected[k]),
                                         self.encoder._settings["hidden_size"],
                                         self.encoder._settings["intermediate_size"]))
        for k, v in got.items():
            store.write(k, v)
        for k, v in st["body"].items():
            if ".lora_A." in k or ".lora_B." in k:
                continue
            name = k.replace(".base_layer.", ".")
            self._lora_write_checked(where, PREFIX + k, name, v)
        for k, v in st["head"].items():
            if k in self._bn_layout:
                self.load_buffers({k: v})
            elif k.endswith(".num_batches_tracked") and k[:-len(".num_batches_tracked")] in self._num_batches:
                self._num_batches[k[:-len(".num_batches_tracked")]] = int(np.asarray(v))
            else:
                self._lora_write_checked(where, PREFIX + k, k, v)
        store.done()

    def _lora_write_checked(self, where, key, name, v):
        layout = self._pstore.layout
        if name not in layout:
            raise CheckpointError("%s: tensor %s has no place in this model (no tensor %s): the adapter was made "
                                  "for another model or head" % (where, key, name))
        if tuple(np.shape(v)) != tuple(layout[name][1]):
            raise CheckpointError("%s: %s has shape %s but this model's %s is %s%s"
                                  % (where, key, tuple(np.shape(v)), name, tuple(layout[name][1]),
                                     " (pass num_labels to match, or another adapter)" if "classifier" in name else
                                     ": the adapter was made for another base model"))
        self._pstore.write(name, v)

    def _lora_repr(self):
        if not self.lora_config:
            return ""
        return ", lora r=%d on %d linears%s" % (self.lora_config["r"], len(self._lora_plan["sites"]),
                                                 " (merged)" if self._merged else "")
