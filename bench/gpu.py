"""Benchmark on a GPU: fine-tuning distilbert-base, lyricnn's CUDA backend against torch in the same run.

    python bench/gpu.py [--steps 20] [--songs 2048] [--quick] [--skip-compile] [--budget SECONDS]
                        [--shapes 32x128,32x512] [--setups NAME,...] [--dry-run]

Setups, all distilbert-base (random init), AdamW with weight decay and clipping at 1.0, dropout on:
  torch eager bf16        bf16 autocast, fused AdamW, sdpa attention (first: the other rows' ratios need it);
  lyricnn bf16 defaults   device="cuda", precision="bf16" (bf16 activations and GEMMs, fp32 master weights),
                          with the backend's built-in default kernels (LYRICNN_CUDA_* unset);
  lyricnn bf16 tc+lt      the same with the tensor-core attention and the cuBLASLt bias epilogue
                          (LYRICNN_CUDA_ATTENTION=tc, LYRICNN_CUDA_GEMM=lt): the path meant to ship;
  lyricnn bf16 fast       tc+lt plus the step's newer switches (csrc/cuda/README.md): the sorted embedding
                          backward, the dropout bit masks, the fused optimizer step and the folded column sums;
  lyricnn fp16 fast       precision="fp16" (the T4 / V100 path, with dynamic loss scaling) on the fast path;
  torch.compile bf16      torch eager's step under torch.compile (left out with --skip-compile, or when the time budget
                          left is under COMPILE_NEEDS seconds: its compilation alone takes about a minute).
Shapes: B=32 at T=128 and at T=512 (every sequence full), then one epoch of real lyrics (the 21-artist set,
--songs of them, batch 32, truncated to 512): lyricnn runs unpadded, torch pads each batch to its longest song.
Each row is printed as soon as it is measured (a time limit that cuts the run short keeps what ran), with the
GPU's name in the header. Reported per setup: sequences/s, MFU against the card's dense bf16/fp16 peak (FLOPs of
the real tokens, and of the padded tokens computed), peak GPU memory (torch: max_memory_allocated; lyricnn: the
growth of the device's used memory over its run, torch's cache emptied before) and the ratio to
torch eager on the same workload.
--budget: seconds for the whole run; a setup that would not fit is skipped with a line saying so.
--dry-run: every setup on the CPU (lyricnn device="cpu", torch eager in float32) on a tiny model and tiny shapes,
to check the script without a GPU (the numbers mean nothing).
"""
import argparse
import glob
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import lyricnn  # noqa: E402
from lyricnn.classifier import SequenceClassifier  # noqa: E402
from lyricnn.data import pad_batch  # noqa: E402

DATA = os.environ.get("LYRICNN_SHARED", os.path.join(HERE, "..", "..", "shared", "data"))
# dense bf16 / fp16 tensor-core peaks (FLOP/s)
PEAK = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "T4": 65e12,
        "V100": 125e12, "RTX 4090": 165e12, "RTX 3090": 71e12}
COMPILE_NEEDS = 150  # seconds of budget a torch.compile row needs (compilation included)
LYRICNN_ENV = ("LYRICNN_CUDA_ATTENTION", "LYRICNN_CUDA_GEMM", "LYRICNN_CUDA_EMBED", "LYRICNN_CUDA_DROPOUT_BITS",
               "LYRICNN_CUDA_FUSED_OPT", "LYRICNN_CUDA_FOLD")
FAST = dict(LYRICNN_CUDA_ATTENTION="tc", LYRICNN_CUDA_GEMM="lt", LYRICNN_CUDA_EMBED="sorted",
            LYRICNN_CUDA_DROPOUT_BITS="1", LYRICNN_CUDA_FUSED_OPT="1", LYRICNN_CUDA_FOLD="1")
# name: (engine, precision, environment of a lyricnn setup / torch.compile or not)
SETUPS = {  # in this order: torch eager first, so every lyricnn row prints its ratio as it is measured
    "torch eager bf16": ("torch", "bf16", False),
    "lyricnn bf16 defaults": ("lyricnn", "bf16", {}),
    "lyricnn bf16 tc+lt": ("lyricnn", "bf16", dict(LYRICNN_CUDA_ATTENTION="tc", LYRICNN_CUDA_GEMM="lt")),
    "lyricnn bf16 fast": ("lyricnn", "bf16", FAST),
    "lyricnn fp16 fast": ("lyricnn", "fp16", FAST),
    "torch.compile bf16": ("torch", "bf16", True),
}


def card_peak(name):
    for k, v in PEAK.items():
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
    """n songs of the 21 artists (bench/finetune.py's load_songs), or None without the data."""
    if not glob.glob(os.path.join(DATA, "datasets", "song_lyrics_21_artists", "*.csv")):
        return None
    from finetune import load_songs
    return load_songs(n, 21)[0]


