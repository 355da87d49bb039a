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
