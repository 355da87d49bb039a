"""report_to=: the logs that TensorBoard, MLflow and W&B write, read back with each tool's own reader
(TensorBoard's EventAccumulator, mlflow.MlflowClient on the file store, the offline W&B run's transaction log
decoded with wandb's protobuf schema), equal history_. Each tool's tests skip when it is not installed."""
import glob
import json
import os
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT
from lyricnn import tracking
from lyricnn.estimators import TextClassifier, TextRegressor
from lyricnn.lstm import LSTMClassifier

TINY = {"model_type": "distilbert", "vocab_size": 30522, "dim": 32, "n_layers": 1, "n_heads": 2,
        "hidden_dim": 64, "max_position_embeddings": 64, "dropout": 0.1, "attention_dropout": 0.1,
        "seq_classif_dropout": 0.1, "initializer_range": 0.02}
X = ["i love this song", "hate it so much", "great tune here", "awful noise", "so good", "bad bad bad"] * 4
Y = ["pos", "neg", "pos", "neg", "pos", "neg"] * 4
NAMES = {"loss": "train/loss", "lr": "train/lr", "epoch": "train/epoch"}


def _clf(**kw):
    base = dict(model=TINY, max_length=16, epochs=2, batch_size=8, eval_steps=2, lr=1e-3, verbose=0,
                head={"pooling": "mean", "hidden": [8]})
    base.update(kw)
    return TextClassifier(**base)


def _expected(h):
    """{logged name: {step: value}} from history_: train/* per step, val/* per evaluation."""
    out = {}
    steps = h[h["loss"].notna()]
    for col in ("loss", "lr", "epoch"):
        out[NAMES[col]] = dict(zip(steps["step"].tolist(), steps[col].astype(float).tolist()))
    for col in [c for c in h.columns if c.startswith("val_")]:
        ev = h[h[col].notna()]
        out["val/" + col[4:]] = dict(zip(ev["step"].tolist(), ev[col].tolist()))
    return out


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ------------------------------------------------------------------------------------ TensorBoard

def _tb_read(log_dir):
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    ea = ea_mod.EventAccumulator(str(log_dir), size_guidance={ea_mod.SCALARS: 0, ea_mod.IMAGES: 0,
                                                                ea_mod.TENSORS: 0})
    ea.Reload()
    return ea


def test_tensorboard_logs_equal_history(in_tmp):
    pytest.importorskip("tensorboard")
    clf = _clf(report_to={"tensorboard": {"log_dir": "tb/run"}}).fit(X, Y, eval_set=(X[:6], Y[:6]))
    assert clf.tracking_runs_ == {"tensorboard": {"log_dir": str(in_tmp / "tb" / "run")}}
    ea = _tb_read(in_tmp / "tb" / "run")
    for name, want in _expected(clf.history_).items():
        got = {e.step: e.value for e in ea.Scalars(name)}
        assert got == {s: float(np.float32(v)) for s, v in want.items()}, name   # TensorBoard stores float32
    assert len(_expected(clf.history_)["val/accuracy"]) == 4 and len(ea.Scalars("train/loss")) == clf.n_steps_
    final = {t: ea.Scalars(t)[-1] for t in ea.Tags()["scalars"] if t.startswith("final/")}
    assert final["final/n_steps"].value == clf.n_steps_ and final["final/n_steps"].step == clf.n_steps_
    assert final["final/best_loss"].value == pytest.approx(clf.best_score_, rel=1e-6)
    (img,) = ea.Images("curves")
    assert img.step == clf.n_steps_ and img.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n" and img.width > 500
    params = ea.Tensors("params")[0].tensor_proto.string_val[0].decode()
    assert ea.SummaryMetadata("params").plugin_data.plugin_name == "text"
    assert "| lr | 0.001 |" in params and "| head.pooling | mean |" in params


def test_tensorboard_default_dir_and_lstm(in_tmp):
    """Every estimator reports, the LSTM ones too; the default folder is runs/<class>-<time>."""
    pytest.importorskip("tensorboard")
    lstm = LSTMClassifier(embedding_dim=8, hidden_size=8, num_layers=1, epochs=2, batch_size=8, eval_steps=3,
                          verbose=0, report_to="tensorboard").fit(X, Y, eval_set=(X[:6], Y[:6]))
    d = lstm.tracking_runs_["tensorboard"]["log_dir"]
    assert os.path.dirname(d) == str(in_tmp / "runs") and os.path.basename(d).startswith("LSTMClassifier-")
    ea = _tb_read(d)
    assert [e.step for e in ea.Scalars("train/loss")] == list(range(1, lstm.n_steps_ + 1))
    assert {e.step: e.value for e in ea.Scalars("val/loss")} == {
        s: float(np.float32(v)) for s, v in _expected(lstm.history_)["val/loss"].items()}