class Env:
    """os.environ with the LYRICNN_CUDA_* switches of a setup (read when a model's context is created)."""

    def __init__(self, env):
        self.env = env

    def __enter__(self):
        self.saved = {k: os.environ.pop(k, None) for k in LYRICNN_ENV}
        os.environ.update(self.env)

    def __exit__(self, *exc):
        for k in LYRICNN_ENV:
            os.environ.pop(k, None)
            if self.saved[k] is not None:
                os.environ[k] = self.saved[k]


def used_memory(device):
    if device == "cpu":
        return 0
    d = lyricnn.cuda_info()["devices"][0]
    return d["total_memory"] - d["free_memory"]


def run_lyricnn(path, batches, steps, precision, env, device):
    mem0 = used_memory(device)
    with Env(env):
        m = SequenceClassifier.from_pretrained(path, num_labels=2, seed=0, device=device,
                                               precision=None if device == "cpu" else precision)
    m.configure_optimizer("adamw", lr=5e-5, weight_decay=0.01, max_grad_norm=1.0)
    ids, mask, y = batches[0]
    m.train_step(ids, mask, y)  # warm-up: arena, cuBLAS
    t0 = time.perf_counter()
    for k in range(steps):
        ids, mask, y = batches[k % len(batches)]
        m.train_step(ids, mask, y)  # each step reads its loss back: the timing includes the sync
    dt = time.perf_counter() - t0
    mem = used_memory(device) - mem0
    del m
    return dt, mem


def run_torch(path, batches, steps, compile_, device):
    import torch
    import transformers
    model = transformers.DistilBertForSequenceClassification.from_pretrained(path, num_labels=2,
                                                                             attn_implementation="sdpa").to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01, fused=device == "cuda")
    fwd = torch.compile(model) if compile_ else model
    cuda = device == "cuda"

    def step(ids, mask, y):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
            loss = fwd(input_ids=ids, attention_mask=mask, labels=y).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    dev = [tuple(torch.from_numpy(np.asarray(a)).to(device).long() for a in b) for b in batches]
    for b in dev[: (3 if compile_ else 1)]:  # warm-up (compilation)
        step(*b)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for k in range(steps):
        step(*dev[k % len(dev)]).item()  # .item(): the loss on the host, as lyricnn gives it
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    mem = torch.cuda.max_memory_allocated() if cuda else 0
    del model, opt, fwd
    if cuda:
        torch.cuda.empty_cache()
    return dt, mem


class Table:
    """Rows printed as they come; the ratio column against torch eager of the same workload (when measured)."""

    def __init__(self):
        self.eager = {}
        print("| workload | setup | sequences/s | MFU (real tokens) | MFU (tokens computed) | peak memory GiB "
              "| vs torch eager |")
        print("|---|---|---:|---:|---:|---:|---:|", flush=True)

    def row(self, work, name, seqs, mfu_r, mfu_c, mem):
        if name == "torch eager bf16":
            self.eager[work] = seqs
        ratio = "%.2fx" % (seqs / self.eager[work]) if work in self.eager else "(eager below)"
        print("| %s | %s | %.1f | %.1f%% | %.1f%% | %.2f | %s |" % (work, name, seqs, 100 * mfu_r, 100 * mfu_c,
                                                                  mem / 2**30, ratio), flush=True)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per fixed shape (default 20)")
    ap.add_argument("--songs", type=int, default=2048, help="songs in the real-lyrics epoch (default 2048; 0: none)")
    ap.add_argument("--quick", action="store_true", help="5 steps per shape, 256 songs")
    ap.add_argument("--skip-compile", action="store_true", help="leave torch.compile out")
    ap.add_argument("--budget", type=float, default=float("inf"),
                    help="seconds for the whole run: setups that no longer fit are skipped (torch.compile needs "
                         "%d)" % COMPILE_NEEDS)
    ap.add_argument("--shapes", default="32x128,32x512", help="BxT workloads before the lyrics epoch")
    ap.add_argument("--setups", default=",".join(SETUPS),
                    help="comma-separated setups, in order (default: all): " + ", ".join(SETUPS))
    ap.add_argument("--dry-run", action="store_true", help="every setup on the CPU, tiny model and shapes")
    a = ap.parse_args(argv)
    if a.quick:
        a.steps, a.songs = 5, 256
    try:
        a.shapes = [tuple(int(v) for v in s.lower().split("x")) for s in a.shapes.split(",") if s]
        assert all(len(s) == 2 and min(s) > 0 for s in a.shapes)
    except (ValueError, AssertionError):
        ap.error("--shapes takes BxT pairs such as 32x128,32x512, got %r" % a.shapes)
    a.setups = [s.strip() for s in a.setups.split(",") if s.strip()]
    bad = [s for s in a.setups if s not in SETUPS]
    if bad:
        ap.error("unknown setup(s) %s; the setups are: %s" % (", ".join(bad), ", ".join(SETUPS)))
    if a.skip_compile:
        a.setups = [s for s in a.setups if s != "torch.compile bf16"]
    if a.dry_run:
        a.steps, a.songs, a.shapes = 2, min(a.songs, 16), [(2, 16)]
        a.setups = [s for s in a.setups if s != "torch.compile bf16"]
    return a


