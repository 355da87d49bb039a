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
# **Workflow:** notebook 1's songs (artist names masked) and split → the recurrent baseline of a lyrics
# coursework: a **word embedding of 500**, **two LSTM layers** (hidden 128), a **fully connected layer**,
# batches **padded to their longest member** (packed sequences), Adam, clipping, **early stopping** on the
# validation loss → architecture and parameter count, wall-clock training time → curves of train error, test
# error and test accuracy against the global step → test metrics against the majority baseline → a comparison
# with notebook 1's transformer on the same test songs (the model notebook 1 saved; nothing is retrained).
#
# The LSTM overfits after a few epochs (the validation loss turns up from about epoch 4), so training stops
# when the validation loss has not improved for 3 evaluations and the best weights are restored; the
# assignment trained 150 epochs.
#
# **Size and runtime:** 1,093 songs (764 train / 110 validation / 219 test), at most 400 words per song, at most
# 30 epochs of batch 64 with early stopping: about 2 minutes on 2 CPU cores (the last cell prints the measured
# time). Forward, loss, backpropagation through time, clipping and Adam run in lyricnn's C engine
# (`lyricnn.LSTMClassifier`; the weights carry PyTorch's `nn.LSTM` names). `LYRICNN_NB_SMALL=1`: 150 songs,
# tiny sizes, seconds.

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
from pathlib import Path
nb = lyricnn.notebook.setup("notebook 5, LSTM baseline", datasets=["song_lyrics_21_artists"])
SMALL, DEVICE, SEED = nb.SMALL, nb.DEVICE, nb.SEED

# %% [markdown]
# ## Data: notebook 1's songs and split

# %%
from lyricnn.data import stratified_split
from lyricnn.datasets import load_lyrics_21

songs = load_lyrics_21(artists=["Taylor Swift", "Drake", "Beyoncé"])  # artist names and credits masked
if SMALL:
    songs = songs.sample(n=150, random_state=SEED).reset_index(drop=True)
print(songs["artist"].value_counts().to_string())
texts, labels = songs["lyrics"].to_numpy(), songs["artist"].to_numpy()
rest, test = stratified_split(labels, test_size=0.2, seed=SEED)  # 70 / 10 / 20, as in notebook 1
tr, va = stratified_split(labels[rest], test_size=0.125, seed=SEED)
train, val = rest[tr], rest[va]
X_train, y_train = texts[train], labels[train]
X_val, y_val = texts[val], labels[val]
X_test, y_test = texts[test], labels[test]
print("train %d, validation %d, test %d" % (len(train), len(val), len(test)))
words = pd.Series([len(lyricnn.WordVocab().tokenize(t)) for t in X_train])
print("words per training song: median %d, 90th percentile %d, longest %d" % (
    words.median(), words.quantile(0.9), words.max()))
baseline = lyricnn.notebook.majority_baseline(y_train, y_test)

# %% [markdown]
# ## Model: word embedding -> 2 x LSTM -> Linear
#
# The vocabulary is built from the training songs (`lyricnn.WordVocab`: lower-case, words split by a regular
# expression that keeps inner apostrophes, `<pad>` = 0, `<unk>` = 1, the words seen at least `MIN_FREQ`
# times). Each song is cut to `MAX_LEN` words; a batch is padded to its longest song, and each song's LSTM
# stops at its last word (PyTorch's `pack_padded_sequence`), whose hidden state goes through the fully
# connected layer to the three logits. Adam, cross-entropy weighted by the balanced class weights, gradient
# clipping at 5; early stopping on the validation loss (patience 3 evaluations, the best weights restored).

# %%
from lyricnn import LSTMClassifier

if SMALL:
    EMB, HIDDEN, MAX_LEN, EPOCHS, BATCH, EVAL_STEPS, MIN_FREQ = 32, 16, 64, 2, 32, 2, 1
else:
    EMB, HIDDEN, MAX_LEN, EPOCHS, BATCH, EVAL_STEPS, MIN_FREQ = 500, 128, 400, 30, 64, 12, 2
