"""Hyper-parameter search on Optuna: lyricnn.tune(estimator, X, y, space, ...) -> TuneResult.

    import lyricnn
    res = lyricnn.tune(lyricnn.TextRegressor(model="all-MiniLM-L6-v2", epochs=3, eval_steps=20),
                       texts, valence,
                       space={"lr": ("log", 1e-5, 1e-3), "weight_decay": ("uniform", 0.0, 0.1),
                              "schedule": ["linear", "cosine"],
                              "head": {"hidden": [[128], [256, 128]], "dropout": ("uniform", 0.0, 0.3)}},
                       n_trials=12, metric="pearson_r", storage="sqlite:///sweep.db", plots_dir="sweep/")
    res.best_params_, res.best_score_, res.trials_        # the trials as a pandas DataFrame
    lyricnn.TextRegressor(**{**base.get_params(), **res.best_params_})   # or refit=True: res.best_estimator_

Optuna does the searching (a seeded TPE sampler), the pruning (MedianPruner by default) and the storage
(in memory, SQLite, PostgreSQL or a journal file); lyricnn adds the estimator side: a fresh estimator per
trial, the validation split or k-fold, the metric reported to the trial at every evaluation inside fit
(at the global step), pruned trials stopped between steps, one line per trial and a bar over trials.
Optuna is an optional dependency, imported when tune() runs (pip install optuna).
"""
import copy
import difflib
import json
import math
import numbers
import os
import time
import warnings

import numpy as np

from . import tracking as _tracking
from ._validate import check_bool, check_float, check_int, check_seed
from .classifier import HEAD_KEYS, normalize_head
from .data import kfold, stratified_kfold
from .lora import LORA_KEYS
from .training import LOWER_IS_BETTER, check_checkpoint_dir

__all__ = ["tune", "TuneResult", "PRUNERS", "PLOTS"]

#: short forms of a distribution: (kind, low, high[, step])
SHORT_FORMS = ("log", "uniform", "int")
PRUNERS = ("median", "hyperband", "successive_halving")
#: the pictures save_plots draws: name -> optuna.visualization.matplotlib function
PLOTS = {"history": "plot_optimization_history", "importances": "plot_param_importances",
         "parallel_coordinate": "plot_parallel_coordinate", "slice": "plot_slice"}
#: the keys a nested space may search under a dict-valued estimator parameter (others are checked by fit)
NESTED_KEYS = {"head": HEAD_KEYS, "lora": LORA_KEYS}
_META = "lyricnn"  # the study user attribute recording what the study searches


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ImportError("lyricnn.tune needs Optuna, an optional dependency of lyricnn: pip install optuna") from None
    return optuna


# ------------------------------------------------------------------------------------ the search space

class _Param:
    """One searched parameter: flat name ("lr", "head.dropout"), path in set_params, optuna distribution,
    and decode (categorical choices that are not None/bool/int/float/str travel as their JSON text)."""

    def __init__(self, name, path, dist, decode=None):
        self.name, self.path, self.dist, self.decode = name, path, dist, decode


def _number(v, where, what):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) or not math.isfinite(v):
        raise TypeError("%s: %s must be a finite number, got %r" % (where, what, v))
    return v.item() if isinstance(v, np.generic) else v


def _plain(c):
    """A choice optuna stores as it is (None, bool, int, float, str), numpy scalars made Python ones."""
    c = c.item() if isinstance(c, np.generic) else c
    return c, c is None or isinstance(c, (bool, int, float, str))


