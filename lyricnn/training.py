"""The training loop behind TextClassifier / TextRegressor: batches, schedule, history, evaluation,
early stopping, Ctrl-C, checkpoints and bit-identical resume.

Determinism: the batch order of epoch e is a pure function of (seed, e) (lyricnn.data.batch_order with
numpy's default_rng([seed, e])), and the engine keys dropout masks by (seed, global step). A checkpoint
holds the weights, optimizer state (with the step counter), schedule state, the position in the epoch and
the history, so `fit(..., resume=True)` continues bit-identically on the CPU for a fixed thread count.

Checkpoint files (in checkpoint_dir), each one safetensors file written atomically (temporary file,
fsync, rename; an interrupted write leaves the previous file intact):
  last.safetensors  every epoch, every `checkpoint_steps` steps, and when training is interrupted;
                    tensors "model.<name>" and "optim.<key>", JSON metadata under "lyricnn".
  best.safetensors  the weights at the best validation score so far (when there is a validation set).
"""
import hashlib
import json
import math
import os
import signal
import sys
import threading
import time

import numpy as np

from . import checkpoint as _ckpt
from ._validate import check_bool, check_float, check_int, check_seed
from .data import batch_order, pad_batch
from .schedules import SCHEDULES, ReduceLROnPlateau, get_schedule

__all__ = ["Dataset", "TrainLoop", "read_checkpoint", "check_loop_params", "LAST", "BEST", "LOWER_IS_BETTER"]

LAST = "last.safetensors"
BEST = "best.safetensors"
FORMAT = "lyricnn-training-checkpoint-v1"
LOWER_IS_BETTER = ("loss", "mse", "rmse", "mae")


class Dataset:
    """Tokenized rows: ids (list of 1-D int arrays, unpadded), targets (encoded), features or None."""

    def __init__(self, ids, targets=None, features=None):
        self.ids = ids
        self.targets = targets
        self.features = features
        self.lengths = np.fromiter((len(r) for r in ids), dtype=np.int64, count=len(ids))

    def __len__(self):
        return len(self.ids)

    def fingerprint(self):
        h = hashlib.sha256()
        h.update(self.lengths.tobytes())
        for r in self.ids:
            h.update(np.asarray(r, dtype=np.int64).tobytes())
        if self.targets is not None:
            h.update(np.ascontiguousarray(self.targets).tobytes())
        if self.features is not None:
            h.update(np.ascontiguousarray(self.features).tobytes())
        return h.hexdigest()[:32]


def pad_rows(ids, idx, pad_id, pad_to=None):
    """(input_ids, attention_mask) for rows idx, padded to the longest member (or to pad_to)."""
    seqs = [ids[i] for i in idx]
    a, m = pad_batch(seqs, pad_id=pad_id)
    if pad_to is not None and a.shape[1] < pad_to:
        a2 = np.full((a.shape[0], pad_to), pad_id, dtype=a.dtype)
        m2 = np.zeros((a.shape[0], pad_to), dtype=m.dtype)
        a2[:, :a.shape[1]] = a
        m2[:, :m.shape[1]] = m
        a, m = a2, m2
    return a, m


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    return repr(o)


def read_checkpoint(path):
    """(tensors, meta): tensors {"model": {...}, "optim": {...}}, meta the JSON metadata dict."""
    raw = _ckpt.read_safetensors(path)
    md = _ckpt.safetensors_metadata(path) or {}
    if "lyricnn" not in md:
        raise _ckpt.CheckpointError("%s is not a lyricnn training checkpoint (no 'lyricnn' metadata)" % path)
    meta = json.loads(md["lyricnn"])
    if meta.get("format") != FORMAT:
        raise _ckpt.CheckpointError("%s has format %r, expected %r" % (path, meta.get("format"), FORMAT))
    out = {"model": {}, "optim": {}}
    for k, v in raw.items():
        group, _, name = k.partition(".")
        if group in out:
            out[group][name] = v
    return out, meta


