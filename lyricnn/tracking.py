"""Experiment tracking: report_to= of the estimators (and --report-to of the CLI) logs a fit to TensorBoard,
MLflow and/or Weights & Biases, each through the tool's own library (optional dependencies, imported when a
fit reports to them):

    clf = lyricnn.TextClassifier(model="all-MiniLM-L6-v2", eval_steps=20, report_to=["tensorboard", "mlflow"])
    clf.fit(X, y, eval_set=(Xv, yv))
    clf.tracking_runs_     # where each tool logged: {"tensorboard": {"log_dir": ...}, "mlflow": {"run_id": ...}}

report_to: None (the default), "tensorboard", "mlflow", "wandb", "all" (those installed), a list of them (or
one comma-separated str), or a dict {tool: options} with the options below.

What is logged, all against the global step as in history_:
  - the estimator's parameters, once (nested dicts such as head= flattened as "head.pooling");
  - per step: train/loss, train/lr, train/epoch;
  - per evaluation: every validation metric, as val/<name> (history_'s val_<name>);
  - at the end: final/n_steps, final/best_<monitor>, final/best_step and final/val_<name> (the last
    evaluation); the curves of lyricnn.plotting.plot_history (an image in TensorBoard, plots/curves.png in
    MLflow, the "curves" image in W&B) and, with log_model (MLflow and W&B), the model directory that save()
    writes (MLflow artifacts under model/, a W&B artifact of type "model").
A fit with checkpoint_dir records its runs in checkpoint_dir/lyricnn_tracking.json, and fit(..., resume=True)
continues them: the same TensorBoard folder (purging the steps after the checkpoint), the same MLflow run,
the same W&B run id (resume="allow"). A fit inside an active MLflow run (mlflow.start_run()) or W&B run
(wandb.init()) logs into that run and leaves it open.

Options per tool (the dict form):
  tensorboard: log_dir (default runs/<run_name>, as torch's SummaryWriter), run_name.
    Written with TensorBoard's own event-file writer (pip install tensorboard; it needs neither TensorFlow
    nor torch, unlike tensorboardX's writer, which imports torch when it is installed).
  mlflow: tracking_uri (default: MLflow's own: MLFLOW_TRACKING_URI or mlflow.set_tracking_uri when set, else
    MLflow's default store in the working directory: ./mlruns before MLflow 3.7, ./mlflow.db from 3.7 on;
    'file:./mlruns' selects the file store, which MLflow 3.7+ allows with MLFLOW_ALLOW_FILE_STORE=true),
    experiment (default MLFLOW_EXPERIMENT_NAME or "lyricnn"), run_name, tags, log_model (default True).
    pip install mlflow-skinny (or mlflow).
  wandb: project (default WANDB_PROJECT or "lyricnn"), entity, dir (default: wandb's, ./wandb), run_name,
    group, tags, mode ("online", "offline", "disabled"; default: wandb's, WANDB_MODE), log_model (default
    True). pip install wandb; WANDB_MODE=offline works without an account (wandb sync uploads later).

lyricnn.tune with an estimator that reports: one run per trial. MLflow: the trials are nested under a run of
the study (optuna-integration's MLflowCallback with track_in_mlflow: the trial's parameters, value and state,
COMPLETE or PRUNED, as tags; pip install optuna-integration), and each trial's run holds its fits' curves. W&B: one run per trial, grouped by
the study (group=<study name>), with the trial's parameters in its config and its value and state in the
summary (optuna-integration's WeightsAndBiasesCallback logs at step=trial.number, which cannot share a run
with curves logged at the global step, so lyricnn opens the trial runs itself). TensorBoard: one folder per
trial, <log_dir>/<study name>/trial-<n>.
"""
import contextlib
import importlib.util
import json
import os
import struct
import sys
import tempfile
import threading
import time
import warnings

__all__ = ["TOOLS", "normalize_report_to", "check_report_to", "Reporter", "StudyTracker", "context", "RUNS_FILE"]

#: the tools report_to knows, with the options each takes
TOOLS = {
    "tensorboard": ("log_dir", "run_name"),
    "mlflow": ("tracking_uri", "experiment", "run_name", "tags", "log_model"),
    "wandb": ("project", "entity", "dir", "run_name", "group", "tags", "mode", "log_model"),
}
#: where a fit with checkpoint_dir records its runs (fit(..., resume=True) continues them)
RUNS_FILE = "lyricnn_tracking.json"
_INSTALL = {
    "tensorboard": "report_to='tensorboard' needs TensorBoard: pip install tensorboard",
    "mlflow": "report_to='mlflow' needs MLflow: pip install mlflow-skinny (or mlflow)",
    "wandb": "report_to='wandb' needs Weights & Biases: pip install wandb (WANDB_MODE=offline works without an "
             "account)",
}
_MAX_BUFFER = 200   # MLflow metrics sent per log_batch


