import numpy as np
import pytest

from lyricnn import metrics

sk = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed,k", [(0, 2), (1, 3), (2, 5)])
def test_classification_report_matches_sklearn(seed, k):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, 200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, k, 200))
    p[p == k - 1] = 0  # a class never predicted: zero_division=0 path
    r = metrics.classification_report(y, p, labels=list(range(k)))
    assert r["accuracy"] == pytest.approx(sk.accuracy_score(y, p))
    for ours, avg in (("precision_macro", sk.precision_score), ("recall_macro", sk.recall_score), ("f1_macro", sk.f1_score)):
        assert r[ours] == pytest.approx(avg(y, p, average="macro", zero_division=0, labels=list(range(k))))
    np.testing.assert_array_equal(r["confusion_matrix"], sk.confusion_matrix(y, p, labels=list(range(k))))


def test_string_labels_and_errors():
    r = metrics.classification_report(np.array(["a", "b", "a"]), np.array(["a", "a", "a"]))
    assert r["labels"] == ["a", "b"] and r["per_class"]["b"]["recall"] == 0.0
    with pytest.raises(ValueError, match="not one of labels"):
        metrics.confusion_matrix(["a", "z"], ["a", "a"], labels=["a", "b"])
    with pytest.raises(ValueError, match="different lengths"):
        metrics.regression_report([1.0, 2.0], [1.0])


def test_regression_report_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.random(100)
    p = y + 0.1 * rng.standard_normal(100)
    r = metrics.regression_report(y, p)
    assert r["mse"] == pytest.approx(sk.mean_squared_error(y, p))
    assert r["mae"] == pytest.approx(sk.mean_absolute_error(y, p))
    assert r["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(y, p)))
    assert r["pearson_r"] == pytest.approx(np.corrcoef(y, p)[0, 1])


@pytest.mark.parametrize("seed,k", [(0, 2), (1, 3), (2, 5)])
def test_per_class_scores_match_sklearn(seed, k):
    """Per-class precision / recall / F1 / support (and per-class accuracy = recall) against
    precision_recall_fscore_support(average=None), with a class never predicted and a listed class that
    never occurs (zero_division=0 for both)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, 300)
    p = np.where(rng.random(300) < 0.5, y, rng.integers(0, k, 300))
    p[p == k - 1] = 0
    labels = list(range(k)) + [k]  # class k: in `labels` only
    r = metrics.classification_report(y, p, labels=labels)
    prec, rec, f1, support = sk.precision_recall_fscore_support(y, p, labels=labels, average=None, zero_division=0)
    for i, lab in enumerate(labels):
        pc = r["per_class"][lab]
        assert pc["precision"] == pytest.approx(prec[i]) and pc["recall"] == pytest.approx(rec[i])
        assert pc["f1"] == pytest.approx(f1[i]) and pc["support"] == support[i]
        assert pc["accuracy"] == pc["recall"]
    assert r["f1_macro"] == pytest.approx(f1.mean())
    assert r["precision_macro"] == pytest.approx(sk.precision_score(y, p, labels=labels, average="macro",
                                                                    zero_division=0))


def test_string_labels_match_sklearn():
    """labels=None: the sorted union of true and predicted labels, as sklearn's unique_labels."""
    rng = np.random.default_rng(3)
    names = np.array(["taylor", "drake", "beyonce", "adele"])
    y = names[rng.integers(0, 3, 120)]       # adele is never the true label ...
    p = names[rng.integers(0, 4, 120)]       # ... but is predicted
    r = metrics.classification_report(y, p)
    assert r["labels"] == sorted(names.tolist())
    np.testing.assert_array_equal(r["confusion_matrix"], sk.confusion_matrix(y, p))
    prec, rec, f1, support = sk.precision_recall_fscore_support(y, p, average=None, zero_division=0)
    np.testing.assert_allclose([r["per_class"][c]["precision"] for c in r["labels"]], prec)
    np.testing.assert_allclose([r["per_class"][c]["recall"] for c in r["labels"]], rec)
    np.testing.assert_allclose([r["per_class"][c]["f1"] for c in r["labels"]], f1)
    assert [r["per_class"][c]["support"] for c in r["labels"]] == support.tolist()
    assert r["accuracy"] == pytest.approx(sk.accuracy_score(y, p))
    for avg in ("precision", "recall", "f1"):
        ref = getattr(sk, avg + "_score")(y, p, average="macro", zero_division=0)
        assert r[avg + "_macro"] == pytest.approx(ref)


def test_regression_report_more_cases_match_sklearn():
    """Integer and float32 inputs, a constant prediction (Pearson r undefined: nan)."""
    rng = np.random.default_rng(4)
    y = rng.integers(0, 10, 50)
    p = (y + rng.normal(0, 2, 50)).astype(np.float32)
    r = metrics.regression_report(y, p)
    assert r["mse"] == pytest.approx(sk.mean_squared_error(y, p.astype(np.float64)))
    assert r["mae"] == pytest.approx(sk.mean_absolute_error(y, p.astype(np.float64)))
    assert r["pearson_r"] == pytest.approx(np.corrcoef(y, p.astype(np.float64))[0, 1])
    c = metrics.regression_report(y, np.full(50, 4.5))
    assert c["mse"] == pytest.approx(sk.mean_squared_error(y, np.full(50, 4.5))) and np.isnan(c["pearson_r"])


@pytest.mark.parametrize("seed,n,ties", [(0, 50, False), (1, 300, True), (2, 7, True)])
def test_roc_auc_matches_sklearn_and_the_pair_count(seed, n, ties):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = y * 0.7 + rng.normal(size=n)
    if ties:
        s = np.round(s, 1)     # many equal scores: they count one half
    auc = metrics.roc_auc(y, s)
    assert auc == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
    pos, neg = s[y == 1], s[y == 0]   # the definition, pair by pair
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert auc == pytest.approx(pairs / (len(pos) * len(neg)), abs=1e-12)
    assert metrics.roc_auc(y.astype(bool), -s) == pytest.approx(1 - auc, abs=1e-12)


def test_roc_auc_edge_cases():
    assert np.isnan(metrics.roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))          # one class: undefined
    assert np.isnan(metrics.roc_auc([0, 1, 1], [0.1, float("nan"), 0.3]))  # NaN stays NaN
    assert metrics.roc_auc([0, 1], [0.5, 0.5]) == 0.5
    with pytest.raises(ValueError, match="0/1 or booleans"):
        metrics.roc_auc(["neg", "pos"], [0.1, 0.9])
    with pytest.raises(ValueError, match="different lengths"):
        metrics.roc_auc([0, 1], [0.1])
