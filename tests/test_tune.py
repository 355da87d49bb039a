"""lyricnn.tune (hyper-parameter search on Optuna): a search that must find a known learning rate, pruning,
reproducible suggestions, resume of an interrupted SQLite study, Ctrl-C, two worker processes on one study
(PostgreSQL when a server can be started, Optuna's journal file otherwise), the CLI, plots, refit and bad
input before any training. Tiny random models: each trial takes a fraction of a second."""
import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref

import numpy as np
import pytest

import lyricnn
from lyricnn.data import kfold
from lyricnn.estimators import TextClassifier, TextRegressor

from conftest import ROOT, save_random_base
from test_estimators import TINY, WORDS, love_hate  # the tiny model and the love/hate texts

optuna = pytest.importorskip("optuna", reason="optuna is a test dependency of lyricnn.tune (requirements/test.txt)")
S = optuna.trial.TrialState


@pytest.fixture(autouse=True)
def engine():
    n = lyricnn.get_num_threads()
    lyricnn.set_num_threads(1)  # tiny models: one engine thread is fastest on a shared 2-core machine
    yield
    lyricnn.set_num_threads(n)


def counts_task(n=64, seed=0):
    """Regression: texts of 8 random words, target = #love - #hate."""
    r = np.random.default_rng(seed)
    X = [" ".join(r.choice(WORDS + ["love", "hate"], 8)) for _ in range(n)]
    y = np.array([x.split().count("love") - x.split().count("hate") for x in X], dtype=np.float64)
    return X, y


def one_step_regressor(**kw):
    """Frozen encoder, linear head, one AdamW step (batch = the training set, constant lr, no weight decay,
    no clipping). Adam's first update is lr * g / (|g| + eps) ~ lr * sign(g) for every head parameter, and
    the head is linear in its parameters, so each validation prediction moves linearly in lr and the
    validation MSE is an exact quadratic in lr: its minimum is the best learning rate, known in closed form."""
    base = dict(model=TINY, freeze_encoder=True, head=dict(pooling="cls", hidden=[]), epochs=1, batch_size=64,
                lr=1e-3, weight_decay=0.0, max_grad_norm=None, schedule="constant", max_length=16, verbose=0,
                seed=0)
    base.update(kw)
    return TextRegressor(**base)


HOLDOUT = [(np.arange(48), np.arange(48, 64))]


def val_mse(lr):
    X, y = counts_task()
    reg = one_step_regressor(lr=lr).fit(X[:48], y[:48], eval_set=(X[48:], y[48:]))
    return float(reg.history_["val_mse"].dropna().iloc[-1])


# ------------------------------------------------------------------------------------ search

def test_search_finds_the_known_best_learning_rate():
    # the oracle: the validation MSE is a quadratic in lr (checked at a 4th point); its vertex is lr*
    probes = np.array([1e-4, 1e-2, 5e-2])
    coef = np.polyfit(probes, [val_mse(a) for a in probes], 2)
    assert coef[0] > 0
    assert abs(val_mse(0.2) - np.polyval(coef, 0.2)) < 1e-4 * np.polyval(coef, 0.2)
    lr_star = -coef[1] / (2 * coef[0])
    assert 1e-3 < lr_star < 1e-1  # well inside the searched range: the search has to find it
    X, y = counts_task()
    res = lyricnn.tune(one_step_regressor(), X, y, {"lr": ("log", 1e-4, 1.0)}, n_trials=25, metric="mse",
                       cv=HOLDOUT, pruner=None, seed=0, verbose=0)
    assert res.direction == "minimize" and res.best_trial_.state == S.COMPLETE
    lrs = res.trials_["params_lr"].to_numpy()
    # within 10% of lr* in at most 25 trials (the range spans 4 decades), and the best score is that trial's
    assert abs(res.best_params_["lr"] / lr_star - 1) < 0.10, (res.best_params_, lr_star)
    assert res.best_score_ == pytest.approx(np.polyval(coef, res.best_params_["lr"]), rel=1e-5)
    assert res.best_score_ == res.trials_["value"].min()
    # TPE concentrates near lr*: more of the last 10 suggestions are within a factor 2 than of the first 10
    near = np.abs(np.log(lrs / lr_star)) < np.log(2)
    assert near[-10:].sum() > near[:10].sum()


def test_same_seed_same_suggestions():
    X, y = counts_task()
    space = {"lr": ("log", 1e-4, 1.0), "warmup_ratio": ("uniform", 0.0, 0.5), "batch_size": [32, 64]}

    def run(seed):
        r = lyricnn.tune(one_step_regressor(), X, y, space, n_trials=7, metric="mse", cv=HOLDOUT, pruner=None,
                         seed=seed, verbose=0)
        return [t.params for t in r.study.trials]

    a = run(3)
    assert run(3) == a
    assert run(4) != a
    assert len({t["lr"] for t in a}) == 7