def _installed(name):
    if name in sys.modules:   # imported (some set no __spec__), or None: blocked
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _available(tool):
    if tool == "tensorboard":
        return _installed("tensorboard")
    return _installed(tool)


def normalize_report_to(report_to):
    """{tool: options} from report_to (None, "none", a tool, "all", "a,b", a list, or a dict); ValueError /
    TypeError naming what is wrong."""
    if report_to is None or report_to is False or report_to == "none" or report_to == []:
        return {}
    if isinstance(report_to, str):
        items = [s.strip() for s in report_to.split(",") if s.strip()]
        if items == ["all"]:
            return {t: {} for t in TOOLS if _available(t)}
        report_to = items
    if isinstance(report_to, dict):
        out = {}
        for tool, opts in report_to.items():
            if tool not in TOOLS:
                raise ValueError("report_to: unknown tool %r; choose from %s" % (tool, ", ".join(TOOLS)))
            if opts is None or opts is True:
                opts = {}
            if not isinstance(opts, dict):
                raise TypeError("report_to[%r] must be a dict of options (%s), got %s"
                                % (tool, ", ".join(TOOLS[tool]), type(opts).__name__))
            bad = sorted(set(opts) - set(TOOLS[tool]))
            if bad:
                raise ValueError("report_to[%r]: unknown option(s) %s; %s takes %s"
                                 % (tool, bad, tool, ", ".join(TOOLS[tool])))
            out[tool] = dict(opts)
        return out
    if isinstance(report_to, (list, tuple)):
        out = {}
        for t in report_to:
            if not isinstance(t, str) or t not in TOOLS:
                raise ValueError("report_to: unknown tool %r; choose from %s, 'all', a list of them or None"
                                 % (t, ", ".join(TOOLS)))
            out[t] = {}
        return out
    raise TypeError("report_to must be None, a tool name (%s), 'all', a list of them or a dict {tool: options}, "
                    "got %s" % (", ".join(TOOLS), type(report_to).__name__))


def check_report_to(report_to):
    """normalize_report_to, then an ImportError naming the package for a tool that is not installed."""
    tools = normalize_report_to(report_to)
    for t in tools:
        if not _available(t):
            raise ImportError(_INSTALL[t])
    return tools


# ------------------------------------------------------------------------------------ context (lyricnn.tune)

_local = threading.local()


@contextlib.contextmanager
def context(**kw):
    """Settings for the fits run in this thread (lyricnn.tune: the trial's run, names and step offset)."""
    old = getattr(_local, "ctx", {})
    _local.ctx = dict(old, **kw)
    try:
        yield _local.ctx
    finally:
        _local.ctx = old


def _ctx():
    return getattr(_local, "ctx", {})


# ------------------------------------------------------------------------------------ helpers

def _flat_params(params, prefix=""):
    """{name: JSON-able value}, nested dicts flattened with dots (head.pooling)."""
    out = {}
    for k, v in params.items():
        if isinstance(v, dict) and v:
            out.update(_flat_params(v, prefix + str(k) + "."))
        else:
            out[prefix + str(k)] = v
    return out


def _param_text(v):
    return v if isinstance(v, str) else json.dumps(v, default=str)


def _resume_step(checkpoint_dir):
    """The global step of checkpoint_dir/last.safetensors (None when there is none)."""
    from .checkpoint import safetensors_metadata
    from .training import LAST

    path = os.path.join(checkpoint_dir, LAST)
    if not os.path.isfile(path):
        return None
    try:
        return int(json.loads(safetensors_metadata(path)["lyricnn"])["step"])
    except (KeyError, ValueError, TypeError, OSError):
        return None


def _curves(history):
    """(matplotlib Figure of plot_history, or None when matplotlib/pandas are missing or nothing to draw)."""
    try:
        import matplotlib  # noqa: F401

        from .plotting import plot_history

        fig = plot_history(history, title="training curves")
    except (ImportError, ValueError):
        return None
    return fig