def _distribution(v, where, D):
    """(optuna distribution, decode) for one value of the space; D is optuna.distributions."""
    if isinstance(v, D.BaseDistribution):
        return v, None
    if isinstance(v, (tuple, list)) and v and isinstance(v[0], str) and v[0] in SHORT_FORMS:
        kind, args = v[0], list(v[1:])
        form = "(%r, low, high)" % kind if kind == "log" else "(%r, low, high[, step])" % kind
        if len(args) not in ((2,) if kind == "log" else (2, 3)):
            raise ValueError("%s = %r: write %s" % (where, v, form))
        lo, hi = _number(args[0], where, "low"), _number(args[1], where, "high")
        step = _number(args[2], where, "step") if len(args) == 3 else None
        if lo > hi:
            raise ValueError("%s = %r: low %r is greater than high %r; swap them" % (where, v, lo, hi))
        if step is not None and step <= 0:
            raise ValueError("%s = %r: step must be > 0" % (where, v))
        if kind == "log":
            if lo <= 0:
                raise ValueError("%s = %r: a log-uniform range needs low > 0 (got %r); use ('uniform', low, high) "
                                 "for a range that starts at 0" % (where, v, lo))
            return D.FloatDistribution(float(lo), float(hi), log=True), None
        if kind == "uniform":
            return D.FloatDistribution(float(lo), float(hi), step=None if step is None else float(step)), None
        if not all(isinstance(a, numbers.Integral) for a in args):
            raise TypeError("%s = %r: ('int', low, high[, step]) takes integers" % (where, v))
        return D.IntDistribution(int(lo), int(hi), step=int(step or 1)), None
    if isinstance(v, tuple):
        raise TypeError("%s = %r: a tuple must be %s with low <= high; give the choices of a categorical "
                        "parameter as a list" % (where, v, " or ".join("(%r, low, high)" % k for k in SHORT_FORMS)))
    if isinstance(v, list):
        if not v:
            raise ValueError("%s is an empty list of choices; give at least one" % where)
        choices, decode = [], {}
        for c in v:
            c, plain = _plain(c)
            if not plain:
                try:
                    key = json.dumps(c, sort_keys=True, default=_json_default)
                except (TypeError, ValueError):
                    raise TypeError("%s: the choice %r cannot be written as JSON (what the study stores)"
                                    % (where, c)) from None
                decode[key] = c
                c = key
            if c in choices:
                raise ValueError("%s lists the choice %r twice" % (where, c))
            choices.append(c)
        return D.CategoricalDistribution(choices), decode or None
    raise TypeError("%s = %r is not a search distribution: use ('log', low, high), ('uniform', low, high), "
                    "('int', low, high), a list of choices, an optuna distribution, or a dict of those for a "
                    "dict parameter such as head; fixed values belong on the estimator (set_params)" % (where, v))


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


_ALIASES = {"learning_rate": "lr", "num_train_epochs": "epochs", "per_device_train_batch_size": "batch_size"}


def _unknown(name, valid, where):
    near = [_ALIASES[name]] if _ALIASES.get(name) in valid else difflib.get_close_matches(name, valid, n=1)
    return ValueError("%s has an unknown parameter %r%s; valid parameters: %s"
                      % (where, name, " (did you mean %r?)" % near[0] if near else "", ", ".join(sorted(valid))))


def _parse_space(space, base, D):
    """[_Param] for a space dict over the parameters `base` (the estimator's get_params())."""
    if not isinstance(space, dict):
        raise TypeError("space must be a dict {parameter: distribution}, got %s" % type(space).__name__)
    if not space:
        raise ValueError("space is empty: give at least one parameter to search, e.g. "
                         "space={'lr': ('log', 1e-5, 1e-3)}")
    out = []
    for name, v in space.items():
        if not isinstance(name, str):
            raise TypeError("space keys must be parameter names (str), got %r" % (name,))
        if name not in base:
            raise _unknown(name, list(base), "space")
        if not isinstance(v, dict):
            out.append(_Param(name, (name,), *_distribution(v, "space[%r]" % name, D)))
            continue
        if base[name] is not None and not isinstance(base[name], dict):
            raise ValueError("space[%r] is a dict (a nested space) but the estimator's %s=%r is not a dict "
                             "parameter; give a distribution instead" % (name, name, base[name]))
        if not v:
            raise ValueError("space[%r] is an empty dict: give at least one %s key to search" % (name, name))
        keys = NESTED_KEYS.get(name)
        for k, sv in v.items():
            if not isinstance(k, str):
                raise TypeError("space[%r] keys must be str, got %r" % (name, k))
            if keys is not None and k not in keys:
                raise _unknown(k, list(keys), "space[%r]" % name)
            if isinstance(sv, dict):
                raise TypeError("space[%r][%r] is a dict: a space nests one level (parameter -> key -> "
                                "distribution)" % (name, k))
            out.append(_Param(name + "." + k, (name, k), *_distribution(sv, "space[%r][%r]" % (name, k), D)))
    return out


def _to_params(flat, params, base):
    """set_params arguments from optuna's {flat name: value}: choices decoded, nested keys merged into a
    copy of the estimator's dict parameter."""
    out = {}
    for p in params:
        v = flat[p.name]
        if p.decode and isinstance(v, str) and v in p.decode:
            v = copy.deepcopy(p.decode[v])
        if len(p.path) == 1:
            out[p.name] = v
        else:
            top, key = p.path
            if top not in out:
                out[top] = copy.deepcopy(dict(base[top] or {}))
            out[top][key] = v
    return out


def _suggest(trial, p):
    d = p.dist
    if type(d).__name__ == "FloatDistribution":
        return trial.suggest_float(p.name, d.low, d.high, step=d.step, log=d.log)
    if type(d).__name__ == "IntDistribution":
        return trial.suggest_int(p.name, d.low, d.high, step=d.step, log=d.log)
    return trial.suggest_categorical(p.name, d.choices)


