"""Benchmark: one training epoch of the LSTM baseline on the 3-artist lyrics, lyricnn vs torch (CPU fp32), one run.

    python bench/lstm.py [--threads N] [--reps R] [--songs N] [--max-length 400] [--hidden-size 128]
                         [--embedding-dim 500] [--num-layers 2] [--batch-size 64] [--bidirectional]
                         [--device cuda [--precision fp32|bf16|tf32]]

The assignment's setup: the Taylor Swift, Drake and Beyonce songs of ../shared/data/datasets/
song_lyrics_21_artists (1148 songs), a word vocabulary of every word in them (lyricnn.WordVocab), each song
cut to --max-length words (400: the length the GPU figure of issue 12 was taken at), embedding 500, 2 x LSTM
128, Linear to 3 classes, batches of 64 padded to their longest song, Adam (lr 1e-3), gradient clipping at 5,
cross-entropy. Setups, from the same initial weights, on the same batches in the same order, at the same
thread count:
  1. torch, packed: nn.Embedding(padding_idx=0) -> pack_padded_sequence(enforce_sorted=False) -> nn.LSTM ->
     h_n -> nn.Linear: lyricnn's semantics (padding never enters the recurrence);
  2. torch, padded: the same modules on the padded batch, the output at each song's last word taken (the
     same numbers for a one-direction LSTM; every padded position is computed; with --bidirectional the
     reverse direction reads the padding, so its numbers differ);
  3. lyricnn: LSTMNet.train_step (forward, loss, backward through time, clipping, Adam in C).
torch runs with torch.set_flush_denormal(True) (as lyricnn's GEMMs flush denormals): without it its
backward through 400 steps slows down on denormal gradients. One untimed warm-up step per setup; with
--reps R the setups alternate R times and each one's best epoch is reported. Prints a markdown table: epoch
seconds, ms per step, songs/s, token positions the LSTM ran (real words only, or padded), the epoch's mean
loss, and each setup's time over lyricnn's.
With --device cuda both run on the GPU: torch's nn.LSTM on cuDNN (fp32, or TF32 GEMMs with --precision tf32,
or under torch.autocast(bfloat16) with bf16), lyricnn's LSTMNet with device="cuda" and that precision; each
torch step ends with torch.cuda.synchronize() (lyricnn's train_step returns the loss, a sync).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

import lyricnn  # noqa: E402
from lyricnn.data import batch_order, pad_batch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("LYRICNN_SHARED", os.path.join(HERE, "..", "..", "shared", "data"))
ARTISTS = ("TaylorSwift", "Drake", "Beyonce")


def load_songs(n_songs=None, seed=0):
    import pandas as pd
    d = os.path.join(DATA, "datasets", "song_lyrics_21_artists")
    frames = []
    for a in ARTISTS:
        p = os.path.join(d, a + ".csv")
        if not os.path.isfile(p):
            sys.exit("%s not found (set LYRICNN_SHARED to the shared data directory)" % p)
        frames.append(pd.read_csv(p, usecols=["Artist", "Lyric"]))
    songs = pd.concat(frames, ignore_index=True).dropna(subset=["Lyric"])
    songs = songs[songs["Lyric"].str.strip() != ""].drop_duplicates(subset=["Lyric"]).reset_index(drop=True)
    if n_songs:
        songs = songs.sample(n=min(n_songs, len(songs)), random_state=seed).reset_index(drop=True)
    labels = songs["Artist"].astype("category").cat.codes.to_numpy().astype(np.int64)
    return songs["Lyric"].tolist(), labels


class TorchLSTM(torch.nn.Module):
    def __init__(self, V, E, H, L, bidirectional, K, packed):
        super().__init__()
        self.embedding = torch.nn.Embedding(V, E, padding_idx=0)
        self.lstm = torch.nn.LSTM(E, H, num_layers=L, bidirectional=bidirectional, batch_first=True)
        self.fc = torch.nn.Linear((2 if bidirectional else 1) * H, K)
        self.packed = packed

    def forward(self, ids, lengths):
        x = self.embedding(ids)
        if self.packed:
            _, (h, _) = self.lstm(torch.nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                                                          enforce_sorted=False))
            last = torch.cat([h[-2], h[-1]], 1) if self.lstm.bidirectional else h[-1]
        else:
            out, _ = self.lstm(x)
            last = out[torch.arange(len(lengths), device=lengths.device), lengths - 1]
        return self.fc(last)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--songs", type=int, default=None, help="a random subset of the songs (default: all)")
    ap.add_argument("--max-length", type=int, default=400, help="words per song (0: whole songs)")
    ap.add_argument("--embedding-dim", type=int, default=500)
    ap.add_argument("--hidden-size", type=int, default=128)
    ap.add_argument("--num-layers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--bidirectional", action="store_true")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--clip", type=float, default=5.0)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where both run (default cpu)")
    ap.add_argument("--precision", choices=("fp32", "bf16", "tf32"), default="fp32",
                    help="with --device cuda (default fp32: cuDNN's and lyricnn's exact mode)")
    a = ap.parse_args()
    dev = a.device
    prec = a.precision if dev == "cuda" else None
    if dev == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = prec == "tf32"
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    lyricnn.set_num_threads(a.threads)

    texts, labels = load_songs(a.songs)
    vocab = lyricnn.WordVocab.build(texts)
    rows = vocab(texts, a.max_length or None)
    lengths = np.array([len(r) for r in rows])
    keep = np.flatnonzero(lengths > 0)  # torch's pack_padded_sequence refuses empty songs
    rows, lengths, labels = [rows[i] for i in keep], lengths[keep], labels[keep]
    batches = []
    for idx in batch_order(lengths, a.batch_size, shuffle=True, seed=[0, 0]):
        ids, mask = pad_batch([rows[i] for i in idx])
        lens = mask.sum(1)
        batches.append((ids, lens, labels[idx]))
    K = int(labels.max()) + 1
    real = int(sum(b[1].sum() for b in batches))
    padded = int(sum(b[0].size for b in batches))
    print("%d songs, %d words in the vocabulary, %d batches of %d, %d real words (%d padded positions), %d threads, "
          "torch %s, %s, device %s%s" % (len(rows), len(vocab), len(batches), a.batch_size, real, padded, a.threads,
                                         torch.__version__, lyricnn.build_info()["blas"], dev,
                                         " (%s, %s)" % (torch.cuda.get_device_name(), prec) if dev == "cuda" else ""))

    net = lyricnn.LSTMNet(len(vocab), embedding_dim=a.embedding_dim, hidden_size=a.hidden_size,
                          num_layers=a.num_layers, num_labels=K, bidirectional=a.bidirectional, seed=0, device=dev,
                          precision=prec)
    init = {k: v.copy() for k, v in net.state_dict().items()}

    def lyricnn_epoch(bs):
        net.load_state_dict(init)
        net.configure_optimizer("adam", lr=a.lr, max_grad_norm=a.clip)
        return [net.train_step(ids, lens, y) for ids, lens, y in bs]

    def torch_epoch(packed):
        m = TorchLSTM(len(vocab), a.embedding_dim, a.hidden_size, a.num_layers, a.bidirectional, K, packed).to(dev)

        def run(bs):
            m.load_state_dict({k: torch.from_numpy(v) for k, v in init.items()})
            opt = torch.optim.Adam(m.parameters(), lr=a.lr)
            out = []
            for ids, lens, y in bs:
                opt.zero_grad()
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=prec == "bf16"):
                    logits = m(torch.from_numpy(ids).to(dev), torch.from_numpy(lens).to(dev))
                loss = torch.nn.functional.cross_entropy(logits.float(), torch.from_numpy(y).to(dev))
                loss.backward()
                torch.nn.utils.clip_grad_norm_(m.parameters(), a.clip)
                opt.step()
                out.append(loss.item())  # a sync
            return out
        return run

    setups = [("torch, packed (pack_padded_sequence)", torch_epoch(True), real),
              ("torch, padded to the longest", torch_epoch(False), padded),
              ("lyricnn (packed)", lyricnn_epoch, real)]
    for _, run, _ in setups:  # warm-up
        run(batches[:1])
    best = {name: float("inf") for name, _, _ in setups}
    losses = {}
    for rep in range(a.reps):
        for name, run, _ in setups:
            t = time.perf_counter()
            losses[name] = run(batches)
            best[name] = min(best[name], time.perf_counter() - t)
            print("  rep %d: %-38s %8.2f s" % (rep + 1, name, time.perf_counter() - t), flush=True)
    ref = best["lyricnn (packed)"]
    print()
    print("| setup | epoch s | ms / step | songs/s | LSTM positions | mean loss | time / lyricnn |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, _, positions in setups:
        s = best[name]
        print("| %s | %.1f | %.0f | %.1f | %d | %.4f | %.2fx |" % (name, s, 1e3 * s / len(batches), len(rows) / s,
                                                                 positions, np.mean(losses[name]), s / ref))
    first = [losses[n][0] for n, _, _ in setups]
    print("\nfirst-step losses (same weights, same batch): " + ", ".join("%.6f" % x for x in first))


if __name__ == "__main__":
    main()
