import warnings

import numpy as np
import pytest

from lyricnn import data


def _sk_model_selection():
    return pytest.importorskip("sklearn.model_selection", reason="scikit-learn (a test-only oracle) is not installed")


# label arrays for the split tests: balanced, imbalanced, string labels whose first appearance is not their
# sorted order (StratifiedKFold numbers classes by first appearance), many classes, the notebook's 70/10/20
_R = np.random.default_rng(7)
LABELSETS = {
    "binary_40_10": np.array([0] * 40 + [1] * 10),
    "binary_shuffled_37_14": _R.permutation([0] * 37 + [1] * 14),
    "strings_first_seen_unsorted": _R.permutation(np.array(["taylor"] * 23 + ["drake"] * 11 + ["beyonce"] * 7))[::-1],
    "five_classes_odd": _R.choice(5, 97, p=[0.4, 0.25, 0.15, 0.12, 0.08]),
    "three_equal_small": np.repeat(np.array(["c", "a", "b"]), 7),
    "twelve_classes": _R.choice(12, 300),
}


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


# ---------------------------------------------------------------- stratified splits against scikit-learn

def _class_counts(y, idx, labels):
    return [int(np.sum(y[idx] == c)) for c in labels]


def _check_partition(n, pairs):
    """Each (train, val) pair: sorted, disjoint, together all rows; the val parts cover every row once."""
    for tr, va in pairs:
        assert np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0)
        assert not set(tr.tolist()) & set(va.tolist())
        assert sorted(np.concatenate([tr, va]).tolist()) == list(range(n))


@pytest.mark.parametrize("name", sorted(LABELSETS))
@pytest.mark.parametrize("n_splits", [2, 3, 5])
def test_stratified_kfold_counts_match_sklearn(name, n_splits):
    ms = _sk_model_selection()
    y = LABELSETS[name]
    labels = np.unique(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a class smaller than n_splits: both warn
        ours = data.stratified_kfold(y, n_splits=n_splits, seed=0)
        refs = [list(ms.StratifiedKFold(n_splits, shuffle=shuffle, random_state=rs).split(np.zeros(len(y)), y))
                for shuffle, rs in ((True, 0), (True, 123), (False, None))]
    assert len(ours) == n_splits
    _check_partition(len(y), ours)
    val = np.concatenate([va for _, va in ours])
    assert sorted(val.tolist()) == list(range(len(y)))  # every row validates exactly once
    for ref in refs:  # the allocation does not depend on sklearn's random_state: the same counts, fold by fold
        for (tr, va), (rtr, rva) in zip(ours, ref):
            assert _class_counts(y, va, labels) == _class_counts(y, rva, labels)
            assert _class_counts(y, tr, labels) == _class_counts(y, rtr, labels)


def test_stratified_kfold_seeded():
    y = LABELSETS["five_classes_odd"]
    a, b = data.stratified_kfold(y, 5, seed=3), data.stratified_kfold(y, 5, seed=3)
    assert all(np.array_equal(x[0], u[0]) and np.array_equal(x[1], u[1]) for x, u in zip(a, b))
    c = data.stratified_kfold(y, 5, seed=4)
    assert any(not np.array_equal(x[1], u[1]) for x, u in zip(a, c))
    # numpy-typed arguments (from a config or a DataFrame) work too
    d = data.stratified_kfold(list(y), np.int64(5), seed=np.int64(3))
    assert all(np.array_equal(x[1], u[1]) for x, u in zip(a, d))


def test_stratified_kfold_errors_as_sklearn():
    ms = _sk_model_selection()
    y = np.array([0] * 3 + [1] * 2)
    # n_splits above every class's size: both refuse
    with pytest.raises(ValueError):
        list(ms.StratifiedKFold(4, shuffle=True, random_state=0).split(y, y))
    with pytest.raises(ValueError, match="greater than the number of members of every class"):
        data.stratified_kfold(y, n_splits=4)
    # above the smallest class only: both warn and still split (that class is missing from some folds)
    with pytest.warns(UserWarning):
        list(ms.StratifiedKFold(3, shuffle=True, random_state=0).split(y, y))
    with pytest.warns(UserWarning, match="least populated class in y has only 2 members"):
        folds = data.stratified_kfold(y, n_splits=3)
    _check_partition(5, folds)
    with pytest.raises(ValueError, match="greater than the number of samples"):
        data.stratified_kfold(y, n_splits=6)
    for bad in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match="n_splits must be an integer >= 2"):
            data.stratified_kfold(y, n_splits=bad)
    with pytest.raises(ValueError, match="continuous values"):
        data.stratified_kfold(np.linspace(0, 1, 20), n_splits=2)
    with pytest.raises(ValueError, match="1-D array"):
        data.stratified_kfold(np.zeros((10, 2)), n_splits=2)


def _sklearn_split_counts(ms, y, test_size, labels, n_states=50):
    """The per-class (train, test) counts train_test_split(stratify=y) gives over n_states random states:
    one outcome unless two classes tie for the last row, which sklearn breaks at random."""
    out = set()
    for rs in range(n_states):
        tr, te = ms.train_test_split(np.arange(len(y)), test_size=test_size, random_state=rs, stratify=y)
        out.add((tuple(_class_counts(y, tr, labels)), tuple(_class_counts(y, te, labels))))
    return out