def check_checkpoint_dir(d, name="checkpoint_dir"):
    """None (no checkpoints) or a path that is a directory or can be created as one: an existing file there,
    or a file in the way of one of its parents, is refused now rather than at the first save an epoch later."""
    if d is None or d == "":
        return None
    if not isinstance(d, (str, os.PathLike)):
        raise TypeError("%s must be a folder path (str or os.PathLike) or None, got %s" % (name, type(d).__name__))
    d = os.fspath(d)
    if isinstance(d, bytes):
        raise TypeError("%s must be a str path, not bytes" % name)
    if os.path.exists(d):
        if not os.path.isdir(d):
            raise ValueError("%s=%r is an existing file, not a folder; pass a folder path (it is created if "
                             "missing) or remove the file" % (name, d))
        if not os.access(d, os.W_OK | os.X_OK):
            raise ValueError("%s=%r is a folder this process cannot write to; pass a writable folder" % (name, d))
        return d
    parent = os.path.dirname(os.path.abspath(d))
    while not os.path.exists(parent):
        up = os.path.dirname(parent)
        if up == parent:
            break
        parent = up
    if not os.path.isdir(parent):
        raise ValueError("%s=%r cannot be created: %s is a file, not a folder; pass a folder path" % (name, d, parent))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError("%s=%r cannot be created: %s is not writable; pass a folder path you can write to"
                         % (name, d, parent))
    return d


def check_loop_params(est):
    """Check the hyper-parameters the training loop reads from `est` (types and ranges, see
    lyricnn._validate) and return them normalised as a dict. Called at the start of the estimators' fit(),
    before any work, and again by TrainLoop for direct users.

    lr must be > 0 here (a fit with lr=0 trains nothing); the optimizer itself (configure_optimizer, set_lr)
    accepts 0 because schedules decay to it. warmup_steps / warmup_ratio / eval_steps / checkpoint_steps may
    be None or 0 (off)."""
    p = {}
    p["batch_size"] = check_int(est.batch_size, "batch_size", min=1)
    p["epochs"] = check_int(est.epochs, "epochs", min=1)
    p["lr"] = check_float(est.lr, "lr", min=0, min_inclusive=False)
    p["warmup_steps"] = check_int(est.warmup_steps, "warmup_steps", min=0, allow_none=True) or 0
    p["warmup_ratio"] = check_float(est.warmup_ratio, "warmup_ratio", min=0, max=1, max_inclusive=False,
                                    allow_none=True) or 0.0
    if not isinstance(est.schedule, str) or est.schedule not in tuple(SCHEDULES) + ("plateau",):
        raise ValueError("unknown schedule %r; choose one of %s" % (est.schedule, sorted(SCHEDULES) + ["plateau"]))
    p["plateau_factor"] = check_float(est.plateau_factor, "plateau_factor", min=0, max=1, max_inclusive=False)
    p["plateau_patience"] = check_int(est.plateau_patience, "plateau_patience", min=0)
    if not isinstance(est.monitor, str):
        raise TypeError("monitor must be the name of a validation metric (a str), got %r" % (est.monitor,))
    p["early_stopping"] = check_bool(est.early_stopping, "early_stopping")
    p["patience"] = check_int(est.patience, "patience", min=0)
    p["restore_best_weights"] = check_bool(est.restore_best_weights, "restore_best_weights")
    p["bucket_by_length"] = check_bool(est.bucket_by_length, "bucket_by_length")
    p["eval_steps"] = check_int(est.eval_steps, "eval_steps", min=0, allow_none=True) or 0
    p["checkpoint_steps"] = check_int(est.checkpoint_steps, "checkpoint_steps", min=0, allow_none=True) or 0
    p["checkpoint_dir"] = check_checkpoint_dir(est.checkpoint_dir)
    p["seed"] = check_seed(est.seed)
    v = est.verbose
    if not isinstance(v, (bool, np.bool_)):
        v = check_int(v, "verbose (0, 1 or a bool)", min=0)
    p["verbose"] = v
    return p


