"""Helpers for the encoder tests: seeded transformers models and their lyricnn twins."""
import numpy as np
import torch
import transformers

from lyricnn.encoder import Encoder


def hf_model(kind, seed=0, noise=0.05, **cfg):
    """A seeded random DistilBertModel / BertModel (eager attention, fp32), with noise on biases and
    LayerNorm weights so they are not 0/1. Returns (model, config dict)."""
    torch.manual_seed(seed)
    if kind == "distilbert":
        base = dict(vocab_size=97, dim=32, n_layers=2, n_heads=4, hidden_dim=48, max_position_embeddings=40,
                    dropout=0.0, attention_dropout=0.0, pad_token_id=0)
        base.update(cfg)
        conf = transformers.DistilBertConfig(**base)
        model = transformers.DistilBertModel(conf)
    else:
        base = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                    max_position_embeddings=40, type_vocab_size=2, hidden_dropout_prob=0.0,
                    attention_probs_dropout_prob=0.0, pad_token_id=0)
        base.update(cfg)
        conf = transformers.BertConfig(**base)
        model = transformers.BertModel(conf, add_pooling_layer=True)
    model.set_attn_implementation("eager") if hasattr(model, "set_attn_implementation") else None
    model.config._attn_implementation = "eager"
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed + 1)
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.add_(noise * torch.randn(p.shape, generator=g))
            elif "LayerNorm" in name or "layer_norm" in name:
                p.add_(noise * torch.randn(p.shape, generator=g))
    model.eval()
    return model, conf.to_dict()


def twin(model, config):
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    return Encoder.from_state_dict(config, state)


def batch(B, T, vocab=97, seed=0, lengths=None, types=False):
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, vocab, size=(B, T)).astype(np.int64)
    ids[:, 0] = 1  # [CLS]
    mask = np.ones((B, T), np.int64)
    if lengths is not None:
        for b, n in enumerate(lengths):
            ids[b, n - 1] = 2  # [SEP]
            ids[b, n:] = 0     # [PAD]
            mask[b, n:] = 0
    tt = rng.integers(0, 2, size=(B, T)).astype(np.int64) if types else None
    return ids, mask, tt