test_curve = []  # (step, test loss, test accuracy): recorded for the curves, never used to choose anything


def record_test(est, info):
    if info["step"] % EVAL_STEPS == 0:
        r = est.evaluate(X_test, y_test)
        test_curve.append((info["step"], r["loss"], r["accuracy"]))


lstm = LSTMClassifier(embedding_dim=EMB, hidden_size=HIDDEN, num_layers=2, max_length=MAX_LEN, min_freq=MIN_FREQ,
                      epochs=EPOCHS, batch_size=BATCH, lr=1e-3, class_weight="balanced", eval_steps=EVAL_STEPS,
                      early_stopping=True, patience=3, monitor="loss", seed=SEED, device=DEVICE, verbose=1)
t0 = time.time()
lstm.fit(X_train, y_train, eval_set=(X_val, y_val), callbacks=[record_test])
lstm_seconds = time.time() - t0
print("trained %d steps (%.1f epochs) in %.1f s (%.0f ms per step, the test evaluations included); best "
      "validation loss %.4f at step %d" % (lstm.n_steps_, lstm.n_steps_ / -(-len(X_train) // BATCH), lstm_seconds,
                                            1e3 * lstm_seconds / lstm.n_steps_, lstm.best_score_, lstm.best_step_))

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
a1.axvline(lstm.best_step_, color="gray", ls=":", label="best validation loss (weights kept)")
a1.set_xlabel("global step"); a1.set_ylabel("cross-entropy"); a1.legend(); a1.set_title("train and test error")
a2.plot(curve["step"], curve["test_accuracy"], marker="o", color="C2", label="test accuracy")
v = h[h["val_accuracy"].notna()]
a2.plot(v["step"], v["val_accuracy"], marker=".", color="C3", alpha=0.6, label="validation accuracy")
a2.set_xlabel("global step"); a2.set_ylabel("accuracy"); a2.set_ylim(0, 1); a2.legend(); a2.set_title("accuracy")
fig.tight_layout()

# %%
fig = lstm.plot_history(title="LSTM baseline: loss and validation accuracy (lyricnn.plotting)")

# %% [markdown]
# ## Evaluation on the held-out test songs (artist names masked)

# %%
report = lstm.evaluate(X_test, y_test)
report.print()
summary = {k: round(float(report[k]), 4) for k in ("accuracy", "precision_macro", "recall_macro", "f1_macro",
                                                   "loss")}
print("metrics:", json.dumps(summary))
print("test accuracy %.3f against the majority baseline %.3f" % (report["accuracy"], baseline))
lstm.show_predictions(X_test, y_test, n=10, seed=SEED, max_chars=90)

# %% [markdown]
# ## Against notebook 1's transformer, on the same test songs
#
# Notebook 1 saves its fitted model in `notebooks/models/` (not committed); it is loaded and scored here on
# the same test songs, without retraining. Run notebook 1 first (in the same mode, full or small).

# %%
from lyricnn.estimators import TextClassifier

rows = [("LSTM (this notebook)", net.num_parameters(), lstm_seconds, lstm.n_steps_, report["accuracy"],
         report["f1_macro"])]
saved = Path("models/01_artist_classifier" + ("_small" if SMALL else ""))
if (saved / "lyricnn_estimator.json").is_file():
    bert = TextClassifier.load(saved, verbose=0, device=DEVICE)
    rep1 = bert.evaluate(X_test, y_test)
    n1 = int(bert.history_["step"].max()) if getattr(bert, "history_", None) is not None else -1
    rows.append(("transformer (notebook 1)", bert.model_.num_parameters(), float("nan"), n1, rep1["accuracy"],
                 rep1["f1_macro"]))
else:
    print("the transformer (notebook 1) is not in %s: run notebook 1 first to compare" % saved)
display(pd.DataFrame(rows, columns=["model", "parameters", "training s", "steps", "test accuracy",
                                    "test macro F1"]).round(4))

# %%
nb.done()
