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
# # 4. Disaster tweets: BERT head, stratified k-fold, ReduceLROnPlateau
#
# **Workflow:** Kaggle's "Natural Language Processing with Disaster Tweets" (is a tweet about a real
# disaster?) → a stratified sample → **stratified k-fold**: per fold, fine-tune a BERT encoder with the Hugging
# Face `BertForSequenceClassification` head (pooler, dropout, dense; `head=None` keeps the checkpoint's HF
# head) under the **ReduceLROnPlateau** schedule on the validation loss → **macro precision / recall / F1** per
# fold and their mean ± std against the majority baseline → loss and learning-rate curves per fold → one fold
# with `freeze_encoder=True` (the head alone) → sample predictions.
#
# Each fold's validation part is also what the plateau schedule watches, as in the original workflow; a
# strict protocol would hold out a separate part for that.
#
# **Size and runtime:** a stratified sample of 3,000 of the 7,613 tweets, 5 folds of 2,400 training / 600
# validation tweets, all-MiniLM-L6-v2, max_length 64, 2 epochs of batch 32 (150 steps per fold), then the
# frozen-encoder fold: about 9 minutes on 2 CPU cores, with a progress line per tenth of each fold (the
# last cell prints the measured time). All 7,613 tweets (`N_TWEETS = None`) take about 2.5 times as long.
# `LYRICNN_NB_SMALL=1`: 180 tweets, a tiny random BERT, seconds.

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
nb = lyricnn.notebook.setup("notebook 4, disaster tweets", datasets=["disaster_tweets"],
                            small_model=lyricnn.notebook.TINY_BERT)
SMALL, MODEL, DEVICE, SEED = nb.SMALL, nb.MODEL, nb.DEVICE, nb.SEED

# %% [markdown]
# ## Data

# %%
from lyricnn.data import stratified_kfold
from lyricnn.datasets import load_disaster_tweets

tweets = load_disaster_tweets()
N_TWEETS = 180 if SMALL else 3000  # None: all 7,613
if N_TWEETS is not None and N_TWEETS < len(tweets):
    tweets = tweets.groupby("target", group_keys=False).sample(frac=N_TWEETS / len(tweets), random_state=SEED)
    tweets = tweets.sample(frac=1.0, random_state=SEED).reset_index(drop=True)
print(tweets["target"].value_counts().rename({0: "0 (not a disaster)", 1: "1 (disaster)"}).to_string())
X, y = tweets["text"].to_numpy(), tweets["target"].to_numpy()
N_SPLITS = 3 if SMALL else 5
folds = stratified_kfold(y, n_splits=N_SPLITS, seed=SEED)
print("%d folds of about %d validation tweets" % (N_SPLITS, len(folds[0][1])))
baseline = lyricnn.notebook.majority_baseline(y[folds[0][0]], y[folds[0][1]])

# %% [markdown]
# ## Stratified k-fold with ReduceLROnPlateau

# %%
from lyricnn.estimators import TextClassifier

if SMALL:
    MAX_LEN, EPOCHS, BATCH, LR, EVAL_STEPS = 32, 2, 16, 1e-3, 2
else:
    MAX_LEN, EPOCHS, BATCH, LR, EVAL_STEPS = 64, 2, 32, 5e-5, 16


def make_model(freeze_encoder=False, lr=LR):
    return TextClassifier(model=MODEL, head=None, max_length=MAX_LEN, epochs=EPOCHS, batch_size=BATCH,
                          lr=lr, weight_decay=0.01, schedule="plateau", monitor="loss", plateau_factor=0.5,
                          plateau_patience=1, eval_steps=EVAL_STEPS, freeze_encoder=freeze_encoder,
                          seed=SEED, device=DEVICE, verbose=1)