# ------------------------------------------------------------------------------------ pruning

@pytest.mark.parametrize("name, cls", [("median", "MedianPruner"), ("hyperband", "HyperbandPruner"),
                                       ("successive_halving", "SuccessiveHalvingPruner"), (None, "NopPruner")])
def test_pruner_choices(name, cls):
    X, y = counts_task()
    res = lyricnn.tune(one_step_regressor(), X, y, {"lr": ("log", 1e-4, 1.0)}, n_trials=3, metric="mse",
                       cv=HOLDOUT, pruner=name, verbose=0)
    assert type(res.study.pruner).__name__ == cls and len(res.study.trials) == 3


class Tracked(TextClassifier):
    """Records a weak reference to each trial's estimator and model; lr >= 0.05 'diverges' at step 3 (the
    FloatingPointError the training loop raises for a NaN loss: the tiny model, clipped, does not reach one)."""

    refs = []

    def fit(self, *a, callbacks=(), **k):
        def nan_at_3(est, info):
            if est.lr >= 0.05 and info["step"] == 3:
                raise FloatingPointError("the training loss became nan at step 3; lower lr")
        try:
            return super().fit(*a, callbacks=list(callbacks) + [nan_at_3], **k)
        finally:
            Tracked.refs.append((weakref.ref(self), weakref.ref(self.model_)))


def test_bad_configuration_is_pruned_early_and_freed():
    X, y = love_hate(96, 0)
    Tracked.refs = []
    alive_after_trial = {}

    def check_freed(study, ft):  # runs after each trial, before the next one starts
        alive_after_trial[ft.number] = [r() is not None for pair in Tracked.refs for r in pair]

    est = Tracked(model=TINY, epochs=3, batch_size=8, max_length=16, eval_steps=2, verbose=0, seed=0)
    res = lyricnn.tune(est, X, y, {"lr": ("log", 1e-7, 1e-1)}, n_trials=4, metric="loss",
                       cv=[(np.arange(64), np.arange(64, 96))], pruner=optuna.pruners.MedianPruner(n_startup_trials=2),
                       enqueue=[{"lr": 1e-2}, {"lr": 8e-3}, {"lr": 1e-6}, {"lr": 0.08}], callbacks=[check_freed],
                       verbose=0)
    t = res.study.trials
    assert [x.state for x in t] == [S.COMPLETE, S.COMPLETE, S.PRUNED, S.PRUNED]
    full = 3 * 64 // 8
    assert t[0].user_attrs["n_steps"] == t[1].user_attrs["n_steps"] == full
    # lr=1e-6 learns nothing: its loss is above the median of the good trials at an early evaluation
    assert t[2].user_attrs["pruned_at_step"] <= 6 and t[2].user_attrs["n_steps"] == t[2].user_attrs["pruned_at_step"]
    assert max(t[2].intermediate_values) == t[2].user_attrs["pruned_at_step"]
    assert sorted(t[0].intermediate_values) == list(range(2, full + 1, 2))  # every evaluation, at the global step
    # a diverged trial (NaN loss) is pruned too, with the reason
    assert "nan at step 3" in t[3].user_attrs["diverged"] and t[3].user_attrs["n_steps"] == 0
    assert res.best_trial_.number == 0 and res.best_params_ == {"lr": 1e-2}
    # no trial's estimator or model outlives its trial (the pruned ones included)
    assert all(not any(v) for v in alive_after_trial.values()), alive_after_trial
    assert len(Tracked.refs) == 4


def test_on_evaluate_callback_stops_fit_between_steps():
    X, y = love_hate(48, 1)
    seen = []

    class StopAt:
        def on_evaluate(self, est, info):
            seen.append((info["step"], sorted(info["metrics"])))
            return info["step"] < 4

    clf = TextClassifier(model=TINY, epochs=2, batch_size=8, max_length=16, eval_steps=2, verbose=0)
    clf.fit(X[:32], y[:32], eval_set=(X[32:], y[32:]), callbacks=[StopAt()])
    assert clf.n_steps_ == 4 and clf.stopped_by_callback_ and not clf.interrupted_ and not clf.stopped_early_
    assert seen == [(2, sorted(TextClassifier.VALIDATION_METRICS)), (4, sorted(TextClassifier.VALIDATION_METRICS))]
    with pytest.raises(TypeError, match=r"callbacks\[0\]"):
        clf.fit(X[:32], y[:32], callbacks=[object()])
    reg = TextRegressor(model=TINY, epochs=1, batch_size=8, max_length=16, verbose=0)
    h = reg.fit(*counts_task(24), eval_set=counts_task(8, 1)).history_
    assert sorted(c[4:] for c in h.columns if c.startswith("val_")) == sorted(TextRegressor.VALIDATION_METRICS)