def _close(fig):
    try:
        import matplotlib.pyplot as plt

        plt.close(fig)
    except ImportError:  # pragma: no cover
        pass


# ------------------------------------------------------------------------------------ backends

class _EventWriter:
    """TensorBoard's own event-file writer (tensorboard.summary.writer; numpy and protobuf only, no TensorFlow
    or torch): scalars, text and PNG images, as TensorBoard's EventAccumulator reads them."""

    def __init__(self, log_dir, purge_step=None, flush_secs=10):
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._ev, self._sm = event_pb2, summary_pb2
        self._w = EventFileWriter(log_dir, flush_secs=flush_secs)
        if purge_step is not None:   # TensorBoard drops the events at steps >= purge_step written before this
            self._w.add_event(event_pb2.Event(step=int(purge_step), wall_time=time.time(),
                                              session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))

    def _add(self, step, value):
        self._w.add_event(self._ev.Event(wall_time=time.time(), step=int(step),
                                         summary=self._sm.Summary(value=[value])))

    def add_scalar(self, tag, value, step):
        self._add(step, self._sm.Summary.Value(tag=tag, simple_value=float(value)))

    def add_text(self, tag, text, step):
        from tensorboard.plugins.text.summary_v2 import text_pb

        self._add(step, text_pb(tag, text).value[0])

    def add_png(self, tag, png_bytes, height, width, step):
        img = self._sm.Summary.Image(height=int(height), width=int(width), colorspace=4,
                                     encoded_image_string=png_bytes)
        self._add(step, self._sm.Summary.Value(tag=tag, image=img))

    def close(self):
        self._w.close()


class _TensorBoard:
    name = "tensorboard"

    def __init__(self, opts, run_name, params, resume, resume_step, ctx):
        self.log_dir = (resume or {}).get("log_dir") or ctx.get("tb_log_dir") or opts.get("log_dir") or \
            os.path.join("runs", run_name)
        purge = resume_step + 1 if resume and resume_step is not None else None
        self.writer = _EventWriter(self.log_dir, purge_step=purge)
        if not resume:
            rows = "\n".join("| %s | %s |" % (k, _param_text(v).replace("|", "\\|")) for k, v in params.items())
            self.writer.add_text("params", "| parameter | value |\n|---|---|\n" + rows, 0)

    def state(self):
        return {"log_dir": os.path.abspath(self.log_dir)}

    def where(self):
        return "TensorBoard: %s (tensorboard --logdir %s)" % (self.log_dir, os.path.dirname(self.log_dir) or ".")

    def log(self, step, metrics):
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)

    def final(self, step, metrics):
        self.log(step, metrics)

    def artifacts(self, step, fig, png, model_dir):
        if png is not None:
            with open(png, "rb") as f:
                data = f.read()
            width, height = struct.unpack(">II", data[16:24])   # the PNG's IHDR chunk
            self.writer.add_png("curves", data, height, width, step)

    def close(self, status):
        self.writer.close()