rows, histories = [], []
for k, (tr, va) in enumerate(folds):
    print("-- fold %d of %d" % (k + 1, N_SPLITS))
    clf = make_model()
    t0 = time.time()
    clf.fit(X[tr], y[tr], eval_set=(X[va], y[va]))
    rep = clf.evaluate(X[va], y[va])
    rows.append(dict(fold=k + 1, precision_macro=rep["precision_macro"], recall_macro=rep["recall_macro"],
                     f1_macro=rep["f1_macro"], accuracy=rep["accuracy"], steps=clf.n_steps_,
                     final_lr=float(clf.history_["lr"].dropna().iloc[-1]), seconds=time.time() - t0))
    histories.append(clf.history_.assign(fold=k + 1))
    print("fold %d: macro P %.3f  R %.3f  F1 %.3f  (%d steps, %.1f s)" % (
        k + 1, rep["precision_macro"], rep["recall_macro"], rep["f1_macro"], clf.n_steps_, rows[-1]["seconds"]))
print("head:", "HF %s head" % clf.model_.model_type if clf.model_.head is None else clf.model_.head)
results = pd.DataFrame(rows).set_index("fold")
display(results.round(4))
mean = results[["precision_macro", "recall_macro", "f1_macro", "accuracy"]].mean()
std = results[["precision_macro", "recall_macro", "f1_macro", "accuracy"]].std()
print("metrics:", json.dumps({k: round(float(v), 4) for k, v in mean.items()}))
print("macro F1 over %d folds: %.3f +- %.3f; accuracy %.3f against the majority baseline %.3f"
      % (N_SPLITS, mean["f1_macro"], std["f1_macro"], mean["accuracy"], baseline))

# %% [markdown]
# ## Curves against the global step
#
# Training loss and validation loss per fold, and the learning rate that ReduceLROnPlateau lowers
# when the validation loss stops improving; then the lyricnn plot of the last fold.

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
for h in histories:
    k = int(h["fold"].iloc[0])
    steps, evals = h[h["loss"].notna()], h[h["val_loss"].notna()]
    line, = ax1.plot(steps["step"], steps["loss"], alpha=0.35, lw=0.8)
    ax1.plot(evals["step"], evals["val_loss"], "o-", color=line.get_color(), label="fold %d val" % k)
    ax2.plot(steps["step"], steps["lr"], color=line.get_color(), label="fold %d" % k)
ax1.set_xlabel("global step"); ax1.set_ylabel("loss (train faint, validation dots)"); ax1.legend()
ax2.set_xlabel("global step"); ax2.set_ylabel("learning rate"); ax2.set_yscale("log"); ax2.legend()
ax2.set_title("ReduceLROnPlateau (factor 0.5, patience 1)")
fig.tight_layout()
fig2 = clf.plot_history(title="last fold: loss and validation accuracy / macro F1")

# %% [markdown]
# ## Frozen encoder: train only the head
#
# `freeze_encoder=True` trains the head only: no gradient work and no optimizer state for the
# encoder, so steps are much cheaper, usually at some cost in F1. With the HF BERT head that leaves
# the final dense layer (the pooler is part of `BertModel`, so it is frozen with the encoder). A
# larger learning rate suits the head alone. One fold:

# %%
tr, va = folds[0]
frozen = make_model(freeze_encoder=True, lr=LR * 20)
t0 = time.time()
frozen.fit(X[tr], y[tr], eval_set=(X[va], y[va]))
rep = frozen.evaluate(X[va], y[va])
print("frozen encoder: %d trainable of %d parameters" % (frozen.model_.num_parameters(trainable_only=True),
                                                         frozen.model_.num_parameters()))
print("trainable tensors:", [k for k in frozen.model_.params if not k.startswith(("bert.", "distilbert."))])
print("fold 1, frozen encoder: macro F1 %.3f in %.1f s  (fine-tuned: %.3f in %.1f s)" % (
    rep["f1_macro"], time.time() - t0, results.loc[1, "f1_macro"], results.loc[1, "seconds"]))

# %% [markdown]
# ## Sample predictions (last fold's model on its validation tweets)

# %%
tr, va = folds[-1]
clf.show_predictions(X[va], y[va], n=10, seed=SEED, max_chars=90)

# %%
nb.done()