class _SigintGuard:
    """While active, the first Ctrl-C only sets a flag (the loop stops after the current step); a second
    Ctrl-C raises KeyboardInterrupt at once. Only in the main thread."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            try:
                self._old = signal.signal(signal.SIGINT, self._handler)
            except (ValueError, OSError):
                self._old = None
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


def _make_bar(total, initial, enabled, desc):
    """A tqdm bar in a terminal, plain progress lines in a log file or notebook (lyricnn.progress)."""
    from .progress import make_bar

    return make_bar(total, initial=initial, enabled=enabled, desc=desc, unit="step")


class TrainLoop:
    """One fit: owns the schedule, history, early stopping and checkpoints for an estimator.

    est: the estimator (its hyper-parameters are read from it); model: a SequenceClassifier with a
    configured optimizer; train / val: Dataset; hooks: an object with
      train_labels(idx) -> labels for train_step,  evaluate(Dataset) -> dict of metrics (with "loss").

    run(callbacks=...): a callable cb(est, info) is called after every step (info: step, epoch, loss, lr);
    returning False stops training like Ctrl-C. An object with a method on_evaluate(est, info) is called
    after every evaluation (info: step, epoch, metrics); returning False stops training there, between
    steps, as early stopping does (stopped_by_callback; lyricnn.tune's pruning uses it).
    """

    def __init__(self, est, model, train, val, hooks, pad_id, pad_to=None, class_weight=None, pos_weight=None,
                 params_json=None):
        self.est, self.model, self.train, self.val, self.hooks = est, model, train, val, hooks
        self.pad_id, self.pad_to = pad_id, pad_to
        self.class_weight, self.pos_weight = class_weight, pos_weight
        self.params_json = params_json
        self.p = check_loop_params(est)
        bs = self.p["batch_size"]
        self.batch_size = bs
        self.epochs = self.p["epochs"]
        self.steps_per_epoch = -(-len(train) // bs)
        self.total_steps = self.epochs * self.steps_per_epoch
        self.monitor = est.monitor
        self.mode = "min" if self.monitor in LOWER_IS_BETTER else "max"
        self.schedule, self.plateau = self._make_schedule()
        # loop state (all of it goes into a checkpoint)
        self.step = 0
        self.epoch = 0            # current (0-based) epoch
        self.batch_in_epoch = 0   # batches of the current epoch already done
        self.records = []         # history rows (dicts)
        self.best_score = None
        self.best_step = None
        self.bad_evals = 0
        self.best_state = None
        self.stopped_early = False
        self.stopped_by_callback = False
        self.interrupted = False
        self.last_eval_step = None
        self.eval_callbacks = []
        self.data_fingerprint = train.fingerprint()

    # ------------------------------------------------------------------ schedule
    def _make_schedule(self):
        est, p = self.est, self.p
        lr = p["lr"]
        warm = p["warmup_steps"]
        if p["warmup_ratio"]:
            warm = max(warm, int(math.ceil(p["warmup_ratio"] * self.total_steps)))
        name = est.schedule
        if name == "plateau":
            return None, ReduceLROnPlateau(lr, mode=self.mode, factor=p["plateau_factor"],
                                           patience=p["plateau_patience"])
        if name == "constant" and warm:
            name = "constant_with_warmup"
        return get_schedule(name, lr, num_warmup_steps=warm, num_training_steps=self.total_steps), None

    def current_lr(self):
        return self.schedule.lr if self.schedule is not None else self.plateau.lr

    # ------------------------------------------------------------------ checkpoints
    @property
    def ckpt_dir(self):
        return self.p["checkpoint_dir"]

    def _meta(self):
        return {
            "format": FORMAT, "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps,
            "rng": {"batch_order_seed": [self.p["seed"], self.epoch], "dropout": "engine Philox keyed by "
                    "(seed, global step)", "seed": self.p["seed"]},
            "schedule": self.schedule.state_dict() if self.schedule is not None else None,
            "plateau": self.plateau.state_dict() if self.plateau is not None else None,
            "best_score": self.best_score, "best_step": self.best_step, "bad_evals": self.bad_evals,
            "stopped_early": self.stopped_early, "last_eval_step": self.last_eval_step,
            "history": self.records, "params": self.params_json, "data": self.data_fingerprint,
            "estimator": self.hooks.fitted_state(), "time": time.time(),
        }

    def save_checkpoint(self, _fail_after=-1):
        """Write last.safetensors atomically (weights, optimizer state, loop state, history, params)."""
        d = self.ckpt_dir
        os.makedirs(d, exist_ok=True)
        tensors = {}
        for k, v in self.model.state_dict().items():
            tensors["model." + k] = np.asarray(v)
        opt_scalars = {}
        for k, v in self.model.optimizer_state().items():
            if isinstance(v, np.ndarray):
                tensors["optim." + k] = v
            else:
                opt_scalars[k] = v
        meta = self._meta()
        meta["optim_scalars"] = opt_scalars
        _ckpt.save_safetensors(os.path.join(d, LAST), tensors,
                               {"lyricnn": json.dumps(meta, default=_json_default)}, _fail_after=_fail_after)

    def _save_best(self):
        d = self.ckpt_dir
        os.makedirs(d, exist_ok=True)
        meta = {"format": FORMAT, "step": self.step, "epoch": self.epoch, "best_score": self.best_score,
                "monitor": self.monitor, "params": self.params_json, "estimator": self.hooks.fitted_state()}
        _ckpt.save_safetensors(os.path.join(d, BEST), {"model." + k: v for k, v in self.best_state.items()},
                               {"lyricnn": json.dumps(meta, default=_json_default)})

    def _remove_stale_temp_files(self):
        """Temporary files of a write that was killed before its rename (the real files are intact)."""
        d = self.ckpt_dir
        if not d or not os.path.isdir(d):
            return
        for name in os.listdir(d):
            if name.endswith(".tmp") and name.startswith(("." + LAST + ".", "." + BEST + ".")):
                try:
                    os.unlink(os.path.join(d, name))
                except OSError:
                    pass

    def load_checkpoint(self):
        d = self.ckpt_dir
        if not d:
            raise ValueError("resume=True needs checkpoint_dir (the folder the interrupted fit wrote to)")
        path = os.path.join(d, LAST)
        if not os.path.exists(path):
            raise FileNotFoundError("resume=True but there is no checkpoint %s; run fit without resume first" % path)
        tensors, meta = read_checkpoint(path)
        if meta.get("data") != self.data_fingerprint:
            raise ValueError("the checkpoint in %s was written for different training data (or another "
                             "max_length/tokenizer); resume with the same X, y and features" % d)
        mine, theirs = self.params_json or {}, meta.get("params") or {}
        free = {"epochs", "verbose", "checkpoint_dir", "checkpoint_steps", "patience", "early_stopping",
                "report_to"}
        diff = sorted(k for k in set(mine) | set(theirs) if k not in free and mine.get(k) != theirs.get(k))
        if diff:
            raise ValueError("cannot resume: these parameters differ from the checkpoint's: %s (checkpoint: %s)"
                             % ({k: mine.get(k) for k in diff}, {k: theirs.get(k) for k in diff}))
        if meta["steps_per_epoch"] != self.steps_per_epoch:
            raise ValueError("cannot resume: %d steps per epoch now, %d in the checkpoint"
                             % (self.steps_per_epoch, meta["steps_per_epoch"]))
        self.model.load_state_dict(tensors["model"])
        opt = dict(tensors["optim"])
        opt.update(meta.get("optim_scalars") or {})
        self.model.load_optimizer_state(opt)
        self.step, self.epoch, self.batch_in_epoch = meta["step"], meta["epoch"], meta["batch_in_epoch"]
        if self.schedule is not None and meta.get("schedule") is not None:
            st = dict(meta["schedule"])
            if meta["total_steps"] == self.total_steps:
                self.schedule.load_state_dict(st)
            else:  # epochs changed: keep the position, use the new length
                self.schedule.last_step = st["last_step"]
        if self.plateau is not None and meta.get("plateau") is not None:
            self.plateau.load_state_dict(meta["plateau"])
        self.records = list(meta.get("history") or [])
        self.best_score, self.best_step = meta.get("best_score"), meta.get("best_step")
        self.bad_evals = meta.get("bad_evals", 0)
        self.last_eval_step = meta.get("last_eval_step")
        self.stopped_early = bool(meta.get("stopped_early"))
        if self.stopped_early:
            self.stopped_early = False  # a new fit(resume=True) may continue (e.g. with more patience)
        best = os.path.join(d, BEST)
        if self.best_step is not None and os.path.exists(best):
            bt, _ = read_checkpoint(best)
            self.best_state = bt["model"]
        return meta

    # ------------------------------------------------------------------ evaluation / early stopping
    @property
    def stopping(self):
        """Early stopping or an on_evaluate callback ended training (between steps)."""
        return self.stopped_early or self.stopped_by_callback

    def _improved(self, score):
        if self.best_score is None:
            return True
        return score < self.best_score if self.mode == "min" else score > self.best_score

    def evaluate(self, bar):
        if self.val is None:
            return None
        metrics = self.hooks.evaluate(self.val)
        self.last_eval_step = self.step
        # the (1-based) epoch this evaluation happened in: at an epoch's end, the epoch just finished
        row = {"step": self.step, "epoch": self.epoch + 1 if self.batch_in_epoch else self.epoch,
               "loss": float("nan"), "lr": float("nan")}
        row.update({"val_" + k: float(v) for k, v in metrics.items()})
        self.records.append(row)
        if self.monitor not in metrics:
            raise ValueError("monitor=%r is not a validation metric; choose one of %s"
                             % (self.monitor, sorted(metrics)))
        score = float(metrics[self.monitor])
        if self.plateau is not None:
            self.plateau.step(score)
        if self._improved(score):
            self.best_score, self.best_step, self.bad_evals = score, self.step, 0
            if self.p["early_stopping"] and self.p["restore_best_weights"] or self.ckpt_dir:
                self.best_state = self.model.state_dict()
            if self.ckpt_dir:
                self._save_best()
        else:
            self.bad_evals += 1
            if self.p["early_stopping"] and self.bad_evals >= self.p["patience"]:
                self.stopped_early = True
        if self.est.verbose:
            shown = " ".join("%s %.4f" % (k, v) for k, v in metrics.items() if np.isscalar(v))
            bar.write("step %d (epoch %d): val %s%s" % (self.step, row["epoch"], shown,
                                                         " *" if self.best_step == self.step else ""))
        info = {"step": self.step, "epoch": row["epoch"], "metrics": metrics}
        for cb in self.eval_callbacks:
            if cb.on_evaluate(self.est, info) is False:
                self.stopped_by_callback = True
        return metrics

    # ------------------------------------------------------------------ the loop
    def run(self, resume=False, callbacks=()):
        est, model = self.est, self.model
        self._remove_stale_temp_files()
        if resume:
            self.load_checkpoint()
        callbacks = [c for c in (callbacks or ()) if c is not None]
        for i, c in enumerate(callbacks):
            if not callable(c) and not callable(getattr(c, "on_evaluate", None)):
                raise TypeError("callbacks[%d] is a %s: pass callables cb(estimator, info), called after every step, "
                                "or objects with a method on_evaluate(estimator, info)" % (i, type(c).__name__))
        self.eval_callbacks = [c for c in callbacks if callable(getattr(c, "on_evaluate", None))]
        callbacks = [c for c in callbacks if callable(c)]
        eval_steps = self.p["eval_steps"]
        ckpt_steps = self.p["checkpoint_steps"]
        bar = _make_bar(self.total_steps, min(self.step, self.total_steps), self.p["verbose"] > 0,
                        "fine-tuning")
        running = None
        try:
            with _SigintGuard() as guard:
                while self.epoch < self.epochs and not self.stopping and not self.interrupted:
                    batches = batch_order(self.train.lengths, self.batch_size, shuffle=True,
                                          seed=[self.p["seed"], self.epoch], bucket=self.p["bucket_by_length"])
                    while self.batch_in_epoch < len(batches):
                        if guard.requested:
                            self.interrupted = True
                            break
                        idx = batches[self.batch_in_epoch]
                        ids, mask = pad_rows(self.train.ids, idx, self.pad_id, self.pad_to)
                        feats = None if self.train.features is None else self.train.features[idx]
                        lr = self.current_lr()
                        model.set_lr(lr)
                        kw = {}
                        if feats is not None:
                            kw["features"] = feats
                        if self.class_weight is not None:
                            kw["class_weight"] = self.class_weight
                        if self.pos_weight is not None:
                            kw["pos_weight"] = self.pos_weight
                        loss = model.train_step(ids, mask, self.hooks.train_labels(idx), **kw)
                        loss = float(loss)
                        self.step += 1
                        self.batch_in_epoch += 1
                        if self.schedule is not None:
                            self.schedule.step()
                        self.records.append({"step": self.step, "epoch": self.epoch + 1, "loss": loss, "lr": lr})
                        running = loss if running is None or not math.isfinite(running) else 0.9 * running + 0.1 * loss
                        bar.update(1)
                        bar.set_postfix(loss="%.4f" % running, lr="%.2e" % lr, epoch=self.epoch + 1, refresh=False)
                        if not math.isfinite(loss):
                            raise FloatingPointError(
                                "the training loss became %r at step %d; lower lr (now %g) or check the inputs"
                                % (loss, self.step, lr))
                        if eval_steps and self.step % eval_steps == 0 and self.batch_in_epoch < len(batches):
                            self.evaluate(bar)
                        if ckpt_steps and self.ckpt_dir and self.step % ckpt_steps == 0 \
                                and self.batch_in_epoch < len(batches):
                            self.save_checkpoint()
                        info = {"step": self.step, "epoch": self.epoch + 1, "loss": loss, "lr": lr}
                        for cb in callbacks:
                            if cb(est, info) is False:
                                guard.requested = True
                        if self.stopping:
                            break
                    if self.interrupted or self.stopping and self.batch_in_epoch < len(batches):
                        break
                    # end of the epoch
                    self.epoch += 1
                    self.batch_in_epoch = 0
                    if self.val is not None and self.last_eval_step != self.step:
                        self.evaluate(bar)
                    if est.verbose and self.val is None:
                        bar.write("epoch %d/%d done, step %d, loss %.4f" % (self.epoch, self.epochs, self.step,
                                                                          running if running is not None else float("nan")))
                    if self.ckpt_dir:
                        self.save_checkpoint()
                    if guard.requested:
                        self.interrupted = True
        except KeyboardInterrupt:
            # raised by a callback, or a second Ctrl-C: the last completed step is consistent
            self.interrupted = True
        finally:
            bar.close()
        if self.interrupted:
            if self.ckpt_dir:
                self.save_checkpoint()
            msg = ("training interrupted after step %d of %d; the model is usable as it is" %
                   (self.step, self.total_steps))
            if self.ckpt_dir:
                msg += "; fit(..., resume=True) continues from %s" % os.path.join(self.ckpt_dir, LAST)
            print(msg, file=sys.stderr)
        if self.stopped_early and est.verbose:
            print("early stopping at step %d: %s did not improve for %d evaluations (best %.4f at step %d)"
                  % (self.step, self.monitor, self.bad_evals, self.best_score, self.best_step))
        if self.p["early_stopping"] and self.p["restore_best_weights"] and self.best_state is not None \
                and self.best_step != self.step and not self.interrupted:
            model.load_state_dict(self.best_state)
            if est.verbose:
                print("restored the weights of step %d (best %s %.4f)" % (self.best_step, self.monitor,
                                                                           self.best_score))
        return self
