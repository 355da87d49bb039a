"""A tiny numpy stand-in for lyricnn.SequenceClassifier (the Part A contract), used by the estimator
tests while (or where) the C classification graph is unavailable.

Model: mean-pooled token embeddings (+ optional features) -> dropout -> Linear. Deterministic:
dropout masks are keyed by (seed, step), like the engine's Philox masks.
"""
import json
import os

import numpy as np

from lyricnn import checkpoint


class _Out:
    def __init__(self, logits):
        self.logits = logits


class FakeSequenceClassifier:
    def __init__(self, config, num_labels, problem_type, num_features, seed, dropout):
        self.config = dict(config)
        self.model_type = config.get("model_type", "distilbert")
        self.num_labels = int(num_labels)
        if problem_type is None:
            problem_type = "regression" if num_labels == 1 else "single_label_classification"
        self.problem_type = problem_type
        self.num_features = int(num_features)
        self.seed = int(seed)
        self.dropout = 0.1 if dropout is None else float(dropout)
        self.freeze_encoder = False
        v = int(config.get("vocab_size", 30522))
        d = int(config.get("dim", config.get("hidden_size", 16)))
        rng = np.random.default_rng(seed)
        self.params = {
            "embed.weight": (rng.standard_normal((v, d)) * 0.5).astype(np.float32),
            "classifier.weight": (rng.standard_normal((self.num_labels, d + self.num_features)) * 0.1).astype(np.float32),
            "classifier.bias": np.zeros(self.num_labels, np.float32),
        }
        self.grads = {k: np.zeros_like(p) for k, p in self.params.items()}
        self.buffers = {}
        self.step = 0
        self._opt = None

    # -- construction
    @classmethod
    def from_config(cls, config, num_labels=2, problem_type=None, head=None, num_features=0,
                    freeze_encoder=False, seed=0, device="cpu", dropout=None):
        return cls(config, num_labels, problem_type, num_features, seed, dropout)

    @classmethod
    def from_pretrained(cls, path, num_labels=2, problem_type=None, head=None, num_features=0,
                        freeze_encoder=False, seed=0, device="cpu", dropout=None):
        with open(os.path.join(path, "config.json")) as f:
            cfg = json.load(f)
        m = cls(cfg, num_labels, problem_type, num_features, seed, dropout)
        st = os.path.join(path, "model.safetensors")
        if os.path.exists(st):
            sd = checkpoint.read_safetensors(st)
            if "classifier.weight" in sd and sd["classifier.weight"].shape != m.params["classifier.weight"].shape:
                raise ValueError("num_labels=%d disagrees with the checkpoint head" % num_labels)
            m.load_state_dict({k: v for k, v in sd.items() if k in m.params})  # ignore real encoder tensors
        return m

    # -- forward
    def _pool(self, ids, mask, features):
        e = self.params["embed.weight"][ids]                  # (B, T, D)
        m = mask.astype(np.float32)[:, :, None]
        h = (e * m).sum(1) / np.maximum(m.sum(1), 1.0)
        if self.num_features:
            if features is None or features.shape[1] != self.num_features:
                raise ValueError("features must be (B, %d)" % self.num_features)
            h = np.concatenate([h, features.astype(np.float32)], axis=1)
        return h

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, features=None):
        ids = np.asarray(input_ids)
        mask = np.ones_like(ids) if attention_mask is None else np.asarray(attention_mask)
        h = self._pool(ids, mask, features)
        return _Out((h @ self.params["classifier.weight"].T + self.params["classifier.bias"]).astype(np.float32))

    # -- training
    def configure_optimizer(self, name="adamw", lr=5e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                            max_grad_norm=1.0, no_decay=None):
        n = sum(p.size for p in self.params.values())
        self._opt = dict(name=name, lr=float(lr), betas=tuple(betas), eps=float(eps), wd=float(weight_decay),
                         clip=max_grad_norm)
        self._m = np.zeros(n, np.float32)
        self._v = np.zeros(n, np.float32)

    def set_lr(self, lr):
        self._opt["lr"] = float(lr)

    def train_step(self, input_ids, attention_mask, labels, token_type_ids=None, features=None,
                   class_weight=None, pos_weight=None):
        if self._opt is None:
            raise RuntimeError("call configure_optimizer() first")
        ids, mask = np.asarray(input_ids), np.asarray(attention_mask)
        e = self.params["embed.weight"][ids]
        m = mask.astype(np.float32)[:, :, None]
        cnt = np.maximum(m.sum(1), 1.0)
        h = (e * m).sum(1) / cnt
        if self.num_features:
            h = np.concatenate([h, np.asarray(features, np.float32)], axis=1)
        rng = np.random.default_rng([self.seed, self.step])
        keep = (rng.random(h.shape) >= self.dropout).astype(np.float32) / (1.0 - self.dropout)
        hd = h * keep
        W, b = self.params["classifier.weight"], self.params["classifier.bias"]
        z = hd @ W.T + b
        B = z.shape[0]
        if self.problem_type == "single_label_classification":
            y = np.asarray(labels, np.int64)
            z0 = z - z.max(1, keepdims=True)
            p = np.exp(z0)
            p /= p.sum(1, keepdims=True)
            w = np.ones(B, np.float32) if class_weight is None else np.asarray(class_weight, np.float32)[y]
            loss = float(-(w * np.log(p[np.arange(B), y])).sum() / w.sum())
            dz = p.copy()
            dz[np.arange(B), y] -= 1
            dz *= (w / w.sum())[:, None]
        elif self.problem_type == "regression":
            y = np.asarray(labels, np.float32).reshape(z.shape)
            loss = float(np.mean((z - y) ** 2))
            dz = 2 * (z - y) / z.size
        else:
            y = np.asarray(labels, np.float32).reshape(z.shape)
            s = 1 / (1 + np.exp(-z))
            loss = float(np.mean(-(y * np.log(s + 1e-12) + (1 - y) * np.log(1 - s + 1e-12))))
            dz = (s - y) / z.size
        dz = dz.astype(np.float32)
        for g in self.grads.values():
            g[...] = 0
        self.grads["classifier.weight"] += dz.T @ hd
        self.grads["classifier.bias"] += dz.sum(0)
        dh = (dz @ W) * keep
        dpool = dh[:, :e.shape[2]] / cnt
        np.add.at(self.grads["embed.weight"], ids, (dpool[:, None, :] * m).astype(np.float32))
        # clip + AdamW
        names = list(self.params)
        gflat = np.concatenate([self.grads[k].ravel() for k in names])
        norm = float(np.sqrt(np.sum(gflat.astype(np.float64) ** 2)))
        if self._opt["clip"] and norm > self._opt["clip"]:
            gflat *= self._opt["clip"] / (norm + 1e-6)
        self.step += 1
        b1, b2 = self._opt["betas"]
        self._m = b1 * self._m + (1 - b1) * gflat
        self._v = b2 * self._v + (1 - b2) * gflat * gflat
        mh = self._m / (1 - b1 ** self.step)
        vh = self._v / (1 - b2 ** self.step)
        lr = self._opt["lr"]
        off = 0
        for k in names:
            p = self.params[k]
            n = p.size
            upd = (mh[off:off + n] / (np.sqrt(vh[off:off + n]) + self._opt["eps"])).reshape(p.shape)
            p *= (1 - lr * self._opt["wd"])
            p -= (lr * upd).astype(np.float32)
            off += n
        return loss

    # -- state
    def state_dict(self):
        return {k: v.copy() for k, v in self.params.items()}

    def load_state_dict(self, d):
        for k, v in d.items():
            if k not in self.params:
                raise KeyError(k)
            self.params[k][...] = v

    def optimizer_state(self):
        return {"m": self._m.copy(), "v": self._v.copy(), "step": self.step}

    def load_optimizer_state(self, d):
        self._m = np.array(d["m"], np.float32)
        self._v = np.array(d["v"], np.float32)
        self.step = int(d["step"])

    def save_pretrained(self, d):
        os.makedirs(d, exist_ok=True)
        cfg = dict(self.config, num_labels=self.num_labels, problem_type=self.problem_type)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f)
        checkpoint.save_safetensors(os.path.join(d, "model.safetensors"), self.state_dict(), {"format": "pt"})


def real_classifier():
    """The engine's SequenceClassifier, or None where it is not built yet."""
    try:
        from lyricnn.classifier import SequenceClassifier
    except ImportError:
        return None
    return SequenceClassifier


def use_engine(monkeypatch):
    """Make lyricnn.models build the engine's classifier, or this stand-in when it is not available."""
    real = real_classifier()
    if real is not None:
        return real
    import lyricnn.models as models

    monkeypatch.setattr(models, "_classifier_class", lambda: FakeSequenceClassifier)
    return FakeSequenceClassifier
