"""Helpers for the classifier tests: seeded transformers classifiers, their lyricnn twins, and one
torch training step (loss, backward, clip_grad_norm_, AdamW with no-decay groups)."""
import numpy as np
import torch
import transformers

from lyricnn.classifier import SequenceClassifier

TINY_DISTIL = dict(vocab_size=97, dim=32, n_layers=2, n_heads=4, hidden_dim=48, max_position_embeddings=40,
                   dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0, pad_token_id=0)
TINY_BERT = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                 max_position_embeddings=40, type_vocab_size=2, hidden_dropout_prob=0.0,
                 attention_probs_dropout_prob=0.0, pad_token_id=0)


def noisy(model, seed, noise=0.05):
    """Noise on biases and LayerNorm weights so they are not 0 / 1."""
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed + 1)
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name:
                p.add_(noise * torch.randn(p.shape, generator=g))
    return model


def hf_classifier(kind, num_labels=3, seed=0, problem_type=None, **cfg):
    torch.manual_seed(seed)
    if kind == "distilbert":
        base = dict(TINY_DISTIL)
        base.update(cfg)
        conf = transformers.DistilBertConfig(num_labels=num_labels, problem_type=problem_type, **base)
        model = transformers.DistilBertForSequenceClassification(conf)
    else:
        base = dict(TINY_BERT)
        base.update(cfg)
        conf = transformers.BertConfig(num_labels=num_labels, problem_type=problem_type, **base)
        model = transformers.BertForSequenceClassification(conf)
    model.config._attn_implementation = "eager"
    noisy(model, seed)
    return model


def twin(model, tmp_path, **kw):
    """The lyricnn model loaded from the transformers model saved with save_pretrained."""
    d = tmp_path / ("hf_%d" % id(model))
    model.save_pretrained(d)
    return SequenceClassifier.from_pretrained(d, **kw)


def batch(B, T, vocab=97, seed=0, lengths=None, types=False):
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, vocab, size=(B, T)).astype(np.int64)
    ids[:, 0] = 1
    mask = np.ones((B, T), np.int64)
    if lengths is not None:
        for b, n in enumerate(lengths):
            ids[b, n - 1] = 2
            ids[b, n:] = 0
            mask[b, n:] = 0
    tt = rng.integers(0, 2, size=(B, T)).astype(np.int64) if types else None
    return ids, mask, tt


def no_decay(name):
    low = name.lower()
    return low.endswith("bias") or "layernorm" in low or "layer_norm" in low


def torch_adamw(model, lr, wd, betas=(0.9, 0.999), eps=1e-8, adam=False):
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in params if not no_decay(n)], "weight_decay": wd},
              {"params": [p for n, p in params if no_decay(n)], "weight_decay": 0.0}]
    cls = torch.optim.Adam if adam else torch.optim.AdamW
    return cls(groups, lr=lr, betas=betas, eps=eps)


def torch_step(model, opt, loss_fn, max_norm=1.0):
    """One step: loss_fn() -> loss; backward; clip; step. Returns (loss, pre-clip norm)."""
    opt.zero_grad()
    loss = loss_fn()
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_norm) \
        if max_norm else None
    opt.step()
    return float(loss.detach()), None if norm is None else float(norm)


def assert_params_close(m, model, atol=1e-5, rtol=1e-4, names=None):
    sd = model.state_dict()
    for name, p in m.params.items():
        if names is not None and name not in names:
            continue
        np.testing.assert_allclose(p, sd[name].detach().numpy(), rtol=rtol, atol=atol, err_msg=name)