class _MLflow:
    name = "mlflow"

    def __init__(self, opts, run_name, params, resume, resume_step, ctx):
        import mlflow
        from mlflow.entities import Param

        self._mlflow = mlflow
        uri = opts.get("tracking_uri")
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        self.uri = uri or mlflow.get_tracking_uri()
        self.buffer = []
        self.owned = True
        active = mlflow.active_run() if not resume else None
        if resume and resume.get("run_id"):
            self.run_id = resume["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
        elif active is not None and (uri is None or uri == mlflow.get_tracking_uri()):
            self.run_id, self.owned = active.info.run_id, False   # the user's or lyricnn.tune's trial run
        else:
            name = opts.get("experiment") or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "lyricnn"
            exp = self.client.get_experiment_by_name(name)
            exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(name)
            tags = {str(k): str(v) for k, v in (opts.get("tags") or {}).items()}
            self.run_id = self.client.create_run(exp_id, run_name=opts.get("run_name") or run_name,
                                                 tags=tags).info.run_id
        if not resume:
            skip = set(ctx.get("skip_params", ()))
            items = [Param(k, _param_text(v)[:6000]) for k, v in params.items() if k not in skip]
            for i in range(0, len(items), 100):
                self.client.log_batch(self.run_id, params=items[i:i + 100])

    def state(self):
        return {"run_id": self.run_id, "tracking_uri": self.uri,
                "experiment_id": self.client.get_run(self.run_id).info.experiment_id}

    def where(self):
        return "MLflow: run %s at %s (mlflow ui)" % (self.run_id, self.uri)

    def log(self, step, metrics):
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self.buffer.extend(Metric(k, float(v), ts, int(step)) for k, v in metrics.items())
        if len(self.buffer) >= _MAX_BUFFER:
            self.flush()

    def flush(self):
        while self.buffer:
            batch, self.buffer = self.buffer[:_MAX_BUFFER], self.buffer[_MAX_BUFFER:]
            self.client.log_batch(self.run_id, metrics=batch)

    def final(self, step, metrics):
        self.log(step, metrics)
        self.flush()

    def artifacts(self, step, fig, png, model_dir):
        if png is not None:
            self.client.log_artifact(self.run_id, png, "plots")
        if model_dir is not None:
            self.client.log_artifacts(self.run_id, model_dir, "model")

    def close(self, status):
        self.flush()
        if self.owned:
            self.client.set_terminated(self.run_id, status=status)


class _WandB:
    name = "wandb"

    def __init__(self, opts, run_name, params, resume, resume_step, ctx):
        import wandb

        self._wandb = wandb
        run = ctx.get("wandb_run")
        if run is None and not resume:
            run = wandb.run
        self.owned = run is None
        if run is None:
            kw = dict(project=opts.get("project") or os.environ.get("WANDB_PROJECT") or "lyricnn",
                      name=opts.get("run_name") or run_name, config=params, reinit="create_new")
            for k in ("entity", "dir", "group", "tags", "mode"):
                if opts.get(k) is not None:
                    kw[k] = opts[k]
            if kw.get("dir"):
                os.makedirs(kw["dir"], exist_ok=True)
            if resume and resume.get("id"):
                kw.update(id=resume["id"], resume="allow")
            run = wandb.init(**kw)
        elif not resume:
            skip = set(ctx.get("skip_params", ()))
            run.config.update({k: v for k, v in params.items() if k not in skip}, allow_val_change=True)
        self.run = run

    def state(self):
        return {"id": self.run.id, "project": self.run.project,
                "run_dir": os.path.dirname(os.path.abspath(self.run.dir)),  # holds run-<id>.wandb and files/
                "offline": bool(getattr(self.run.settings, "_offline", False))}

    def where(self):
        off = getattr(self.run.settings, "_offline", False)
        return "W&B: %srun %s (%s)%s" % ("offline " if off else "", self.run.id, self.run.dir,
                                         "; wandb sync uploads it" if off else "")

    def log(self, step, metrics):
        self.run.log(dict(metrics), step=int(step))

    def final(self, step, metrics):
        self.run.summary.update(dict(metrics))

    def artifacts(self, step, fig, png, model_dir):
        if png is not None:
            self.run.log({"curves": self._wandb.Image(png)}, step=int(step))
        if model_dir is not None:
            art = self._wandb.Artifact("model-%s" % self.run.id, type="model")
            art.add_dir(model_dir)
            self.run.log_artifact(art)

    def close(self, status):
        if self.owned:
            self.run.finish(exit_code=0 if status == "FINISHED" else 1)


_BACKENDS = {"tensorboard": _TensorBoard, "mlflow": _MLflow, "wandb": _WandB}


# ------------------------------------------------------------------------------------ the fit's reporter

class Reporter:
    """A fit callback that logs to the tools of report_to: per step (train/loss, train/lr, train/epoch) and
    per evaluation (val/<metric>), at the global step; finish() logs the final metrics and artifacts and ends
    the runs it opened. Built by the estimators' fit; use report_to= rather than this class."""

    def __init__(self, est, tools, resume=False):
        ctx = _ctx()
        self.est = est
        self.offset = int(ctx.get("step_offset", 0))
        self.log_model = ctx.get("log_model")
        ckpt = getattr(est, "checkpoint_dir", None)
        self.runs_file = os.path.join(ckpt, RUNS_FILE) if ckpt else None
        previous = {}
        if resume and self.runs_file and os.path.isfile(self.runs_file):
            try:
                with open(self.runs_file, encoding="utf-8") as f:
                    previous = json.load(f)
            except (OSError, ValueError):
                previous = {}
            if not isinstance(previous, dict):
                previous = {}
        resume_step = _resume_step(ckpt) if resume and ckpt else None
        from .estimators import _jsonable

        params = _flat_params(_jsonable({k: v for k, v in est.get_params().items() if k != "report_to"}))
        run_name = ctx.get("run_name") or "%s-%s" % (type(est).__name__, time.strftime("%Y%m%d-%H%M%S"))
        self.tools = tools
        self.backends = []
        try:
            for tool, opts in tools.items():
                prev = previous.get(tool) if isinstance(previous.get(tool), dict) else None
                self.backends.append(_BACKENDS[tool](opts, run_name, params, prev, resume_step, ctx))
        except BaseException:
            self.finish(status="FAILED")
            raise
        est.tracking_runs_ = {b.name: b.state() for b in self.backends}
        if self.runs_file:
            os.makedirs(os.path.dirname(self.runs_file), exist_ok=True)
            with open(self.runs_file, "w", encoding="utf-8") as f:
                json.dump(est.tracking_runs_, f, indent=1)
        if getattr(est, "verbose", 0):
            for b in self.backends:
                print("logging to " + b.where())

    def _log(self, step, metrics):
        for b in self.backends:
            b.log(self.offset + step, metrics)

    def __call__(self, est, info):
        self._log(info["step"], {"train/loss": info["loss"], "train/lr": info["lr"], "train/epoch": info["epoch"]})

    def on_evaluate(self, est, info):
        self._log(info["step"], {"val/" + k: float(v) for k, v in info["metrics"].items()})

    def finish(self, status="FINISHED"):
        """Final metrics and artifacts (when the fit completed), then close the runs (MLflow status FINISHED,
        KILLED for an interrupted fit, FAILED for an error)."""
        est = self.est
        try:
            if status == "FINISHED" and self.backends:
                self._final(est)
        finally:
            if getattr(est, "interrupted_", False) and status == "FINISHED":
                status = "KILLED"
            for b in self.backends:
                b.close(status)

    def _final(self, est):
        h = getattr(est, "history_", None)
        step = self.offset + int(getattr(est, "n_steps_", 0))
        final = {"final/n_steps": float(getattr(est, "n_steps_", 0))}
        if getattr(est, "best_score_", None) is not None:
            final["final/best_%s" % est.monitor] = float(est.best_score_)
            final["final/best_step"] = float(est.best_step_)
        if h is not None and hasattr(h, "columns"):
            vcols = [c for c in h.columns if c.startswith("val_")]
            ev = h[h[vcols[0]].notna()] if vcols else h.iloc[:0]
            if len(ev):
                final.update({"final/" + c: float(ev.iloc[-1][c]) for c in vcols})
        for b in self.backends:
            b.final(step, final)
        fig = _curves(h) if h is not None and len(h) else None
        want_model = any(b.name != "tensorboard" and self.tools[b.name].get("log_model", True) is not False
                         for b in self.backends) and self.log_model is not False
        with tempfile.TemporaryDirectory(prefix="lyricnn-report-") as d:
            png = None
            if fig is not None:
                png = os.path.join(d, "curves.png")
                fig.savefig(png, dpi=110)
            model_dir = None
            if want_model:
                model_dir = os.path.join(d, "model")
                est.save(model_dir)
            try:
                for b in self.backends:
                    keep = b.name != "tensorboard" and self.tools[b.name].get("log_model", True) is not False
                    b.artifacts(step, fig, png, model_dir if keep else None)
            finally:
                if fig is not None:
                    _close(fig)


def start(est, resume=False):
    """The Reporter of est.report_to for a fit (None when it reports nowhere)."""
    tools = check_report_to(getattr(est, "report_to", None))
    return Reporter(est, tools, resume=resume) if tools else None


# ------------------------------------------------------------------------------------ lyricnn.tune

class StudyTracker:
    """What lyricnn.tune adds when its estimator reports: a run per trial (see the module docstring).
    wrap(objective) returns the objective to optimise; callbacks() the study callbacks; close() ends the
    study's own run."""

    def __init__(self, report_to, study, metric, verbose=0):
        self.tools = check_report_to(report_to)
        self.study, self.metric = study, metric
        self.parent = None
        self.mlflow_cb = None
        if "mlflow" in self.tools:
            if not _installed("optuna_integration"):
                raise ImportError("lyricnn.tune with report_to='mlflow' logs the trials with optuna-integration's "
                                  "MLflowCallback: pip install optuna-integration")
            import mlflow
            from optuna_integration.mlflow import MLflowCallback

            opts = self.tools["mlflow"]
            if opts.get("tracking_uri"):
                mlflow.set_tracking_uri(opts["tracking_uri"])
            exp = mlflow.set_experiment(opts.get("experiment") or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "lyricnn")
            self.parent = mlflow.start_run(run_name=study.study_name, tags={"optuna.study": study.study_name})
            with warnings.catch_warnings():
                # optuna-integration 4.9 deprecated MLflowCallback (removal planned for 6.0); requirements pin <6
                warnings.simplefilter("ignore", FutureWarning)
                self.mlflow_cb = MLflowCallback(metric_name=metric, create_experiment=False, tag_trial_user_attrs=True,
                                                mlflow_kwargs={"nested": True, "experiment_id": exp.experiment_id})
            if verbose:
                print("logging the study to MLflow: run %s (trials nested under it) at %s"
                      % (self.parent.info.run_id, mlflow.get_tracking_uri()))
        if "tensorboard" in self.tools:
            base = self.tools["tensorboard"].get("log_dir") or "runs"
            self.tb_dir = os.path.join(base, study.study_name)
            if verbose:
                print("logging the trials to TensorBoard: %s/trial-N (tensorboard --logdir %s)" % (self.tb_dir, base))

    def callbacks(self):
        return [self.mlflow_cb] if self.mlflow_cb is not None else []

    def wrap(self, objective):
        if not self.tools:
            return objective
        tracker = self

        def trial_objective(trial):
            ctx = {"run_name": "trial-%d" % trial.number, "log_model": False, "skip_params": ()}
            if "tensorboard" in tracker.tools:
                ctx["tb_log_dir"] = os.path.join(tracker.tb_dir, "trial-%d" % trial.number)
            with contextlib.ExitStack() as stack:
                if "mlflow" in tracker.tools:
                    import mlflow

                    run = mlflow.active_run()
                    if run is not None and tracker.parent is not None:  # nested also in n_jobs' threads
                        mlflow.set_tag("mlflow.parentRunId", tracker.parent.info.run_id)
                if "wandb" in tracker.tools:
                    ctx["wandb_run"] = stack.enter_context(tracker._wandb_trial(trial))
                stack.enter_context(context(**ctx))
                return objective(trial)

        if self.mlflow_cb is not None:
            import optuna

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                trial_objective = self.mlflow_cb.track_in_mlflow()(trial_objective)
        return trial_objective

    @contextlib.contextmanager
    def _wandb_trial(self, trial):
        import optuna
        import wandb

        opts = self.tools["wandb"]
        kw = dict(project=opts.get("project") or os.environ.get("WANDB_PROJECT") or "lyricnn",
                  name="%s-trial-%d" % (self.study.study_name, trial.number), group=self.study.study_name,
                  job_type="optuna-trial", reinit="create_new",
                  config={"optuna.trial": trial.number, "optuna.study": self.study.study_name})
        for k in ("entity", "dir", "tags", "mode"):
            if opts.get(k) is not None:
                kw[k] = opts[k]
        if kw.get("dir"):
            os.makedirs(kw["dir"], exist_ok=True)
        run = wandb.init(**kw)
        state = "FAIL"
        try:
            yield run
            state = "COMPLETE"
        except optuna.TrialPruned:
            state = "PRUNED"
            raise
        finally:
            run.config.update(dict(trial.params), allow_val_change=True)
            summary = {"optuna/state": state}
            for k in ("pruned_at_step", "n_steps"):
                if k in trial.user_attrs:
                    summary["optuna/" + k] = trial.user_attrs[k]
            run.summary.update(summary)
            run.finish(exit_code=0 if state != "FAIL" else 1)

    def close(self, interrupted=False):
        if self.parent is None:
            return
        import mlflow

        try:
            S = self.study.trials[0].state.__class__ if self.study.trials else None
            done = [t for t in self.study.trials if S is not None and t.state == S.COMPLETE]
            client = mlflow.MlflowClient()
            rid = self.parent.info.run_id
            client.log_metric(rid, "study/n_trials", float(len(self.study.trials)))
            if done:
                best = self.study.best_trial
                client.log_metric(rid, "study/best_" + self.metric, float(best.value))
                client.set_tag(rid, "optuna.best_trial", str(best.number))
                client.set_tag(rid, "optuna.best_params", json.dumps(best.params, default=str)[:5000])
        finally:
            if mlflow.active_run() is not None and mlflow.active_run().info.run_id == self.parent.info.run_id:
                mlflow.end_run(status="KILLED" if interrupted else "FINISHED")
            self.parent = None
