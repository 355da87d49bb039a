"""Benchmark on a GPU: fine-tuning distilbert-base, lyricnn's CUDA backend against torch in the same run.

    python bench/gpu.py [--steps 20] [--songs 2048] [--quick] [--skip-compile]

Setups, all distilbert-base (random init), AdamW with weight decay and clipping at 1.0, dropout on:
  1. lyricnn, device="cuda", precision="bf16" (bf16 activations and GEMMs, fp32 master weights);
  2. torch eager with bf16 autocast, fused AdamW, sdpa attention;
  3. the same under torch.compile (--skip-compile leaves it out).
Shapes: B=32 at T=128 and at T=512 (every sequence full), then one epoch of real lyrics (the 21-artist
set, --songs of them, batch 32, truncated to 512): lyricnn runs unpadded, torch pads each batch to its
longest song.
Reported per setup: sequences/s, MFU against the card's dense bf16 peak (FLOPs of the real tokens, and of
the padded tokens computed), and peak GPU memory (torch: max_memory_allocated; lyricnn: the growth of the
device's used memory over the run, measured before torch allocates anything).
"""
import argparse
import glob
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import lyricnn  # noqa: E402
from lyricnn.classifier import SequenceClassifier  # noqa: E402
from lyricnn.data import pad_batch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("LYRICNN_SHARED", os.path.join(HERE, "..", "..", "shared", "data"))
PEAK_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def card_peak(name):
    for k, v in PEAK_BF16.items():
        if k in name:
            return v
    return float("nan")


def train_flops(cfg, lengths):
    """FLOPs of a training step (3x the forward) over sequences of the given lengths."""
    C, F, L = cfg["dim"], cfg["hidden_dim"], cfg["n_layers"]
    n = float(np.sum(lengths))
    sq = float(np.sum(np.asarray(lengths, np.float64) ** 2))
    per_token = L * (2 * (4 * C * C + 2 * C * F))  # qkv, out, two FFN GEMMs
    attn = L * 4 * C * sq                          # QK^T and PV
    return 3 * (per_token * n + attn)


def load_lyrics(n):
    files = sorted(glob.glob(os.path.join(DATA, "datasets", "song_lyrics_21_artists", "*.csv")))
    if not files:
        return None
    import pandas as pd
    texts = []
    for f in files:
        texts += [t for t in pd.read_csv(f)["Lyric"].dropna().astype(str) if t]
    rng = np.random.default_rng(0)
    return [texts[i] for i in rng.permutation(len(texts))[:n]]


def used_memory():
    d = lyricnn.cuda_info()["devices"][0]
    return d["total_memory"] - d["free_memory"]


def run_lyricnn(path, batches, steps):
    mem0 = used_memory()
    m = SequenceClassifier.from_pretrained(path, num_labels=2, seed=0, device="cuda", precision="bf16")
    m.configure_optimizer("adamw", lr=5e-5, weight_decay=0.01, max_grad_norm=1.0)
    ids, mask, y = batches[0]
    m.train_step(ids, mask, y)  # warm-up: arena, cuBLAS
    t0 = time.perf_counter()
    for k in range(steps):
        ids, mask, y = batches[k % len(batches)]
        m.train_step(ids, mask, y)  # each step reads its loss back: the timing includes the sync
    dt = time.perf_counter() - t0
    mem = used_memory() - mem0
    del m
    return dt, mem


