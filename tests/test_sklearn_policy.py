"""scikit-learn is not a dependency of lyricnn (README "scikit-learn: not a dependency").

The package needs numpy alone: the splits, class weights, metrics and the estimator protocol
(get_params / set_params) are lyricnn's own code, checked against scikit-learn in tests/test_data.py,
tests/test_metrics.py and here, where scikit-learn is a test-only oracle.
"""
import ast
import pathlib
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import ROOT
from lyricnn.estimators import TextClassifier, TextRegressor

# a tiny DistilBERT (the bundled vocab, 32 dims, one layer), as in tests/test_estimators.py
TINY = {"model_type": "distilbert", "vocab_size": 30522, "dim": 32, "n_layers": 1, "n_heads": 2,
        "hidden_dim": 64, "max_position_embeddings": 64, "dropout": 0.1, "attention_dropout": 0.1,
        "seq_classif_dropout": 0.1, "initializer_range": 0.02}


def test_pyproject_does_not_depend_on_sklearn():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    deps = re.search(r"^dependencies\s*=\s*\[(.*?)\]", text, re.S | re.M)
    assert deps, "no [project] dependencies in pyproject.toml"
    assert "scikit" not in deps.group(1) and "sklearn" not in deps.group(1)


def test_sklearn_imported_only_in_sklearn_hooks():
    """lyricnn/ imports sklearn nowhere but inside the __sklearn_*__ protocol methods, which only
    scikit-learn itself calls (so it is installed when they run)."""
    offenders = []
    for path in sorted((ROOT / "lyricnn").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        hooks = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and n.name.startswith("__sklearn_")]
        allowed = {id(x) for h in hooks for x in ast.walk(h)}
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "sklearn" or n.startswith("sklearn.") for n in names) and id(node) not in allowed:
                offenders.append("%s:%d" % (path.relative_to(ROOT), node.lineno))
    assert not offenders, "scikit-learn imported outside the __sklearn_*__ hooks: %s" % offenders


def test_works_without_sklearn():
    """In a fresh interpreter where `import sklearn` fails: the splits, class weights, metrics, the
    estimator protocol, and fit with validation_fraction (a stratified split) all work."""
    script = textwrap.dedent("""
        import sys
        sys.modules["sklearn"] = None  # any import of sklearn now raises ImportError
        import numpy as np
        import lyricnn
        from lyricnn import data, metrics
        from lyricnn.estimators import TextClassifier

        y = np.array(["pos", "neg"] * 12)
        tr, te = data.stratified_split(y, test_size=0.25, seed=0)
        assert len(te) == 6 and sum(y[te] == "pos") == 3
        assert len(data.stratified_kfold(y, n_splits=3, seed=0)) == 3
        assert np.allclose(data.class_weights(y), [1.0, 1.0])
        assert metrics.classification_report(y, y)["f1_macro"] == 1.0
        lyricnn.set_num_threads(1)
        X = [("love " if lab == "pos" else "hate ") + "the song" for lab in y]
        clf = TextClassifier(model=%r, epochs=1, batch_size=8, max_length=8, verbose=0,
                             validation_fraction=0.25, eval_steps=1)
        clf.set_params(lr=1e-3)
        assert clf.get_params()["lr"] == 1e-3
        clf.fit(X, y)
        assert clf.predict(X[:3]).shape == (3,) and len(clf.history_)
        assert not [m for m in sys.modules if m.startswith("sklearn.")]
        print("ok without sklearn")
    """) % (TINY,)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=str(ROOT),
                       timeout=300)
    assert r.returncode == 0 and "ok without sklearn" in r.stdout, r.stdout[-2000:] + r.stderr[-4000:]


# ---------------------------------------------------------------- the estimator protocol vs sklearn.base

@pytest.fixture(scope="module")
def skbase():
    return pytest.importorskip("sklearn.base", reason="scikit-learn (a test-only oracle) is not installed")


NON_DEFAULT = dict(model=TINY, head={"pooling": "mean", "hidden": [8], "dropout": 0.2}, max_length=12,
                   batch_size=4, epochs=1, lr=1e-3, betas=(0.8, 0.99), schedule="constant", seed=3, verbose=0,
                   feature_columns=["a", "b"], validation_fraction=0.2, monitor="loss")


@pytest.mark.parametrize("cls", [TextClassifier, TextRegressor])
def test_clone_keeps_every_param_and_copies_containers(cls, skbase):
    est = cls(**NON_DEFAULT)
    c = skbase.clone(est)
    assert type(c) is cls and c is not est
    assert c.get_params() == est.get_params()
    assert sorted(c.get_params()) == sorted(cls._get_param_names())
    # nested containers are deep copies, as sklearn's clone promises: editing the clone's leaves the original
    assert c.head == est.head and c.head is not est.head
    c.head["hidden"].append(4)
    assert est.head["hidden"] == [8]
    assert skbase.is_classifier(est) == (cls is TextClassifier) and skbase.is_regressor(est) == (cls is TextRegressor)


@pytest.mark.parametrize("cls", [TextClassifier, TextRegressor])
def test_set_params_every_param_round_trips(cls, skbase):
    est = cls(verbose=0)
    for k in est.get_params():
        sentinel = object()
        assert est.set_params(**{k: sentinel}) is est
        assert est.get_params()[k] is sentinel and getattr(est, k) is sentinel
    with pytest.raises(ValueError, match="invalid parameter"):
        est.set_params(head__pooling="mean")  # no nested estimators: sklearn's '__' syntax has nothing to reach


@pytest.mark.parametrize("cls", [TextClassifier, TextRegressor])
def test_sklearn_estimator_checks_on_params(cls, skbase):
    """scikit-learn's own checks of the parameter protocol (the ones that need no fitting)."""
    ec = pytest.importorskip("sklearn.utils.estimator_checks")
    names = ["check_get_params_invariance", "check_set_params", "check_no_attributes_set_in_init",
             "check_parameters_default_constructible"]
    missing = [n for n in names if not hasattr(ec, n)]
    if missing:
        pytest.skip("this scikit-learn has no %s" % missing)
    for n in names:
        getattr(ec, n)(cls.__name__, cls(verbose=0))


def test_clone_of_fitted_is_unfitted(skbase):
    import lyricnn

    n = lyricnn.get_num_threads()
    lyricnn.set_num_threads(1)
    try:
        y = np.array(["pos", "neg"] * 8)
        X = [("love " if lab == "pos" else "hate ") + "a song" for lab in y]
        clf = TextClassifier(model=TINY, epochs=1, batch_size=8, max_length=8, verbose=0).fit(X, y)
        c = skbase.clone(clf)
        assert c.get_params() == clf.get_params()
        assert hasattr(clf, "model_") and not hasattr(c, "model_") and not hasattr(c, "classes_")
        with pytest.raises(RuntimeError, match="not fitted"):
            c.predict(X)
    finally:
        lyricnn.set_num_threads(n)