def _extremes(p):
    """The values whose acceptance by the estimator is checked before the study: the ends of a range, every
    choice."""
    d = p.dist
    return list(d.choices) if hasattr(d, "choices") else [d.low, d.high]


def _clone(est, overrides=None):
    """A fresh unfitted estimator with est's parameters (deep copies) and `overrides`."""
    params = {k: copy.deepcopy(v) for k, v in est.get_params().items()}
    params.update(overrides or {})
    return type(est)(**params)


def _preflight(est, params, base, n_features):
    """Every end of every range and every choice, set alone on a clone, passes the estimator's own
    parameter checks (the head checks for a head space, the LoRA checks for a lora space): bad values fail
    now, before any training."""
    for p in params:
        for v in _extremes(p):
            c = _clone(est, _to_params({p.name: v}, [p], base))
            try:
                c._check_params()
                head = c._resolved_head()
                if head is not None:
                    normalize_head(head, hidden_size=8, num_labels=2, num_features=n_features)
            except (TypeError, ValueError) as e:
                raise type(e)("space[%s]: the value %r is refused by %s: %s"
                              % ("][".join(map(repr, p.path)), v, type(est).__name__, e)) from None


# ------------------------------------------------------------------------------------ data

def _take(X, idx):
    if X is None:
        return None
    if hasattr(X, "iloc"):
        return X.iloc[idx]
    if isinstance(X, np.ndarray):
        return X[idx]
    return [X[i] for i in idx]


def _splits(est, y, cv, validation_fraction, seed):
    """[(train_idx, val_idx)]: a holdout split (stratified for a classifier), k folds, or the user's."""
    n = len(y)
    clf = getattr(est, "_task", None) == "classify"
    if cv is None:
        return [est._split(y, validation_fraction, seed)]
    if isinstance(cv, numbers.Integral) and not isinstance(cv, (bool, np.bool_)):
        k = check_int(cv, "cv (the number of folds)", min=2)
        return stratified_kfold(y, n_splits=k, seed=seed) if clf else kfold(n, n_splits=k, seed=seed)
    if not isinstance(cv, (list, tuple)) or not cv:
        raise TypeError("cv must be None (a holdout split of validation_fraction), a number of folds >= 2, or a "
                        "list of (train_indices, validation_indices) pairs; got %r" % (cv,))
    out = []
    for i, pair in enumerate(cv):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise TypeError("cv[%d] must be a pair (train_indices, validation_indices)" % i)
        tr, va = (np.asarray(a) for a in pair)
        for what, a in (("train", tr), ("validation", va)):
            if a.ndim != 1 or not len(a) or a.dtype.kind not in "iu" or a.min() < 0 or a.max() >= n:
                raise ValueError("cv[%d]: the %s indices must be a non-empty list of row numbers in 0..%d"
                                 % (i, what, n - 1))
        out.append((tr, va))
    return out


# ------------------------------------------------------------------------------------ storage, pruner

def _storage(storage, optuna):
    """None (in memory), an optuna storage, an RDB URL (sqlite:///f.db, postgresql+psycopg://...; with
    Optuna's heartbeat, so a killed worker's trial is marked failed), redis://... or a journal file path."""
    if storage is None or isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if not isinstance(storage, (str, os.PathLike)):
        raise TypeError("storage must be None (in memory), a database URL such as 'sqlite:///study.db', a journal "
                        "file path, or an optuna storage; got %s" % type(storage).__name__)
    s = os.fspath(storage)
    if s.startswith("redis"):
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalRedisBackend(s))
    if "://" in s:
        for attempt in range(5):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(s, heartbeat_interval=30, grace_period=120)
            except ImportError as e:
                raise ImportError("storage=%r needs a database driver: %s (PostgreSQL: pip install psycopg[binary] "
                                  "and write postgresql+psycopg://...)" % (s, e)) from None
            except Exception as e:  # sqlalchemy's ArgumentError, OperationalError, IntegrityError, ...
                # workers that start at once race to create the schema (optuna issue #1092): the loser retries
                if type(e).__name__ in ("IntegrityError", "ProgrammingError", "OperationalError") and attempt < 4:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                raise ValueError("storage=%r cannot be opened: %s: %s" % (s, type(e).__name__, e)) from None
    if s.endswith((".db", ".sqlite", ".sqlite3")):
        raise ValueError("storage=%r looks like a SQLite file; write it as a URL: storage='sqlite:///%s' (a plain "
                         "path is taken as an Optuna journal file)" % (s, s))
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(s))