# ------------------------------------------------------------------------------------ storage

def test_sqlite_study_resumes_with_the_first_trials_intact(tmp_path):
    X, y = counts_task()
    url = "sqlite:///%s" % (tmp_path / "study.db")
    space = {"lr": ("log", 1e-4, 1.0), "schedule": ["constant", "linear"]}

    def stop_after(k):
        def cb(study, ft):
            if len(study.get_trials(states=(S.COMPLETE, S.PRUNED))) >= k:
                raise KeyboardInterrupt  # as Ctrl-C between two trials
        return cb

    first = lyricnn.tune(one_step_regressor(), X, y, space, n_trials=6, metric="mse", cv=HOLDOUT, storage=url,
                         callbacks=[stop_after(3)], verbose=0)
    assert first.interrupted_
    kept = [(t.number, t.state, t.params, t.value) for t in first.study.trials]
    assert len(kept) == 3 and all(s == S.COMPLETE for _, s, _, _ in kept)
    again = lyricnn.tune(one_step_regressor(), X, y, space, n_trials=6, metric="mse", cv=HOLDOUT, storage=url,
                         verbose=0)
    t = again.study.trials
    assert [(x.number, x.state, x.params, x.value) for x in t[:3]] == kept
    assert [x.number for x in t] == list(range(6)) and all(x.state in (S.COMPLETE, S.PRUNED) for x in t)
    assert len(again.trials_) == 6 and not again.interrupted_
    # a study that is complete runs nothing more; another metric on the same study is refused
    assert len(lyricnn.tune(one_step_regressor(), X, y, space, n_trials=6, metric="mse", cv=HOLDOUT, storage=url,
                            verbose=0).study.trials) == 6
    with pytest.raises(ValueError, match="another search"):
        lyricnn.tune(one_step_regressor(), X, y, space, n_trials=6, metric="mae", cv=HOLDOUT, storage=url, verbose=0)
    with pytest.raises(ValueError, match=r"sqlite:///study\.db"):
        lyricnn.tune(one_step_regressor(), X, y, space, storage="study.db", verbose=0)


SIGINT_SCRIPT = r"""
import sys, numpy as np, lyricnn, optuna
from lyricnn.estimators import TextClassifier
sys.path.insert(0, %(tests)r)
from test_tune import TINY, love_hate
lyricnn.set_num_threads(1)
X, y = love_hate(96, 0)
est = TextClassifier(model=TINY, epochs=25, batch_size=8, max_length=16, verbose=0)  # ~1 s per trial
def done(study, ft):
    print("DONE", ft.number, ft.state.name, flush=True)
res = lyricnn.tune(est, X, y, {"lr": ("log", 1e-4, 1e-2)}, n_trials=50, storage=%(url)r, callbacks=[done],
                   verbose=1)
print("RESULT interrupted=%%s" %% res.interrupted_, flush=True)
"""


def _run_until(tmp_path, script_text, url, marker, count, limit):
    """Start script_text (a template of tests and url) in a subprocess and read its output until the count-th
    line starting with marker; returns the process, still running."""
    script = tmp_path / "run.py"
    script.write_text(script_text % {"tests": str(ROOT / "tests"), "url": url})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, cwd=str(tmp_path))
    seen, t0 = 0, time.time()
    for line in p.stdout:
        seen += line.startswith(marker)
        if seen == count:
            break
        assert time.time() - t0 < limit
    return p


def test_ctrl_c_ends_the_study_cleanly(tmp_path):
    url = "sqlite:///%s" % (tmp_path / "study.db")
    p = _run_until(tmp_path, SIGINT_SCRIPT, url, "DONE", 2, 60)
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)  # during trial 2's fit: it stops between two steps
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err[-3000:]
    assert "RESULT interrupted=True" in out and "interrupted" in out, out
    study = optuna.load_study(study_name="lyricnn-study", storage=url)
    states = [t.state for t in study.trials]
    assert S.RUNNING not in states
    # the finished trials are kept; the interrupted one is marked failed, and no further trial started
    assert states == [S.COMPLETE, S.COMPLETE, S.FAIL]
    assert study.trials[2].user_attrs["interrupted"] is True and study.trials[2].user_attrs["n_steps"] > 0
    assert "trial 2 failed: interrupted (Ctrl-C)" in out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A CSV of love/hate texts and a model directory holding TINY's config.json and seeded random weights."""
    d = tmp_path_factory.mktemp("tune_cli")
    import pandas as pd

    X, y = love_hate(80, 0)
    pd.DataFrame({"lyrics": X, "mood": y}).to_csv(d / "data.csv", index=False)
    save_random_base(d / "tiny", TINY)
    return d