@pytest.mark.parametrize("name", sorted(LABELSETS))
@pytest.mark.parametrize("test_size", [0.1, 0.125, 0.2, 0.3, 0.5, 9])
def test_stratified_split_counts_match_sklearn(name, test_size):
    ms = _sk_model_selection()
    y = LABELSETS[name]
    labels = np.unique(y)
    try:
        refs = _sklearn_split_counts(ms, y, test_size, labels)
    except ValueError:  # e.g. a test part smaller than the number of classes: ours refuses too
        with pytest.raises(ValueError):
            data.stratified_split(y, test_size=test_size, seed=0)
        return
    for seed in (0, 1, 2):
        tr, te = data.stratified_split(y, test_size=test_size, seed=seed)
        _check_partition(len(y), [(tr, te)])
        assert (tuple(_class_counts(y, tr, labels)), tuple(_class_counts(y, te, labels))) in refs
    if len(refs) == 1:  # no tie: the one allocation sklearn makes, whatever the seed
        assert (tuple(_class_counts(y, tr, labels)), tuple(_class_counts(y, te, labels))) == refs.pop()


def test_stratified_split_ties_and_sizes():
    ms = _sk_model_selection()
    # 3 classes of 7, test_size 0.2: ceil(4.2) = 5 test rows, the 16 training rows split 5.33 each: two
    # classes get 5 and one gets 6, picked at random in sklearn and here (the seed decides)
    y = LABELSETS["three_equal_small"]
    labels = np.unique(y)
    refs = _sklearn_split_counts(ms, y, 0.2, labels)
    ours = set()
    for seed in range(30):
        tr, te = data.stratified_split(y, test_size=0.2, seed=seed)
        assert len(te) == 5 == len(ms.train_test_split(y, test_size=0.2, stratify=y, random_state=0)[1])
        ours.add((tuple(_class_counts(y, tr, labels)), tuple(_class_counts(y, te, labels))))
    assert ours == refs and len(refs) == 3


def test_stratified_split_seeded():
    y = LABELSETS["twelve_classes"]
    a, b = data.stratified_split(y, 0.2, seed=5), data.stratified_split(y, 0.2, seed=5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    c = data.stratified_split(y, 0.2, seed=6)
    assert not np.array_equal(a[1], c[1])
    assert a[0].dtype.kind == "i" and a[1].dtype.kind == "i"
    # a (n, 1) column of labels is a 1-D label array
    d = data.stratified_split(y.reshape(-1, 1), 0.2, seed=5)
    assert np.array_equal(a[1], d[1])


def test_stratified_split_errors_as_sklearn():
    ms = _sk_model_selection()
    single = np.array([0] * 6 + [1])
    for y, test_size, ours_msg in (
        (single, 0.3, "classes with a single member: \\[1\\]"),
        (np.array([0] * 10 + [1] * 10 + [2] * 10), 0.05, "test part .* smaller than the number of classes"),
        (np.array([0] * 10 + [1] * 10 + [2] * 10), 0.95, "training part .* smaller than the number of classes"),
        (np.array([0] * 5 + [1] * 5), 0.0, "must be in the \\(0, 1\\) range"),
        (np.array([0] * 5 + [1] * 5), 1.0, "must be in the \\(0, 1\\) range"),
        (np.array([0] * 5 + [1] * 5), 10, "smaller than the number of samples"),
        (np.array([0] * 5 + [1] * 5), 0, "smaller than the number of samples"),
    ):
        with pytest.raises(ValueError):
            ms.train_test_split(np.arange(len(y)), test_size=test_size, stratify=y, random_state=0)
        with pytest.raises(ValueError, match=ours_msg):
            data.stratified_split(y, test_size=test_size)
    for bad in ("0.2", None, True):
        with pytest.raises(ValueError, match="test_size must be"):
            data.stratified_split(np.array([0] * 5 + [1] * 5), test_size=bad)
    with pytest.raises(ValueError, match="continuous values"):
        data.stratified_split(np.linspace(0, 1, 20))


def test_class_weights_match_sklearn_more_cases():
    cw = pytest.importorskip("sklearn.utils.class_weight")
    rng = np.random.default_rng(1)
    y = rng.choice(4, 157, p=[0.55, 0.25, 0.15, 0.05])
    classes = np.unique(y)
    np.testing.assert_allclose(data.class_weights(y), cw.compute_class_weight("balanced", classes=classes, y=y),
                               rtol=1e-6)
    order = np.array([2, 0, 3, 1])  # weights come back in the order of `classes`, as in sklearn
    np.testing.assert_allclose(data.class_weights(y, classes=order),
                               cw.compute_class_weight("balanced", classes=order, y=y), rtol=1e-6)
    given = {0: 0.5, 1: 2.0, 2: 1.0, 3: 7.5}
    np.testing.assert_allclose(data.class_weights(y, classes=classes, mode=given),
                               cw.compute_class_weight(given, classes=classes, y=y), rtol=1e-6)
    w = data.class_weights(y)
    assert w.dtype == np.float32
    # 'balanced' weights the classes to equal total weight: sum over rows of w[y] = n
    assert float(np.sum(w[y])) == pytest.approx(len(y), rel=1e-5)
