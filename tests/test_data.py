import numpy as np
import pytest

from lyricnn import data


def test_class_weights_balanced_matches_sklearn():
    cw = pytest.importorskip("sklearn.utils.class_weight")
    y = np.array(["drake"] * 5 + ["taylor"] * 12 + ["beyonce"] * 3)
    ours = data.class_weights(y)
    ref = cw.compute_class_weight("balanced", classes=np.unique(y), y=y)
    np.testing.assert_allclose(ours, ref, rtol=1e-6)


def test_class_weights_errors_and_dict():
    with pytest.raises(ValueError, match="never occurs"):
        data.class_weights([0, 0, 1], classes=[0, 1, 2])
    with pytest.raises(ValueError, match="no weight for classes"):
        data.class_weights([0, 1], classes=[0, 1], mode={0: 1.0})
    np.testing.assert_array_equal(data.class_weights([0, 1], classes=[0, 1], mode={0: 1.0, 1: 3.0}), [1.0, 3.0])


def test_stratified_kfold_keeps_proportions():
    pytest.importorskip("sklearn")
    y = np.array([0] * 40 + [1] * 10)
    folds = data.stratified_kfold(y, n_splits=5, seed=0)
    assert len(folds) == 5
    seen = np.concatenate([v for _, v in folds])
    assert sorted(seen.tolist()) == list(range(50))
    for tr, va in folds:
        assert np.sum(y[va] == 1) == 2 and np.sum(y[va] == 0) == 8
    tr, te = data.stratified_split(y, test_size=0.2, seed=1)
    assert len(te) == 10 and np.sum(y[te] == 1) == 2 and not set(tr) & set(te)


@pytest.mark.parametrize("bucket", [False, True])
def test_batch_order_covers_all_rows_once(bucket):
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 300, 1037)
    b = data.batch_order(lengths, 16, shuffle=True, seed=3, bucket=bucket)
    flat = np.concatenate(b)
    assert sorted(flat.tolist()) == list(range(1037))
    assert sum(len(x) != 16 for x in b) == 1 and sum(len(x) for x in b) == 1037
    again = data.batch_order(lengths, 16, shuffle=True, seed=3, bucket=bucket)
    assert all(np.array_equal(x, y) for x, y in zip(b, again))
    if bucket:  # bucketing reduces the padded area
        plain = data.batch_order(lengths, 16, shuffle=True, seed=3)
        area = lambda bs: sum(len(x) * lengths[x].max() for x in bs)
        assert area(b) < 0.8 * area(plain)


def test_pad_batch():
    ids, mask = data.pad_batch([np.array([101, 7, 102]), np.array([101, 102])], pad_to_multiple_of=4)
    np.testing.assert_array_equal(ids, [[101, 7, 102, 0], [101, 102, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 0], [1, 1, 0, 0]])
    with pytest.raises(ValueError):
        data.pad_batch([])