def _pruner(pruner, optuna):
    P = optuna.pruners
    if pruner is None:
        return P.NopPruner()
    if isinstance(pruner, P.BasePruner):
        return pruner
    make = {"median": P.MedianPruner, "hyperband": P.HyperbandPruner,
            "successive_halving": P.SuccessiveHalvingPruner}.get(pruner) if isinstance(pruner, str) else None
    if make is None:
        raise ValueError("pruner must be one of %s, None (no pruning) or an optuna pruner; got %r"
                         % (", ".join(map(repr, PRUNERS)), pruner))
    return make()


# ------------------------------------------------------------------------------------ one trial

class _Interrupted(Exception):
    """Ctrl-C stopped the trial's fit: the trial is marked failed and the study stops."""


class _Surplus(Exception):
    """The study already had n_trials (other workers finished or are running them): nothing was trained."""


class _Reporter:
    """fit callback: reports the metric to the trial at every evaluation (at the global step, after the
    earlier folds' steps) and stops fit, between steps, when the pruner says so."""

    def __init__(self, trial, metric, offset):
        self.trial, self.metric, self.offset = trial, metric, offset
        self.values = {}          # fit's global step -> metric
        self.pruned_at = None

    def on_evaluate(self, est, info):
        v = float(info["metrics"][self.metric])
        self.values[info["step"]] = v
        if math.isfinite(v):
            self.trial.report(v, self.offset + info["step"])
        if self.trial.should_prune():
            self.pruned_at = self.offset + info["step"]
            return False
        return None

    def score(self, est):
        """The metric of the weights fit returned: the best evaluation's when early stopping restored it,
        else the last evaluation's."""
        if not self.values:
            return float("nan")
        restored = (est.early_stopping and est.restore_best_weights and est.best_step_ is not None
                    and est.best_step_ != est.n_steps_ and not est.interrupted_)
        return self.values.get(est.best_step_) if restored else self.values[max(self.values)]


