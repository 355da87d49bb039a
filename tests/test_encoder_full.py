"""Full-size distilbert-base and bert-base against transformers: one short case each."""
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from test_encoder import check_parity  # noqa: E402

DISTILBERT_BASE = dict(vocab_size=30522, dim=768, n_layers=6, n_heads=12, hidden_dim=3072, max_position_embeddings=512)
BERT_BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2)


def test_distilbert_base():
    check_parity("distilbert", 3, 24, [24, 13, 2], noise=0.02, **DISTILBERT_BASE)


def test_bert_base():
    check_parity("bert", 2, 20, [20, 7], types=True, noise=0.02, **BERT_BASE)