def main(argv=None):
    a = parse_args(argv)
    t_start = time.perf_counter()
    left = lambda: a.budget - (time.perf_counter() - t_start)  # noqa: E731
    import torch
    import transformers
    if a.dry_run:
        device, card, peak = "cpu", "CPU (dry run)", float("nan")
        conf = transformers.DistilBertConfig(num_labels=2, dim=32, hidden_dim=64, n_layers=2, n_heads=2,
                                             max_position_embeddings=512)
        head = "dry run on the CPU: tiny model, the numbers mean nothing"
    else:
        try:
            info = lyricnn.cuda_info()
        except lyricnn.LyricnnError as e:
            sys.exit("bench/gpu.py needs the CUDA backend and a GPU (or --dry-run): %s" % e)
        device, card = "cuda", info["devices"][0]["name"]
        peak = card_peak(card)
        conf = transformers.DistilBertConfig(num_labels=2)
        head = "CUDA runtime %d, driver %d" % (info["runtime_version"], info["driver_version"])
    torch.manual_seed(0)
    tmp = tempfile.mkdtemp()
    transformers.DistilBertForSequenceClassification(conf).save_pretrained(tmp)
    cfg = conf.to_dict()
    print("GPU %s (bf16/fp16 peak %.0f TFLOP/s); %s; torch %s, transformers %s, lyricnn %s" % (
        card, peak / 1e12, head, torch.__version__, transformers.__version__, lyricnn.__version__), flush=True)
    print("setups: %s; budget %s s" % (", ".join(a.setups), "%.0f" % a.budget if a.budget < 1e9 else "none"),
          flush=True)
    table = Table()
    rng = np.random.default_rng(0)

    def measure(work, batches, steps, fl_real, fl_pad):
        for name in a.setups:
            engine, prec, opt = SETUPS[name]
            need = COMPILE_NEEDS if opt is True else 15
            if left() < need:
                print("| %s | %s | skipped: %.0f s of the time budget left, the setup needs about %d |" % (
                    work, name, max(left(), 0), need), flush=True)
                continue
            try:
                dt, mem = (run_lyricnn(tmp, batches, steps, prec, opt, device) if engine == "lyricnn" else
                           run_torch(tmp, batches, steps, opt, device))
            except Exception as e:  # a failing setup is a line in the table, not the end of the run
                print("| %s | %s | FAILED: %s: %s |" % (work, name, type(e).__name__, str(e)[:200]), flush=True)
                continue
            n = len(batches[0][0]) * steps
            fl = fl_pad if (engine == "torch" and fl_pad is not None) else fl_real
            table.row(work, name, n / dt, fl_real * steps / dt / peak, fl * steps / dt / peak, mem)

    for B, T in a.shapes:
        batches = [(rng.integers(1000, 30000, (B, T)).astype(np.int32) % conf.vocab_size,
                    np.ones((B, T), np.int32), rng.integers(0, 2, B)) for _ in range(4)]
        measure("%dx%d" % (B, T), batches, a.steps, train_flops(cfg, [T] * B), None)
    texts = load_lyrics(a.songs) if a.songs else None
    if texts is None:
        print("(no lyrics under %s, or --songs 0: the real-lyrics epoch is left out)" % DATA, flush=True)
    else:
        from finetune import tokenizer  # bench/finetune.py's bert-base-uncased WordPiece

        B = 2 if a.dry_run else 32
        tok = tokenizer()
        seqs = [np.asarray(r) % conf.vocab_size
                for r in tok(texts, truncation=True, max_length=64 if a.dry_run else 512)["input_ids"]]
        y = rng.integers(0, 2, len(seqs))
        batches, real, padded = [], [], []
        for s in range(0, len(seqs) - B + 1, B):
            ids, mask = pad_batch(seqs[s:s + B])
            batches.append((ids.astype(np.int32), mask.astype(np.int32), y[s:s + B]))
            real.append([len(q) for q in seqs[s:s + B]])
            padded.append([ids.shape[1]] * B)
        n = len(batches)
        fl_real = sum(train_flops(cfg, r) for r in real) / n  # per step, on average
        fl_pad = sum(train_flops(cfg, p) for p in padded) / n
        measure("lyrics epoch (%d songs)" % (B * n), batches, n, fl_real, fl_pad)
    print("done in %.0f s" % (time.perf_counter() - t_start), flush=True)


if __name__ == "__main__":
    main()