def _tune_cmd(d, *extra):
    return [sys.executable, "-m", "lyricnn", "tune", str(d / "data.csv"), "--text-col", "lyrics", "--label-col",
            "mood", "--model", str(d / "tiny"), "--max-length", "16", "--epochs", "2", "--batch-size", "8",
            "--threads", "1", "--device", "cpu"] + list(extra)


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def _pg_bindir():
    found = shutil.which("initdb")
    dirs = ([os.path.dirname(found)] if found else []) + sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    return next((d for d in dirs if os.path.isfile(os.path.join(d, "initdb")) and
                 os.path.isfile(os.path.join(d, "pg_ctl"))), None)


@pytest.fixture(scope="module")
def postgres_url():
    """LYRICNN_TEST_POSTGRES_URL, or a throwaway PostgreSQL cluster in a temp dir (unix socket only; as the
    'postgres' user when the tests run as root), or skip with the reason."""
    if os.environ.get("LYRICNN_TEST_POSTGRES_URL"):
        yield os.environ["LYRICNN_TEST_POSTGRES_URL"]
        return
    pytest.importorskip("psycopg", reason="psycopg (PostgreSQL driver; requirements/test.txt) is not installed")
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin); "
                    ".ci/run installs it with apt-get")
    as_user = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        try:
            pg = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run a PostgreSQL server as")
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser to start PostgreSQL as the 'postgres' user")
        as_user = ["runuser", "-u", "postgres", "--"]
    d = tempfile.mkdtemp(prefix="lyricnn-pg-")
    if as_user:
        os.chown(d, pg.pw_uid, pg.pw_gid)

    def run(*cmd):
        return subprocess.run(as_user + list(cmd), capture_output=True, text=True, timeout=120)

    r = run(os.path.join(bindir, "initdb"), "-D", d + "/data", "-A", "trust", "-U", "postgres", "--no-sync",
            "-E", "UTF8")
    if r.returncode != 0:
        shutil.rmtree(d, ignore_errors=True)
        pytest.skip("initdb failed: %s" % (r.stderr or r.stdout)[-500:])
    r = run(os.path.join(bindir, "pg_ctl"), "-D", d + "/data", "-l", d + "/log", "-w", "-o",
            "-k %s -c listen_addresses='' -c fsync=off" % d, "start")
    if r.returncode != 0:
        shutil.rmtree(d, ignore_errors=True)
        pytest.skip("the PostgreSQL server did not start: %s" % (r.stderr or r.stdout)[-500:])
    try:
        yield "postgresql+psycopg://postgres@/postgres?host=%s" % d
    finally:
        run(os.path.join(bindir, "pg_ctl"), "-D", d + "/data", "-m", "immediate", "stop")
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("backend", ["journal", "postgresql"])
def test_two_workers_share_one_study(backend, data_dir, tmp_path, request):
    storage = str(tmp_path / "journal.log") if backend == "journal" else request.getfixturevalue("postgres_url")
    n = 6
    cmd = _tune_cmd(data_dir, "--lr-range", "1e-4,1e-2", "--n-trials", str(n), "--storage", storage,
                    "--study-name", "two-%s" % backend, "--epochs", "6")  # ~0.2 s per trial
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                              cwd=str(tmp_path)) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    ran = [[int(ln.split()[1]) for ln in out.splitlines() if ln.startswith("trial ")] for out, _ in outs]
    assert all(ran), outs  # both workers ran trials
    assert not set(ran[0]) & set(ran[1])  # no trial ran twice
    st = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage)) \
        if backend == "journal" else storage
    study = optuna.load_study(study_name="two-%s" % backend, storage=st)
    finished = [t for t in study.trials if t.state in (S.COMPLETE, S.PRUNED)]
    numbers = [t.number for t in study.trials]
    assert len(finished) == n and sorted(ran[0] + ran[1]) == sorted(t.number for t in finished)
    assert len(numbers) == len(set(numbers)) and S.RUNNING not in [t.state for t in study.trials]
    # trials past n (both workers asked at once) are failed without training, and say so
    assert all("skipped" in t.user_attrs for t in study.trials if t.state == S.FAIL)


# ------------------------------------------------------------------------------------ CLI, plots, refit, cv