def run_torch(path, batches, steps, compile_):
    import torch
    import transformers
    model = transformers.DistilBertForSequenceClassification.from_pretrained(path, num_labels=2,
                                                                             attn_implementation="sdpa").cuda()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01, fused=True)
    fwd = torch.compile(model) if compile_ else model

    def step(ids, mask, y):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fwd(input_ids=ids, attention_mask=mask, labels=y).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    dev = [tuple(torch.from_numpy(np.asarray(a)).cuda().long() for a in b) for b in batches]
    for b in dev[: (3 if compile_ else 1)]:  # warm-up (compilation)
        step(*b)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for k in range(steps):
        step(*dev[k % len(dev)]).item()  # .item(): the loss on the host, as lyricnn gives it
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    mem = torch.cuda.max_memory_allocated()
    del model, opt, fwd
    torch.cuda.empty_cache()
    return dt, mem


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per fixed shape (default 20)")
    ap.add_argument("--songs", type=int, default=2048, help="songs in the real-lyrics epoch (default 2048)")
    ap.add_argument("--quick", action="store_true", help="5 steps per shape, 256 songs")
    ap.add_argument("--skip-compile", action="store_true", help="leave torch.compile out")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.songs = 5, 256
    try:
        info = lyricnn.cuda_info()
    except lyricnn.LyricnnError as e:
        sys.exit("bench/gpu.py needs the CUDA backend and a GPU: %s" % e)
    import tempfile

    import torch
    import transformers
    card = info["devices"][0]["name"]
    peak = card_peak(card)
    torch.manual_seed(0)
    conf = transformers.DistilBertConfig(num_labels=2)
    tmp = tempfile.mkdtemp()
    transformers.DistilBertForSequenceClassification(conf).save_pretrained(tmp)
    cfg = conf.to_dict()
    print("GPU %s (bf16 peak %.0f TFLOP/s); CUDA runtime %d, driver %d; torch %s, transformers %s, lyricnn %s" % (
        card, peak / 1e12, info["runtime_version"], info["driver_version"], torch.__version__,
        transformers.__version__, lyricnn.__version__))
    rng = np.random.default_rng(0)
    setups = [("lyricnn bf16", None), ("torch eager bf16", False)] + ([] if args.skip_compile else
                                                                       [("torch.compile bf16", True)])
    rows = []
    for B, T in ((32, 128), (32, 512)):
        batches = [(rng.integers(1000, 30000, (B, T)).astype(np.int32), np.ones((B, T), np.int32),
                    rng.integers(0, 2, B)) for _ in range(4)]
        lens = [T] * B
        for name, comp in setups:
            dt, mem = (run_lyricnn(tmp, batches, args.steps) if comp is None else
                       run_torch(tmp, batches, args.steps, comp))
            seqs = B * args.steps / dt
            fl = train_flops(cfg, lens) * args.steps / dt
            rows.append(("%dx%d" % (B, T), name, seqs, fl / peak, fl / peak, mem))
    texts = load_lyrics(args.songs)
    if texts is None:
        print("(no lyrics under %s: the real-lyrics epoch is left out)" % DATA)
    else:
        from finetune import tokenizer  # bench/finetune.py's bert-base-uncased WordPiece

        tok = tokenizer()
        seqs = [np.asarray(r) for r in tok(texts, truncation=True, max_length=512)["input_ids"]]
        y = rng.integers(0, 2, len(seqs))
        batches, real, padded = [], [], []
        for s in range(0, len(seqs) - 31, 32):
            ids, mask = pad_batch(seqs[s:s + 32])
            batches.append((ids.astype(np.int32), mask.astype(np.int32), y[s:s + 32]))
            real.append([len(q) for q in seqs[s:s + 32]])
            padded.append([ids.shape[1]] * 32)
        n = len(batches)
        fl_real = sum(train_flops(cfg, r) for r in real)
        fl_pad = sum(train_flops(cfg, p) for p in padded)
        for name, comp in setups:
            dt, mem = (run_lyricnn(tmp, batches, n) if comp is None else run_torch(tmp, batches, n, comp))
            rows.append(("lyrics epoch (%d songs)" % (32 * n), name, 32 * n / dt, fl_real / dt / peak,
                         (fl_real if comp is None else fl_pad) / dt / peak, mem))
    print()
    print("| workload | setup | sequences/s | MFU (real tokens) | MFU (tokens computed) | peak memory GiB | vs torch eager |")
    print("|---|---|---:|---:|---:|---:|---:|")
    eager = {w: s for w, nm, s, *_ in rows if nm == "torch eager bf16"}
    for w, nm, s, mfu_r, mfu_c, mem in rows:
        print("| %s | %s | %.0f | %.1f%% | %.1f%% | %.2f | %.2fx |" % (w, nm, s, 100 * mfu_r, 100 * mfu_c, mem / 2**30,
                                                                    s / eager[w]))


if __name__ == "__main__":
    main()
