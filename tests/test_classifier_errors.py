"""Bad input to SequenceClassifier: typed errors that name the argument."""
import numpy as np
import pytest

import lyricnn
from lyricnn.classifier import SequenceClassifier

CFG = dict(model_type="distilbert", vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=24,
           max_position_embeddings=20, dropout=0.0, attention_dropout=0.0)
IDS = np.array([[1, 5, 6, 2], [1, 7, 2, 0]])
MASK = np.array([[1, 1, 1, 1], [1, 1, 1, 0]])


def model(**kw):
    kw.setdefault("num_labels", 3)
    m = SequenceClassifier.from_config(CFG, **kw)
    m.configure_optimizer(lr=1e-3)
    return m


def feat_model():
    return model(num_labels=1, problem_type="regression", head=dict(hidden=[8], batchnorm=True, features_at=1),
                 num_features=4)


def test_labels_out_of_range_or_wrong_type():
    m = model()
    before = {k: v.copy() for k, v in m.params.items()}
    with pytest.raises(IndexError, match=r"labels\[1\] = 3 is out of range for num_labels=3"):
        m.train_step(IDS, MASK, np.array([0, 3]))
    with pytest.raises(IndexError, match="out of range"):
        m.train_step(IDS, MASK, np.array([-1, 0]))
    with pytest.raises(TypeError, match="labels must be integer class ids"):
        m.train_step(IDS, MASK, np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        m.train_step(IDS, MASK, np.array([0, 1, 2]))
    for k, v in before.items():  # nothing moved
        np.testing.assert_array_equal(m.params[k], v)
    assert m.step == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_in_targets_and_features(bad):
    m = model(num_labels=2, problem_type="regression")
    with pytest.raises(ValueError, match=r"labels\[1, 0\] is (nan|inf|-inf).*finite"):
        m.train_step(IDS, MASK, np.array([[0.1, 0.2], [bad, 0.0]], np.float32))
    f = feat_model()
    feats = np.ones((2, 4), np.float32)
    feats[0, 2] = bad
    with pytest.raises(ValueError, match=r"features\[0, 2\].*finite"):
        f.train_step(IDS, MASK, np.array([0.5, 1.0]), features=feats)
    with pytest.raises(ValueError, match=r"features\[0, 2\].*finite"):
        f(IDS, MASK, features=feats)
    assert m.step == 0 and f.step == 0


def test_feature_count_and_presence():
    f = feat_model()
    with pytest.raises(ValueError, match=r"features must have shape \(2, 4\).*got \(2, 3\)"):
        f(IDS, MASK, features=np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="features is required.*4 features"):
        f(IDS, MASK)
    m = model()
    with pytest.raises(ValueError, match="features were given but this model has no feature input"):
        m(IDS, MASK, features=np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="num_features=4 needs a configurable head"):
        SequenceClassifier.from_config(CFG, num_labels=2, num_features=4)
    with pytest.raises(ValueError, match="features_at"):
        SequenceClassifier.from_config(CFG, num_labels=2, head=dict(hidden=[8], features_at=1))
    with pytest.raises(ValueError, match="features_at must be an int in 0..1"):
        SequenceClassifier.from_config(CFG, num_labels=2, head=dict(hidden=[8], features_at=3), num_features=2)


def test_weights_and_problem_types():
    m = model()
    with pytest.raises(ValueError, match="class_weight must have 3 entries"):
        m.train_step(IDS, MASK, np.array([0, 1]), class_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="pos_weight is only used with problem_type='multi_label"):
        m.train_step(IDS, MASK, np.array([0, 1]), pos_weight=[1.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="class_weight must be finite and >= 0"):
        m.train_step(IDS, MASK, np.array([0, 1]), class_weight=[1.0, -2.0, 1.0])
    with pytest.raises(ValueError, match="problem_type must be one of"):
        SequenceClassifier.from_config(CFG, num_labels=2, problem_type="ranking")
    with pytest.raises(ValueError, match="single_label_classification needs num_labels >= 2"):
        SequenceClassifier.from_config(CFG, num_labels=1, problem_type="single_label_classification")
    with pytest.raises(ValueError, match="num_labels must be an int >= 1"):
        SequenceClassifier.from_config(CFG, num_labels=0)


def test_optimizer_and_head_spec_errors():
    m = SequenceClassifier.from_config(CFG, num_labels=2)
    with pytest.raises(lyricnn.LyricnnError, match="configure_optimizer"):
        m.train_step(IDS, MASK, np.array([0, 1]))
    with pytest.raises(ValueError, match="optimizer name must be 'adamw' or 'adam'"):
        m.configure_optimizer("sgd")
    with pytest.raises(ValueError, match="lr must be a finite number"):
        m.configure_optimizer(lr=float("nan"))
    with pytest.raises(ValueError, match="betas must be in"):
        m.configure_optimizer(betas=(0.9, 1.5))
    with pytest.raises(ValueError, match="pooling must be"):
        SequenceClassifier.from_config(CFG, head=dict(pooling="max"))
    with pytest.raises(ValueError, match="needs max_length"):
        SequenceClassifier.from_config(CFG, head=dict(pooling="flatten"))
    with pytest.raises(ValueError, match="unknown keys"):
        SequenceClassifier.from_config(CFG, head=dict(hiden=[4]))
    f = SequenceClassifier.from_config(CFG, head=dict(pooling="flatten", max_length=4))
    with pytest.raises(ValueError, match="needs exactly max_length=4"):
        f(IDS[:, :3], MASK[:, :3])
    with pytest.raises(ValueError, match="device="):
        SequenceClassifier.from_config(CFG, device="cuda")


def test_input_errors():
    m = model()
    with pytest.raises(IndexError, match="outside the vocabulary"):
        m(np.array([[1, 50]]))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        m(IDS, MASK[:, :3])
    with pytest.raises(TypeError, match="input_ids must hold integers"):
        m(IDS.astype(np.float32))
    with pytest.raises(ValueError, match="token_type_ids are only used by BERT"):
        m(IDS, MASK, token_type_ids=np.zeros_like(IDS))
    with pytest.raises(ValueError, match="longer than max_position_embeddings"):
        m(np.ones((1, 21), np.int64))
    f = feat_model()
    with pytest.raises(ValueError, match="at least 2 rows"):
        f.train_step(IDS[:1], MASK[:1], np.array([0.5]), features=np.ones((1, 4), np.float32))


def test_state_errors(tmp_path):
    m = model()
    with pytest.raises(lyricnn.CheckpointError, match="missing"):
        m.load_state_dict({"classifier.weight": m.params["classifier.weight"]})
    other = model(num_labels=2)
    with pytest.raises(lyricnn.CheckpointError, match="classifier.weight: shape"):
        m.load_state_dict(other.state_dict())
    frozen = model(freeze_encoder=True)
    with pytest.raises(ValueError, match="another parameter layout"):
        frozen.load_optimizer_state(m.optimizer_state())
    with pytest.raises(lyricnn.CheckpointError, match="config.json"):
        SequenceClassifier.from_pretrained(tmp_path)


def test_train_step_releases_the_gil_and_refuses_concurrent_use():
    import threading
    import time
    cfg = dict(CFG, dim=64, n_layers=2, n_heads=4, hidden_dim=256, max_position_embeddings=256)
    m = SequenceClassifier.from_config(cfg, num_labels=2)
    m.configure_optimizer(lr=1e-3)
    ids = np.random.default_rng(0).integers(3, 50, size=(32, 256))
    started, done, errors = threading.Event(), threading.Event(), []

    def work():
        try:
            started.set()
            for _ in range(3):
                m.train_step(ids, None, np.zeros(32, np.int64))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
        finally:
            done.set()

    th = threading.Thread(target=work)
    th.start()
    started.wait()
    time.sleep(0.02)  # the worker is now inside the C step, without the GIL
    with pytest.raises(lyricnn.LyricnnError, match="another thread"):
        m(ids[:1, :4])
    ticks, t_end = 0, time.monotonic() + 120
    while not done.is_set() and time.monotonic() < t_end:
        ticks += 1  # Python keeps running while the steps run in C
    th.join()
    assert not errors and m.step == 3
    assert ticks > 100