def test_tensorboard_resume_continues_the_same_folder(in_tmp):
    pytest.importorskip("tensorboard")
    kw = dict(report_to={"tensorboard": {"log_dir": "tb/r"}}, checkpoint_dir=str(in_tmp / "ck"), epochs=3,
              checkpoint_steps=2)
    part = _clf(**kw).fit(X, Y, eval_set=(X[:6], Y[:6]), callbacks=[lambda est, info: info["step"] < 4])
    assert part.interrupted_ and part.n_steps_ == 4
    assert json.loads((in_tmp / "ck" / tracking.RUNS_FILE).read_text())["tensorboard"]["log_dir"] == \
        str(in_tmp / "tb" / "r")
    full = _clf(**dict(kw, report_to="tensorboard")).fit(X, Y, eval_set=(X[:6], Y[:6]), resume=True)
    assert full.n_steps_ == 9 and full.tracking_runs_["tensorboard"]["log_dir"] == str(in_tmp / "tb" / "r")
    ea = _tb_read(in_tmp / "tb" / "r")
    for name, want in _expected(full.history_).items():
        assert {e.step: e.value for e in ea.Scalars(name)} == {s: float(np.float32(v)) for s, v in want.items()}


# ------------------------------------------------------------------------------------ MLflow

@pytest.fixture
def mlflow_store(in_tmp, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")   # MLflow 3.7+: the file store is opt-in
    uri = "file:" + str(in_tmp / "mlruns")
    return mlflow, uri, mlflow.MlflowClient(tracking_uri=uri)


def test_mlflow_logs_equal_history(mlflow_store):
    mlflow, uri, client = mlflow_store
    reg = TextRegressor(model=TINY, max_length=16, epochs=2, batch_size=8, eval_steps=2, lr=1e-3, verbose=0,
                        report_to={"mlflow": {"tracking_uri": uri, "experiment": "exp1"}})
    yv = np.linspace(0, 1, len(X))
    reg.fit(X, yv, eval_set=(X[:6], yv[:6]))
    run = client.get_run(reg.tracking_runs_["mlflow"]["run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "exp1"
    for name, want in _expected(reg.history_).items():
        got = {m.step: m.value for m in client.get_metric_history(run.info.run_id, name)}
        assert got == want, name
    assert set(_expected(reg.history_)) >= {"val/pearson_r", "val/rmse", "val/mae"}
    assert run.data.params["lr"] == "0.001" and run.data.params["model.dim"] == "32"
    assert run.data.metrics["final/n_steps"] == reg.n_steps_
    assert run.data.metrics["final/best_loss"] == reg.best_score_
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/config.json", "model/model.safetensors", "model/lyricnn_estimator.json"} <= arts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "plots")] == ["plots/curves.png"]


def test_mlflow_resume_same_run_and_active_run(mlflow_store, in_tmp):
    mlflow, uri, client = mlflow_store
    kw = dict(report_to={"mlflow": {"tracking_uri": uri, "log_model": False}}, checkpoint_dir=str(in_tmp / "ck"))
    part = _clf(**kw).fit(X, Y, eval_set=(X[:6], Y[:6]), callbacks=[lambda est, info: info["step"] < 3])
    rid = part.tracking_runs_["mlflow"]["run_id"]
    assert client.get_run(rid).info.status == "KILLED"
    full = _clf(**kw).fit(X, Y, eval_set=(X[:6], Y[:6]), resume=True)
    assert full.tracking_runs_["mlflow"]["run_id"] == rid and client.get_run(rid).info.status == "FINISHED"
    for name, want in _expected(full.history_).items():
        got = {m.step: m.value for m in client.get_metric_history(rid, name)}
        assert got == want, name
    assert not client.list_artifacts(rid, "model")
    # inside the user's own run: logged there, the run left open
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run() as run:
            c = _clf(report_to="mlflow").fit(X, Y)
            assert c.tracking_runs_["mlflow"]["run_id"] == run.info.run_id
            assert client.get_run(run.info.run_id).info.status == "RUNNING"
        assert len(client.get_metric_history(run.info.run_id, "train/loss")) == c.n_steps_
    finally:
        mlflow.set_tracking_uri(None)


# ------------------------------------------------------------------------------------ W&B (offline)

def wandb_records(run_dir, timeout=60.0):
    """The records of an offline W&B run (its run-<id>.wandb transaction log: W&B's LevelDB-log framing of
    wandb_internal_pb2.Record messages), decoded with wandb's own protobuf schema. wandb-core may still be
    writing the file's tail when run.finish() returns: read until the run's exit record is there."""
    deadline = time.monotonic() + timeout
    while True:
        recs = _read_wandb_log(run_dir)
        if any(r.WhichOneof("record_type") == "exit" for r in recs) or time.monotonic() > deadline:
            return recs
        time.sleep(0.2)


def _read_wandb_log(run_dir):
    pb = pytest.importorskip("wandb.proto.wandb_internal_pb2")
    (path,) = glob.glob(os.path.join(run_dir, "run-*.wandb"))
    data = open(path, "rb").read()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B" and magic == 0xBEE1 and version == 0
    block, pos, parts, out = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + n], pos + 7 + n
        if kind == 0:
            pos += left - 7 - n
            continue
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(parts)
            out.append(rec)
    return out


def _wandb_history(records):
    hist = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            for k, v in items.items():
                if not k.startswith("_"):
                    hist.setdefault(k, {})[items["_step"]] = v
    return hist


def _wandb_run(records):
    return next(r.run for r in records if r.WhichOneof("record_type") == "run")


@pytest.fixture
def wandb_offline(in_tmp, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(in_tmp))
    return in_tmp


def test_wandb_offline_logs_equal_history(wandb_offline):
    clf = _clf(report_to={"wandb": {"project": "lyr", "dir": str(wandb_offline / "wb")}})
    clf.fit(X, Y, eval_set=(X[:6], Y[:6]))
    st = clf.tracking_runs_["wandb"]
    assert st["offline"] and st["project"] == "lyr"
    recs = wandb_records(st["run_dir"])
    hist = _wandb_history(recs)
    for name, want in _expected(clf.history_).items():
        assert hist[name] == want, name
    config = {u.key: json.loads(u.value_json) for u in _wandb_run(recs).config.update}
    assert config["lr"] == 0.001 and config["head.pooling"] == "mean" and "report_to" not in config
    summary = {}
    for r in recs:
        if r.WhichOneof("record_type") == "summary":
            summary.update({u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in r.summary.update})
    assert summary["final/n_steps"] == clf.n_steps_ and summary["final/best_loss"] == pytest.approx(clf.best_score_)
    assert hist["curves/_type"] == {clf.n_steps_: "image-file"}
    kinds = {r.WhichOneof("record_type") for r in recs}
    assert "artifact" in kinds and "exit" in kinds


def test_wandb_resume_continues_the_run_id(wandb_offline):
    """Offline, a resumed fit writes a second run folder with the same run id (wandb sync merges them); the
    two logs together equal history_."""
    kw = dict(report_to={"wandb": {"dir": str(wandb_offline / "wb"), "log_model": False}},
              checkpoint_dir=str(wandb_offline / "ck"))
    part = _clf(**kw).fit(X, Y, eval_set=(X[:6], Y[:6]), callbacks=[lambda est, info: info["step"] < 3])
    full = _clf(**kw).fit(X, Y, eval_set=(X[:6], Y[:6]), resume=True)
    rid = part.tracking_runs_["wandb"]["id"]
    assert full.tracking_runs_["wandb"]["id"] == rid
    dirs = sorted(glob.glob(str(wandb_offline / "wb" / "wandb" / ("offline-run-*-%s" % rid))))
    assert len(dirs) == 2
    merged = {}
    for d in dirs:
        for name, vals in _wandb_history(wandb_records(d)).items():
            merged.setdefault(name, {}).update(vals)
    for name, want in _expected(full.history_).items():
        assert merged[name] == want, name


def test_wandb_inside_the_users_run(wandb_offline):
    import wandb

    run = wandb.init(project="mine", dir=str(wandb_offline))
    try:
        clf = _clf(report_to={"wandb": {"log_model": False}}).fit(X, Y)
        assert clf.tracking_runs_["wandb"]["id"] == run.id
        run.log({"after": 1.0}, step=clf.n_steps_ + 1)   # the run is still open
    finally:
        run.finish()
    hist = _wandb_history(wandb_records(clf.tracking_runs_["wandb"]["run_dir"]))
    assert hist["train/loss"] == _expected(clf.history_)["train/loss"] and hist["after"] == {clf.n_steps_ + 1: 1.0}


# ------------------------------------------------------------------------------------ lyricnn.tune

def test_tune_one_run_per_trial(mlflow_store, wandb_offline, in_tmp):
    """MLflow: trial runs nested under the study's run, with optuna-integration's tags (state, params, value)
    and the fit's curves; W&B: one run per trial grouped by the study; TensorBoard: a folder per trial."""
    pytest.importorskip("optuna_integration")
    pytest.importorskip("tensorboard")
    import lyricnn

    mlflow, uri, client = mlflow_store
    base = _clf(epochs=1, report_to={"mlflow": {"tracking_uri": uri, "experiment": "sweep"},
                                     "wandb": {"project": "sweep", "dir": str(in_tmp / "wb")},
                                     "tensorboard": {"log_dir": str(in_tmp / "tb")}})
    try:
        res = lyricnn.tune(base, X, Y, {"lr": ("log", 1e-4, 1e-2)}, n_trials=3, metric="accuracy", seed=0,
                           study_name="s1", verbose=0)
    finally:
        mlflow.set_tracking_uri(None)
    exp = client.get_experiment_by_name("sweep")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.info.run_name == "s1"]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    trials = sorted((r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id),
                    key=lambda r: int(r.data.tags["number"]))
    assert [int(r.data.tags["number"]) for r in trials] == [0, 1, 2]
    for r, t in zip(trials, res.study.trials):
        assert r.data.tags["state"] == t.state.name
        assert float(r.data.params["lr"]) == t.params["lr"]
        assert r.data.metrics["accuracy"] == t.value
        assert len(client.get_metric_history(r.info.run_id, "train/loss")) == t.user_attrs["n_steps"]
        assert not client.list_artifacts(r.info.run_id, "model")   # trial models are not kept
    assert parent[0].data.metrics["study/n_trials"] == 3
    wb = sorted(glob.glob(str(in_tmp / "wb" / "wandb" / "offline-run-*")))
    assert len(wb) == 3
    groups = {(_wandb_run(wandb_records(d)).run_group, _wandb_run(wandb_records(d)).display_name) for d in wb}
    assert groups == {("s1", "s1-trial-%d" % i) for i in range(3)}
    assert sorted(os.listdir(in_tmp / "tb" / "s1")) == ["trial-0", "trial-1", "trial-2"]


# ------------------------------------------------------------------------------------ errors, CLI

def test_report_to_errors(monkeypatch):
    with pytest.raises(ValueError, match="unknown tool 'tensorbord'.*tensorboard, mlflow, wandb"):
        _clf(report_to="tensorbord").fit(X, Y)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['logdir'\]"):
        _clf(report_to={"tensorboard": {"logdir": "x"}}).fit(X, Y)
    with pytest.raises(TypeError, match="report_to must be"):
        _clf(report_to=3).fit(X, Y)
    assert tracking.normalize_report_to("tensorboard, mlflow") == {"tensorboard": {}, "mlflow": {}}
    assert tracking.normalize_report_to(None) == tracking.normalize_report_to("none") == {}
    # a tool that is not installed: an ImportError naming the package, before any training
    for mod, pkg in (("mlflow", "pip install mlflow-skinny"), ("wandb", "pip install wandb")):
        monkeypatch.setitem(sys.modules, mod, None)
        clf = _clf(report_to=mod)
        with pytest.raises(ImportError, match=pkg):
            clf.fit(X, Y)
        assert not hasattr(clf, "model_")
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(ImportError, match="pip install tensorboard"):
        _clf(report_to="tensorboard").fit(X, Y)


def test_cli_report_to(in_tmp):
    pytest.importorskip("tensorboard")
    pytest.importorskip("pandas").DataFrame({"text": X, "label": Y}).to_csv(in_tmp / "d.csv", index=False)
    r = subprocess.run([sys.executable, "-m", "lyricnn", "train", "d.csv", "--model", "tiny-distilbert",
                        "--output-dir", "out", "--epochs", "1",
                        "--max-length", "16", "--report-to", "tensorboard", "--quiet", "--val-fraction", "0.25"],
                       capture_output=True, text=True, cwd=in_tmp, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr
    (d,) = glob.glob(str(in_tmp / "runs" / "TextClassifier-*"))
    ea = _tb_read(d)
    assert len(ea.Scalars("train/loss")) >= 1 and len(ea.Scalars("val/accuracy")) >= 1
    r = subprocess.run([sys.executable, "-m", "lyricnn", "train", "d.csv", "--output-dir", "o2",
                        "--report-to", "tensorbord"], capture_output=True, text=True, cwd=in_tmp,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 2 and "unknown tool 'tensorbord'" in r.stderr
