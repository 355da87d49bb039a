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
# **Workflow:** notebook 3's data (MusicOSet lyrics -> Spotify valence) → a fifth held out for the final test
# → a **Bayesian sweep** of 20 trials on a subset of the training songs with `lyricnn.tune` (built on
# [Optuna](https://optuna.org): a seeded **TPE** sampler; every validation evaluation inside `fit` is reported
# to the trial at the global step and the **median pruner** stops unpromising trials between steps) over the
# learning rate, weight decay, the schedule, the head's dropout and the **LoRA rank and alpha** → one line per
# trial, the trials table, **parameter importances** and the **optimisation history** → the best configuration
# **refit** on all training songs and scored on the test songs against predicting the mean → sample predictions.
#
# **What to expect:** the lyrics carry little of a song's valence (notebook 3: a linear probe on frozen
# all-MiniLM-L6-v2 embeddings reaches a Pearson r of 0.19). The sweep's scores are small and noisy on 77
# validation songs; what it shows is how `lyricnn.tune` searches, prunes and refits.
#
# **Size and runtime:** 741 training songs, the sweep on 384 of them (308 fit / 76 scored per trial),
# all-MiniLM-L6-v2 with LoRA, max_length 128, 2 epochs of batch 16 per trial, then the refit: about 6
# minutes on 2 CPU cores (the last cell prints the measured time). `LYRICNN_NB_SMALL=1`: 160 songs, a tiny
# random model, seconds. Needs Optuna (`pip install optuna`).

# %%
import json
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

try:
    import lyricnn
except ImportError:  # a source checkout that is not installed: use it
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path.cwd().resolve().parent))
    import lyricnn
import lyricnn.notebook
nb = lyricnn.notebook.setup("notebook 6, valence sweep", datasets=["musicoset"])
SMALL, MODEL, DEVICE, SEED = nb.SMALL, nb.MODEL, nb.DEVICE, nb.SEED

# %% [markdown]
# ## Data
#
# MusicOSet lyrics with their valence, as in notebook 3. A fifth of the songs is held out for the final test;
# the sweep sees a subset of the rest.

# %%
from lyricnn.datasets import load_musicoset

df = load_musicoset(verbose=True)
if SMALL:
    df = df.sample(n=160, random_state=SEED).reset_index(drop=True)
print("%d songs; valence mean %.3f, std %.3f" % (len(df), df["valence"].mean(), df["valence"].std()))
texts, y = df["lyrics"].to_numpy(), df["valence"].to_numpy(dtype=np.float64)
perm = np.random.default_rng(SEED).permutation(len(df))
n_test = len(df) // 5
test, train = perm[:n_test], perm[n_test:]
SWEEP_SONGS = 64 if SMALL else 384  # the sweep's subset of the training songs
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
    MAX_LEN, EPOCHS, BATCH, EVAL_STEPS, LR_RANGE = 128, 2, 16, 10, (1e-4, 1e-2)
N_TRIALS = 12 if SMALL else 20
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
# ## The sweep: 20 trials, scored by validation Pearson r
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
                     "params_head.dropout", "params_lora.r", "params_lora.alpha", "user_attrs_n_steps"]].round(4))

# %% [markdown]
# ## Which parameters mattered, and how the sweep went
#
# Importances are Optuna's (PED-ANOVA: how much each parameter's values differ between the best trials
# and the rest); with 20 trials they are a rough guide.

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
report.print()
summary = {k: round(float(report[k]), 4) for k in ("mse", "rmse", "mae", "pearson_r")}
print("metrics:", json.dumps(summary))
base_mse = float(np.mean((y[test] - y[train].mean()) ** 2))
print("baseline (predict the training mean): test MSE %.4f" % base_mse)

# %% [markdown]
# ## Sample predictions (the first words of each song)

# %%
best.show_predictions(texts[test], y[test], n=8, seed=SEED, max_chars=90)

# %%
nb.done()