def test_cli_tune_plots_refit_and_saves(data_dir, tmp_path):
    (tmp_path / "space.json").write_text(json.dumps(
        {"lr": ["log", 1e-3, 2e-2], "head": {"hidden": [[], [16, 8]], "dropout": ["uniform", 0, 0.3]}}))
    r = subprocess.run(_tune_cmd(data_dir, "--space", str(tmp_path / "space.json"), "--schedules", "linear,cosine",
                                 "--n-trials", "5", "--metric", "accuracy", "--cv", "2", "--eval-steps", "2",
                                 "--plots-dir", str(tmp_path / "plots"), "--output-dir", str(tmp_path / "out")),
                       capture_output=True, text=True, env=_env(), cwd=str(tmp_path), timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sum(ln.startswith("trial ") for ln in r.stdout.splitlines()) == 5
    assert "best accuracy" in r.stdout and "refitting the best configuration" in r.stdout
    for kind in ("history", "importances", "parallel_coordinate", "slice"):
        png = tmp_path / "plots" / (kind + ".png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", kind
    best = json.loads((tmp_path / "out" / "best_params.json").read_text())
    assert set(best["params"]) == {"lr", "head", "schedule"} and set(best["params"]["head"]) == {"hidden", "dropout"}
    import pandas as pd

    trials = pd.read_csv(tmp_path / "out" / "trials.csv")
    assert len(trials) == 5 and {"params_lr", "params_head.hidden", "user_attrs_fold_scores"} <= set(trials.columns)
    model = TextClassifier.load(str(tmp_path / "out"))
    assert model.head["hidden"] == best["params"]["head"]["hidden"] and model.lr == best["params"]["lr"]
    assert len(model.predict(["i love the sky"])) == 1
    # nothing to search, and a bad range, are errors before any work
    r = subprocess.run(_tune_cmd(data_dir), capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode != 0 and "nothing to search" in r.stderr
    r = subprocess.run(_tune_cmd(data_dir, "--lr-range", "1e-2,1e-4"), capture_output=True, text=True, env=_env(),
                       timeout=120)
    assert r.returncode == 2 and "greater than high" in r.stderr


def test_cv_folds_refit_and_result(tmp_path):
    X, y = love_hate(60, 2)
    est = TextClassifier(model=TINY, epochs=1, batch_size=8, max_length=16, eval_steps=2, verbose=0)
    space = {"lr": ("log", 1e-3, 2e-2), "head": {"hidden": [[8], [16, 8]]}}
    res = lyricnn.tune(est, X, y, space, n_trials=3, metric="f1_macro", cv=3, refit=True, n_jobs=2, pruner=None,
                       verbose=0)
    assert res.direction == "maximize" and len(res.trials_) == 3
    for t in res.study.trials:
        folds = t.user_attrs["fold_scores"]
        assert len(folds) == 3 and t.value == pytest.approx(np.mean(folds))
        # each fold reports at its global step after the earlier folds' planned steps (40 rows: 5 steps)
        assert sorted(t.intermediate_values) == [2, 4, 5, 7, 9, 10, 12, 14, 15]
    assert res.best_score_ == max(t.value for t in res.study.trials)
    assert isinstance(res.best_params_["head"]["hidden"], list)
    best = res.best_estimator_
    assert best.n_steps_ == -(-60 // 8) and best.lr == res.best_params_["lr"] and est.lr == 5e-5  # refit on all rows
    assert best.head == {"hidden": res.best_params_["head"]["hidden"]} and est.head is None
    fig = res.plot("history")
    assert fig.axes and "f1_macro" in fig.axes[0].get_ylabel()
    assert "TuneResult(" in repr(res) and "3 complete" in repr(res)
    # the regressor's folds (numpy k-fold, the sizes of scikit-learn's KFold)
    sk = pytest.importorskip("sklearn.model_selection")
    for n, k in ((10, 3), (7, 7), (64, 5)):
        ours = kfold(n, k, seed=1)
        theirs = list(sk.KFold(k, shuffle=True, random_state=0).split(np.zeros(n)))
        assert [len(v) for _, v in ours] == [len(v) for _, v in theirs]
        assert sorted(np.concatenate([v for _, v in ours]).tolist()) == list(range(n))
        assert all(np.array_equal(np.sort(np.concatenate([t, v])), np.arange(n)) for t, v in ours)


def test_lora_space_merges_into_the_base_adapters():
    """The valence sweep: the LoRA rank and alpha searched over a base with lora=dict(...); each trial trains
    adapters of its rank (the best refit holds the best rank's tensors) and keeps the base's other keys."""
    X, y = counts_task(32)
    base = TextRegressor(model=TINY, lora=dict(r=8, alpha=16, dropout=0.0), epochs=1, batch_size=8, max_length=16,
                         verbose=0)
    res = lyricnn.tune(base, X, y, {"lora": {"r": [2, 4], "alpha": [4, 32]}}, n_trials=4, pruner=None, refit=True,
                       seed=3, verbose=0)
    assert {"params_lora.r", "params_lora.alpha"} <= set(res.trials_.columns)
    lora = res.best_params_["lora"]
    assert set(lora) == {"r", "alpha", "dropout"} and lora["dropout"] == 0.0 and lora["r"] in (2, 4)
    assert base.lora == dict(r=8, alpha=16, dropout=0.0)  # the base is not modified
    params = res.best_estimator_.model_.params
    a = [k for k in params if k.endswith("lora_A.weight")]
    assert a and all(params[k].shape[0] == lora["r"] for k in a)


def test_the_lstm_baseline_is_tuned_like_the_transformers():
    """An LSTMClassifier (no head, no encoder) through the same search: its own parameters, refit included."""
    X, y = love_hate(48, 1)
    base = lyricnn.LSTMClassifier(embedding_dim=8, hidden_size=8, epochs=1, batch_size=16, verbose=0)
    res = lyricnn.tune(base, X, y, {"hidden_size": [4, 8], "lr": ("log", 1e-3, 1e-1)}, n_trials=3, metric="accuracy",
                       pruner=None, refit=True, verbose=0)
    assert len(res.trials_) == 3 and set(res.best_params_) == {"hidden_size", "lr"}
    best = res.best_estimator_
    assert isinstance(best, lyricnn.LSTMClassifier) and best.hidden_size == res.best_params_["hidden_size"]
    assert best.model_.params["lstm.weight_hh_l0"].shape == (4 * best.hidden_size, best.hidden_size)
    with pytest.raises(ValueError, match=r"space\['hidden_size'\].*refused"):
        lyricnn.tune(base, X, y, {"hidden_size": [0, 8]}, n_trials=1, verbose=0)


# ------------------------------------------------------------------------------------ bad input

class NoFit(TextRegressor):
    def fit(self, *a, **k):
        raise AssertionError("fit must not run for bad input")


@pytest.mark.parametrize("space, metric, exc, match", [
    ({"learning_rate": ("log", 1e-5, 1e-3)}, "loss", ValueError, r"unknown parameter 'learning_rate'.*did you mean 'lr'"),
    ({"weight_decai": ("uniform", 0, 0.1)}, "loss", ValueError, r"'weight_decai'.*did you mean 'weight_decay'"),
    ({}, "loss", ValueError, "space is empty"),
    ({"lr": ("log", 1e-3, 1e-5)}, "loss", ValueError, r"space\['lr'\].*low 0.001 is greater than high 1e-05"),
    ({"lr": ("uniform", 0.3, 0.1)}, "loss", ValueError, "greater than high"),
    ({"epochs": ("int", 5, 2)}, "loss", ValueError, "greater than high"),
    ({"lr": ("log", 1e-5, 1e-3)}, "accuracy", ValueError, r"metric='accuracy' is not a validation metric.*pearson_r"),
    ({"lr": ("log", 0, 1e-3)}, "loss", ValueError, "needs low > 0"),
    ({"lr": 1e-3}, "loss", TypeError, "not a search distribution"),
    ({"lr": (1e-5, 1e-3)}, "loss", TypeError, "a tuple must be"),
    ({"lr": []}, "loss", ValueError, "empty list of choices"),
    ({"head": {"hiden": [[8]]}}, "loss", ValueError, r"space\['head'\] has an unknown parameter 'hiden'"),
    ({"head": {}}, "loss", ValueError, "empty dict"),
    ({"lr": {"x": [1]}}, "loss", ValueError, "not a dict parameter"),
    ({"batch_size": ("log", 8.0, 64.0)}, "loss", TypeError, r"space\['batch_size'\].*refused"),
    ({"schedule": ["linear", "sideways"]}, "loss", ValueError, r"'sideways' is refused.*unknown schedule"),
    ({"head": {"dropout": ("uniform", 0.0, 1.5)}}, "loss", ValueError, r"space\['head'\]\['dropout'\].*\[0, 1\)"),
    ({"epochs": ("int", 1, 3, 0)}, "loss", ValueError, "step must be > 0"),
    ({"lora": {"rank": [4, 8]}}, "loss", ValueError, r"space\['lora'\] has an unknown parameter 'rank'; valid.* r, "),
    ({"lora": {"r": [0, 8]}}, "loss", ValueError, r"space\['lora'\]\['r'\].*value 0 is refused"),
    ({"lora": {"dropout": ("uniform", 0.0, 1.0)}}, "loss", ValueError, r"space\['lora'\]\['dropout'\].*refused"),
])
def test_bad_input_before_any_training(space, metric, exc, match):
    X, y = counts_task(16)
    with pytest.raises(exc, match=match):
        lyricnn.tune(NoFit(model=TINY, max_length=16), X, y, space, metric=metric, verbose=0)


def test_bad_arguments_before_any_training(tmp_path):
    X, y = counts_task(16)
    est = NoFit(model=TINY, max_length=16)
    ok = {"lr": ("log", 1e-5, 1e-3)}
    for kw, exc, match in [
        (dict(direction="up"), ValueError, "direction must be"),
        (dict(n_trials=0), ValueError, "n_trials"),
        (dict(pruner="sometimes"), ValueError, "pruner must be one of"),
        (dict(cv=1), ValueError, "cv"),
        (dict(cv="folds"), TypeError, "cv must be"),
        (dict(validation_fraction=1.5), ValueError, "validation_fraction"),
        (dict(storage=3), TypeError, "storage must be"),
        (dict(storage="nosuchdb://x"), ValueError, "cannot be opened"),
        (dict(plots_dir=str(tmp_path / "f.txt")), ValueError, "plots_dir"),
        (dict(enqueue=[{"momentum": 0.9}]), ValueError, "does not search"),
    ]:
        (tmp_path / "f.txt").write_text("x")
        with pytest.raises(exc, match=match):
            lyricnn.tune(est, X, y, ok, verbose=0, **kw)
    with pytest.raises(ValueError, match="X has 16 texts but y has 3"):
        lyricnn.tune(est, X, y[:3], ok, verbose=0)
    with pytest.raises(TypeError, match="TextClassifier or TextRegressor"):
        lyricnn.tune(object(), X, y, ok)
    with pytest.raises(ValueError, match="only one class"):
        lyricnn.tune(TextClassifier(model=TINY), X, ["a"] * 16, ok, verbose=0)


def test_optuna_is_optional():
    """import lyricnn does not import optuna; without it tune says what to install."""
    code = ("import sys, lyricnn; assert 'optuna' not in sys.modules\n"
            "sys.modules['optuna'] = None\n"
            "try:\n    lyricnn.tune(lyricnn.TextRegressor(), ['a'], [1.0], {'lr': ('log', 1e-5, 1e-3)})\n"
            "except ImportError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "pip install optuna" in r.stdout


# ------------------------------------------------------------------------------------ issue 20: hostile input

def test_20_unwritable_plots_dir_fails_before_any_trial(tmp_path):
    X, y = counts_task(16)
    ok = {"lr": ("log", 1e-5, 1e-3)}
    # /sys takes no new folders, not even from root (for whom os.access says yes to everything)
    with pytest.raises(ValueError, match=r"plots_dir='/sys/lyricnn_plots/x' cannot be (created|written): "):
        lyricnn.tune(NoFit(model=TINY, max_length=16), X, y, ok, plots_dir="/sys/lyricnn_plots/x", verbose=0)
    d = tmp_path / "plots"
    res = lyricnn.tune(one_step_regressor(), *counts_task(), ok, n_trials=2, metric="mse", cv=HOLDOUT, plots_dir=d,
                       verbose=0)
    assert (d / "history.png").is_file() and res.plots_["history"] == str(d / "history.png")
    assert not [f for f in os.listdir(d) if f.startswith(".lyricnn-probe")]


def test_20_09_overlapping_cv_splits_are_refused():
    X, y = counts_task(16)
    with pytest.raises(ValueError, match=r"cv\[1\]: 2 row\(s\) are in both the train and the validation indices "
                                         r"\(first: 3, 4\); a trial would be scored on rows it trained on"):
        lyricnn.tune(NoFit(model=TINY, max_length=16), X, y, {"lr": ("log", 1e-5, 1e-3)},
                     cv=[(np.arange(8), np.arange(8, 16)), (np.arange(5), np.arange(3, 16))], verbose=0)


def test_20_storage_that_is_not_a_journal(tmp_path):
    p = tmp_path / "j.log"
    p.write_text("hello, not an optuna journal\n")
    X, y = counts_task(16)
    with pytest.raises(ValueError, match=r"storage='.*j\.log' is not an Optuna journal file \(JSONDecodeError: "
                                         r"Expecting value: .*\)\. A plain path is taken as a journal file"):
        lyricnn.tune(NoFit(model=TINY, max_length=16), X, y, {"lr": ("log", 1e-5, 1e-3)}, storage=str(p),
                     verbose=0)


def test_20_enqueue_outside_the_space_names_the_parameter():
    X, y = counts_task(16)
    est = NoFit(model=TINY, max_length=16)
    for enq, match in (([{"lr": -5.0}], r"enqueue\[0\]: lr=-5\.0 is not in the space searched for lr: give a number "
                                        r"in \[1e-05, 0\.001\] \(log-uniform\)"),
                       ([{"lr": 1e-4}, {"lr": "big"}], r"enqueue\[1\]: lr='big' .*give a finite number"),
                       ([{"epochs": 2.5}], r"enqueue\[0\]: epochs=2\.5 .*give an int in \[1, 3\]"),
                       ([{"schedule": "sideways"}], r"schedule='sideways' .*choose one of \['linear', 'cosine'\]"),
                       ([{"head": {"dropout": 0.9}}], r"head\.dropout=0\.9 .*give a number in \[0\.0, 0\.5\]")):
        with pytest.raises(ValueError, match=match):
            lyricnn.tune(est, X, y, {"lr": ("log", 1e-5, 1e-3), "epochs": ("int", 1, 3),
                                     "schedule": ["linear", "cosine"], "head": {"dropout": ("uniform", 0.0, 0.5)}},
                         enqueue=enq, verbose=0)


def test_20_nan_metric_says_nan(capsys):
    """A validation set of one repeated text: every prediction is the same and pearson_r is undefined."""
    X, y = counts_task(24)
    X = X[:16] + ["love love hate"] * 8
    res = lyricnn.tune(one_step_regressor(), X, y, {"lr": ("log", 1e-4, 1e-2)}, n_trials=1, metric="pearson_r",
                       cv=[(np.arange(16), np.arange(16, 24))], verbose=1)
    t = res.study.trials[0]
    assert t.state == S.FAIL and "pearson_r is nan" in t.user_attrs["error"]
    out = capsys.readouterr().out
    assert "trial 0 failed: the validation pearson_r is nan, so the trial has no value: pearson_r is undefined when " \
           "the predictions are constant" in out


def test_20_direction_message_spelling(tmp_path):
    X, y = counts_task()
    url = "sqlite:///%s" % (tmp_path / "d.db")
    lyricnn.tune(one_step_regressor(), X, y, {"lr": ("log", 1e-4, 1e-2)}, n_trials=1, metric="mse", cv=HOLDOUT,
                 storage=url, verbose=0)
    with pytest.raises(ValueError, match=r"study 'lyricnn-study' in the storage minimizes, but direction='maximize'"):
        lyricnn.tune(one_step_regressor(), X, y, {"lr": ("log", 1e-4, 1e-2)}, n_trials=1, metric="mse",
                     direction="maximize", cv=HOLDOUT, storage=url, verbose=0)


KILL_SCRIPT = r"""
import sys, numpy as np, lyricnn
sys.path.insert(0, %(tests)r)
from test_tune import one_step_regressor, counts_task, HOLDOUT
lyricnn.set_num_threads(1)

class TextRegressor(lyricnn.TextRegressor):  # the study records the estimator's class name
    def fit(self, *a, **k):
        print("FIT", flush=True)
        return super().fit(*a, **k)

X, y = counts_task()
est = TextRegressor(**dict(one_step_regressor().get_params(), epochs=400, batch_size=8))  # seconds per trial
lyricnn.tune(est, X, y, {"lr": ("log", 1e-4, 1e-2)}, n_trials=4, metric="mse", cv=HOLDOUT, storage=%(url)r,
             verbose=0)
"""


def test_20_killed_sqlite_sweep_reruns_at_once_to_n_trials(tmp_path, capsys):
    """kill -9 during trial 1: the rerun at once marks that trial failed (its worker is gone), says so, and the
    study ends with n_trials finished trials; nothing waits for Optuna's 2-minute heartbeat."""
    url = "sqlite:///%s" % (tmp_path / "study.db")
    p = _run_until(tmp_path, KILL_SCRIPT, url, "FIT", 2, 120)
    time.sleep(0.5)
    p.kill()  # SIGKILL: no cleanup at all
    p.wait(timeout=30)
    before = optuna.load_study(study_name="lyricnn-study", storage=url).trials
    assert [t.state for t in before] == [S.COMPLETE, S.RUNNING]
    t0 = time.time()
    X, y = counts_task()
    res = lyricnn.tune(one_step_regressor(), X, y, {"lr": ("log", 1e-4, 1e-2)}, n_trials=4, metric="mse",
                       cv=HOLDOUT, storage=url, verbose=1)
    assert time.time() - t0 < 60
    out = capsys.readouterr().out
    assert "marked 1 trial(s) failed that a run which is gone left running (trial 1 of pid %d)" % p.pid in out
    assert "running on other workers" not in out
    states = [t.state for t in res.study.trials]
    assert S.RUNNING not in states and states[1] == S.FAIL
    assert sum(s in (S.COMPLETE, S.PRUNED) for s in states) == 4
    assert "stopped without finishing it" in res.study.trials[1].user_attrs["error"]


def test_20_running_trials_of_live_workers_are_left_alone(tmp_path):
    from lyricnn import tuning

    assert not tuning._gone(tuning._worker())                       # this process
    assert not tuning._gone(dict(tuning._worker(), host="elsewhere"))  # another host: the heartbeat's business
    assert tuning._gone(dict(tuning._worker(), pid=2 ** 22 + 12345))   # no such process
    assert tuning._gone(dict(tuning._worker(), started=-1))            # the pid was reused by a later process