class _Objective:
    def __init__(self, estimator, params, base, metric, data, splits, target, fit_verbose, optuna):
        self.estimator, self.params, self.base, self.metric = estimator, params, base, metric
        self.X, self.y, self.F = data
        self.splits, self.target, self.fit_verbose, self.optuna = splits, target, fit_verbose, optuna
        self.interrupted = False

    def _surplus(self, trial):
        """The trials numbered before this one (finished, or running on another worker) already make n_trials."""
        S = self.optuna.trial.TrialState
        ahead = sum(t.number < trial.number for t in
                    trial.study.get_trials(deepcopy=False, states=(S.COMPLETE, S.PRUNED, S.RUNNING)))
        return ahead >= self.target

    def __call__(self, trial):
        if self._surplus(trial):
            trial.set_user_attr("skipped", "the study already had n_trials=%d trials" % self.target)
            trial.study.stop()
            raise _Surplus()
        try:
            return self._run(trial)
        except (self.optuna.TrialPruned, _Interrupted, KeyboardInterrupt):
            raise
        except Exception as e:
            trial.set_user_attr("error", "%s: %s" % (type(e).__name__, e))
            raise

    def _run(self, trial):
        overrides = _to_params({p.name: _suggest(trial, p) for p in self.params}, self.params, self.base)
        overrides.update(verbose=self.fit_verbose, checkpoint_dir=None)
        scores, steps, offset = [], 0, 0
        for tr, va in self.splits:
            est = _clone(self.estimator, overrides)
            rep = _Reporter(trial, self.metric, offset)
            Xv, yv = _take(self.X, va), self.y[va]
            eval_set = (Xv, yv) if self.F is None else (Xv, yv, _take(self.F, va))
            diverged = None
            try:
                with _tracking.context(step_offset=offset):  # report_to: the fold's steps after the earlier folds'
                    est.fit(_take(self.X, tr), self.y[tr], features=_take(self.F, tr), eval_set=eval_set,
                            callbacks=[rep])
            except FloatingPointError as e:  # the loss diverged: a bad configuration, ranked below the others
                diverged = str(e)  # (the traceback, which holds the model, goes with the except block)
            if diverged is not None:
                del est
                trial.set_user_attr("n_steps", steps)
                trial.set_user_attr("diverged", diverged)
                raise self.optuna.TrialPruned("diverged: %s" % diverged)
            steps += est.n_steps_
            offset += est.epochs * -(-len(tr) // est.batch_size)  # the fold's planned steps
            interrupted, score = est.interrupted_, rep.score(est)
            del est  # free the model before the next fold, or before the trial is pruned
            trial.set_user_attr("n_steps", steps)
            if interrupted:
                self.interrupted = True
                trial.set_user_attr("interrupted", True)
                trial.study.stop()
                raise _Interrupted()
            if rep.pruned_at is not None:
                trial.set_user_attr("pruned_at_step", rep.pruned_at)
                raise self.optuna.TrialPruned("pruned at step %d" % rep.pruned_at)
            scores.append(score)
        if len(scores) > 1:
            trial.set_user_attr("fold_scores", scores)
        return float(np.mean(scores))


# ------------------------------------------------------------------------------------ progress

def _fmt(v):
    if isinstance(v, float):
        return "%.3g" % v
    return str(v)


class _Progress:
    """Study callback: one line per trial of this worker, a tqdm bar over trials, and the stop rule (the
    study stops when its finished and running trials make n_trials)."""

    def __init__(self, target, total, metric, verbose, optuna):
        self.target, self.metric, self.optuna = target, metric, optuna
        self.bar = None
        if verbose:
            from .progress import make_bar

            self.bar = make_bar(total, desc="trials", unit="trial")
        self.verbose = verbose

    def write(self, s):
        if not self.verbose:
            return
        if self.bar is not None:
            self.bar.write(s)
        else:
            print(s, flush=True)

    def __call__(self, study, ft):
        S = self.optuna.trial.TrialState
        if "skipped" not in ft.user_attrs:
            if self.bar is not None:
                self.bar.update(1)
            self.write(self.line(study, ft))
        if len(study.get_trials(deepcopy=False, states=(S.COMPLETE, S.PRUNED, S.RUNNING))) >= self.target:
            study.stop()

    def line(self, study, ft):
        S = self.optuna.trial.TrialState
        ua = ft.user_attrs
        params = " ".join("%s=%s" % (k, _fmt(v)) for k, v in ft.params.items())
        secs = (ft.duration.total_seconds() if ft.duration is not None else float("nan"))
        tail = "| %s | %s steps, %.1f s" % (params, ua.get("n_steps", "?"), secs)
        if ft.state == S.COMPLETE:
            try:
                best = study.best_trial
                b = "best %s=%.4g (trial %d)" % (self.metric, best.value, best.number)
            except ValueError:
                b = ""
            return "trial %d complete: %s=%.4g, %s %s" % (ft.number, self.metric, ft.value, b, tail)
        if ft.state == S.PRUNED:
            why = "diverged" if "diverged" in ua else "pruned at step %s" % ua.get("pruned_at_step", "?")
            last = ft.intermediate_values[max(ft.intermediate_values)] if ft.intermediate_values else None
            return "trial %d %s%s %s" % (ft.number, why, ", %s=%.4g" % (self.metric, last) if last is not None
                                         else "", tail)
        why = "interrupted (Ctrl-C)" if ua.get("interrupted") else ua.get("error", "no value")
        return "trial %d failed: %s %s" % (ft.number, why, tail)

    def close(self):
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------------------------------ result

class TuneResult:
    """What lyricnn.tune returns.

    study: the optuna.Study (all its trials, from every worker); metric, direction;
    best_params_: set_params arguments of the best complete trial (nested spaces merged into the
    estimator's dict parameter), best_score_ its score, best_trial_ the optuna FrozenTrial (None, None, None
    while no trial completed); trials_: the study's trials as a pandas DataFrame (optuna's
    trials_dataframe: number, value, state, params_<name>, user_attrs_n_steps, ...); best_estimator_: the best
    configuration refit on all the data (refit=True), else None; interrupted_: Ctrl-C ended the study;
    plots_: {name: PNG path} written by plots_dir= / save_plots().
    """

    def __init__(self, study, params, base, metric, direction, interrupted=False):
        self.study, self.metric, self.direction = study, metric, direction
        self.interrupted_ = interrupted
        self.best_estimator_ = None
        self.plots_ = {}
        S = _optuna().trial.TrialState
        complete = study.get_trials(deepcopy=False, states=(S.COMPLETE,))
        self.best_trial_ = study.best_trial if complete else None
        self.best_score_ = None if self.best_trial_ is None else float(self.best_trial_.value)
        self.best_params_ = None if self.best_trial_ is None else _to_params(self.best_trial_.params, params, base)
        try:
            self.trials_ = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs",
                                                         "datetime_start", "duration"))
        except ImportError:  # no pandas
            self.trials_ = [{"number": t.number, "value": t.value, "state": t.state.name, "params": t.params,
                             "user_attrs": t.user_attrs} for t in study.trials]

    def __repr__(self):
        S = _optuna().trial.TrialState
        n = {s: len(self.study.get_trials(deepcopy=False, states=(s,))) for s in (S.COMPLETE, S.PRUNED, S.FAIL)}
        return ("TuneResult(study=%r, %d complete, %d pruned, %d failed, best %s=%s, best_params_=%r)"
                % (self.study.study_name, n[S.COMPLETE], n[S.PRUNED], n[S.FAIL], self.metric,
                   None if self.best_score_ is None else "%.4g" % self.best_score_, self.best_params_))

    def plot(self, kind="history", path=None):
        """One of PLOTS ('history', 'importances', 'parallel_coordinate', 'slice'), drawn by
        optuna.visualization.matplotlib; returns the matplotlib Figure (saved as a PNG when path is given)."""
        if kind not in PLOTS:
            raise ValueError("kind must be one of %s, got %r" % (", ".join(map(repr, PLOTS)), kind))
        optuna = _optuna()
        from optuna.visualization import matplotlib as ovm

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            ax = getattr(ovm, PLOTS[kind])(self.study, target_name=self.metric)
        axes = np.asarray(ax).ravel()
        fig = axes[0].figure
        from matplotlib.ticker import NullFormatter

        for a in axes:  # log axes: major tick labels only (the minor ones overlap)
            if a.get_xscale() == "log":
                a.xaxis.set_minor_formatter(NullFormatter())
        fig.set_size_inches(max(fig.get_size_inches()[0], 7), max(fig.get_size_inches()[1], 4.5))
        if path is not None:
            fig.savefig(path, dpi=100, bbox_inches="tight")
        return fig

    def save_plots(self, directory, kinds=tuple(PLOTS)):
        """Write each plot of `kinds` to directory/<kind>.png; returns {kind: path} (also in plots_). A plot
        that cannot be drawn yet (e.g. importances before two trials completed) is skipped with a warning."""
        directory = check_checkpoint_dir(directory, "plots_dir")
        os.makedirs(directory, exist_ok=True)
        import matplotlib.pyplot as plt

        for kind in kinds:
            path = os.path.join(directory, kind + ".png")
            try:
                fig = self.plot(kind, path)
            except (ValueError, RuntimeError, ZeroDivisionError, IndexError) as e:
                warnings.warn("lyricnn.tune: the %s plot was not drawn: %s" % (kind, e), RuntimeWarning, stacklevel=2)
                continue
            plt.close(fig)
            self.plots_[kind] = path
        return dict(self.plots_)


# ------------------------------------------------------------------------------------ tune

def tune(estimator, X, y, space, n_trials=20, metric="loss", direction=None, cv=None, validation_fraction=0.2,
         features=None, storage=None, study_name=None, seed=0, sampler=None, pruner="median", refit=False,
         timeout=None, n_jobs=1, callbacks=None, enqueue=None, plots_dir=None, verbose=1):
    """Search the hyper-parameters of a lyricnn estimator with Optuna; returns a TuneResult.

    estimator: a TextClassifier / TextRegressor whose parameters are the starting point; each trial fits a
      fresh copy (its get_params, the trial's values set on top; verbose off, no checkpoint_dir).
    X, y (, features): the data, as for fit. Each trial trains on a split and is scored on the rest:
      cv=None: a holdout of validation_fraction (stratified for a classifier); cv=k: k folds (stratified
      for a classifier), the score is the mean over folds; cv=[(train_idx, val_idx), ...]: your splits.
      The splits are drawn with `seed`.
    space: {parameter: distribution}. A distribution is an optuna distribution (FloatDistribution,
      IntDistribution, CategoricalDistribution) or a short form: ('log', low, high) log-uniform,
      ('uniform', low, high[, step]), ('int', low, high[, step]), a list of choices (lists and dicts among
      the choices are stored as their JSON text); a dict for a dict parameter searches its keys, e.g.
      {'head': {'hidden': [[128], [256, 128]], 'dropout': ('uniform', 0.0, 0.3)}}.
    n_trials: the finished (complete or pruned) trials the study should hold: a study loaded from storage
      with k of them runs n_trials - k more, and workers sharing a study stop together at n_trials.
      timeout: stop starting trials after this many seconds.
    metric: a validation metric of the estimator (type(estimator).VALIDATION_METRICS); direction:
      'minimize' | 'maximize' (default: minimize loss/mse/rmse/mae, maximize the others). A trial's score is
      the metric of the model fit returns (its last evaluation, or the best when early stopping restored it).
    storage: None (in memory), 'sqlite:///study.db' (one file; an interrupted study resumes), a database
      URL such as 'postgresql+psycopg://user@host/db' or a journal file path (Optuna's JournalStorage; both
      for many processes or machines on one study), or an optuna storage object. study_name: the study in
      the storage (default 'lyricnn-study' with a storage); an existing one is loaded and continued, after
      checking that it searches the same space for the same metric and direction.
    seed: seeds the TPE sampler (Optuna's, with max(2, min(10, n_trials // 3)) random startup trials) and the
      splits: the same seed on a fresh study gives the same sequence of suggestions. sampler: an optuna
      sampler instead.
    pruner: 'median' (default), 'hyperband', 'successive_halving', None, or an optuna pruner. The metric is
      reported to the trial at every evaluation inside fit (each epoch, and every eval_steps steps when the
      estimator sets it) at the global step (after the earlier folds' steps with cv); a pruned trial stops
      between steps and its model is freed. A trial whose loss diverges (NaN) is pruned too.
    refit: fit the best configuration on all of X, y: result.best_estimator_.
    n_jobs: trials run at once in threads of this process (the engine releases the GIL; each fit uses the
      engine's threads, lyricnn.set_num_threads). callbacks: optuna study callbacks cb(study, frozen_trial).
    enqueue: a list of parameter dicts (same shape as space: nested dicts for head) to try first.
    plots_dir: save the optimisation history, parameter importances, parallel coordinates and slices there
      as PNGs (matplotlib). verbose: 0 silent, 1 a bar over trials and one line per trial, 2 also each fit's
      progress.
    The estimator's report_to (TensorBoard, MLflow, W&B) gives one run per trial, nested under a run of the study
      in MLflow and grouped by the study in W&B (see lyricnn.tracking).

    Ctrl-C stops the running trial between steps (it is marked failed), ends the study, and returns the
    result; the finished trials stay in the storage. A trial that raises an error (other than a diverging
    loss) is marked failed and the error stops the search: most such errors would repeat in every trial.
    """
    optuna = _optuna()
    D = optuna.distributions
    # ---- every argument is checked before any training
    for attr in ("get_params", "set_params", "fit"):
        if not callable(getattr(estimator, attr, None)):
            raise TypeError("estimator must be a lyricnn TextClassifier or TextRegressor (it has no %s()), got %s"
                            % (attr, type(estimator).__name__))
    reported = tuple(getattr(type(estimator), "VALIDATION_METRICS", ()))
    if not reported:
        raise TypeError("estimator %s does not say which validation metrics it reports (VALIDATION_METRICS); "
                        "pass a lyricnn TextClassifier or TextRegressor" % type(estimator).__name__)
    if not isinstance(metric, str) or metric not in reported:
        raise ValueError("metric=%r is not a validation metric that %s reports; choose one of %s"
                         % (metric, type(estimator).__name__, ", ".join(reported)))
    default_dir = "minimize" if metric in LOWER_IS_BETTER else "maximize"
    direction = default_dir if direction is None else direction
    if direction not in ("minimize", "maximize"):
        raise ValueError("direction must be 'minimize', 'maximize' or None (%s for %s), got %r"
                         % (default_dir, metric, direction))
    n_trials = check_int(n_trials, "n_trials", min=1)
    timeout = check_float(timeout, "timeout (seconds)", min=0, min_inclusive=False, allow_none=True)
    n_jobs = check_int(n_jobs, "n_jobs", min=1)
    seed = check_seed(seed)
    refit = check_bool(refit, "refit")
    if not isinstance(verbose, (bool, np.bool_)):
        verbose = check_int(verbose, "verbose (0, 1 or 2)", min=0)
    if cv is None:
        validation_fraction = check_float(validation_fraction, "validation_fraction", min=0, max=1,
                                          min_inclusive=False, max_inclusive=False)
    plots_dir = check_checkpoint_dir(plots_dir, "plots_dir")
    if study_name is not None and not isinstance(study_name, str):
        raise TypeError("study_name must be a str or None, got %s" % type(study_name).__name__)
    if sampler is not None and not isinstance(sampler, optuna.samplers.BaseSampler):
        raise TypeError("sampler must be None (a seeded TPE sampler) or an optuna sampler")
    pruner = _pruner(pruner, optuna)
    callbacks = list(callbacks or ())
    if not all(callable(c) for c in callbacks):
        raise TypeError("callbacks must be callables cb(study, frozen_trial) (optuna study callbacks)")

    base = estimator.get_params()
    params = _parse_space(space, base, D)
    texts, F_all = estimator._texts_and_features(X, features)  # checks X (and features) as fit does
    # a DataFrame stays one (fit reads text_column / feature_columns from it); features as a checked array
    Xd = X if hasattr(X, "iloc") and hasattr(X, "columns") else texts
    F = None if features is None else F_all
    n_features = 0 if F_all is None else F_all.shape[1]
    yv = estimator._targets(y)
    if yv.ndim == 0 or len(yv) != len(texts):
        raise ValueError("X has %d texts but y has %s targets; they must have the same length"
                         % (len(texts), "no" if yv.ndim == 0 else len(yv)))
    _clone(estimator)._encode_targets(yv, fitting=True)  # the labels (or targets) are usable
    _preflight(estimator, params, base, n_features)
    splits = _splits(estimator, yv, cv, validation_fraction, seed)
    queue = []
    for i, e in enumerate(enqueue or ()):
        if not isinstance(e, dict):
            raise TypeError("enqueue[%d] must be a dict of parameter values" % i)
        flat = {}
        for k, v in e.items():
            for kk, vv in (v.items() if isinstance(v, dict) else [(None, v)]):
                flat[k if kk is None else k + "." + kk] = vv
        names = {p.name: p for p in params}
        for k, v in flat.items():
            if k not in names:
                raise ValueError("enqueue[%d] has %r, which the space does not search (it searches %s)"
                                 % (i, k, ", ".join(names)))
            if names[k].decode:
                v = next((key for key, c in names[k].decode.items() if c == v), v)
            flat[k] = v
        queue.append(flat)

    # ---- the study
    storage_obj = _storage(storage, optuna)
    if study_name is None and storage_obj is not None:
        study_name = "lyricnn-study"
    if sampler is None:
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, n_trials // 3)))
    meta = {"estimator": type(estimator).__name__, "metric": metric, "direction": direction,
            "space": {p.name: D.distribution_to_json(p.dist) for p in params}}
    old_verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # tune prints its own line per trial
    progress = tracker = None
    interrupted = False
    try:
        study = optuna.create_study(storage=storage_obj, sampler=sampler, pruner=pruner, study_name=study_name,
                                    direction=direction, load_if_exists=True)
        _check_study(study, meta, direction)
        S = optuna.trial.TrialState
        if storage_obj is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)  # running trials of killed workers (RDB heartbeat)
        have = study.get_trials(deepcopy=False, states=(S.COMPLETE, S.PRUNED, S.RUNNING))
        finished = sum(t.state != S.RUNNING for t in have)
        remaining = n_trials - len(have)
        if verbose and finished:
            print("study %r: %d finished trials in the storage%s; %s" % (
                study.study_name, finished, ", %d running on other workers" % (len(have) - finished)
                if len(have) > finished else "", "running %d more" % remaining if remaining > 0 else
                "nothing left to run (n_trials=%d)" % n_trials))
        for flat in queue:
            study.enqueue_trial(flat, skip_if_exists=True)
        if remaining > 0:
            objective = _Objective(estimator, params, base, metric, (Xd, yv, F), splits, n_trials,
                                   1 if verbose >= 2 else 0, optuna)
            progress = _Progress(n_trials, remaining, metric, verbose, optuna)
            # report_to on the estimator: one run per trial (lyricnn.tracking.StudyTracker)
            tracker = _tracking.StudyTracker(getattr(estimator, "report_to", None), study, metric, verbose)
            try:
                study.optimize(tracker.wrap(objective), n_trials=remaining, timeout=timeout, n_jobs=n_jobs,
                               catch=(_Interrupted, _Surplus), callbacks=[progress] + tracker.callbacks() + callbacks,
                               gc_after_trial=True)
            except KeyboardInterrupt:
                interrupted = True
            interrupted = interrupted or objective.interrupted
    finally:
        if progress is not None:
            progress.close()
        if tracker is not None:
            tracker.close(interrupted)
        optuna.logging.set_verbosity(old_verbosity)
    result = TuneResult(study, params, base, metric, direction, interrupted=interrupted)
    if verbose:
        if interrupted:
            print("interrupted: the study stopped after %d finished trials; %s" % (
                sum(t.state in (S.COMPLETE, S.PRUNED) for t in study.trials),
                "run tune again with the same storage and study_name to continue" if storage_obj is not None
                else "result.study holds them (pass storage='sqlite:///study.db' to resume after a stop)"))
        print(repr(result))
    if plots_dir is not None:
        result.save_plots(plots_dir)
    if refit:
        if result.best_params_ is None:
            warnings.warn("lyricnn.tune: refit=True but no trial completed; best_estimator_ is None",
                          RuntimeWarning, stacklevel=2)
        else:
            if verbose:
                print("refitting the best configuration (trial %d) on all %d rows" % (result.best_trial_.number,
                                                                                     len(yv)))
            best = _clone(estimator, result.best_params_)
            result.best_estimator_ = best.fit(Xd, yv, features=F)
    return result


def _check_study(study, meta, direction):
    """A study loaded from storage must search the same space, for the same metric and direction."""
    old = study.user_attrs.get(_META)
    if study.direction.name.lower() != direction:
        raise ValueError("study %r in the storage %ss, but direction=%r; use another study_name"
                         % (study.study_name, study.direction.name.lower()[:-1], direction))
    if old is None:
        study.set_user_attr(_META, meta)
        return
    diff = sorted(k for k in meta if old.get(k) != meta[k])
    if diff:
        raise ValueError("study %r in the storage was created for another search (%s differ: stored %s, now %s); "
                         "use another study_name or the same settings"
                         % (study.study_name, ", ".join(diff), {k: old.get(k) for k in diff},
                            {k: meta[k] for k in diff}))
