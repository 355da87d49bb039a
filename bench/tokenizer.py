"""Tokenizer throughput: lyricnn vs Hugging Face tokenizers (Rust) on the lyrics corpus, in one run.

    python bench/tokenizer.py [--repeat 3] [--threads N]

Modes: one text at a time, a batch on 1 thread, a batch on all threads (lyricnn.set_num_threads;
tokenizers' encode_batch with RAYON_NUM_THREADS / its own pool). Both produce input_ids,
token_type_ids and attention_mask (lyricnn: numpy arrays; HF: Encoding objects), truncation off.
Then every window of every text (truncation at --max-length with --stride, return_overflowing_tokens:
lyricnn's rows with overflow_to_sample_mapping; tokenizers' Encodings with their .overflowing), on 1 and
all threads, and its time against the untruncated batch's (the same tokens are read either way).
Uses ../shared/data/datasets/song_lyrics_21_artists when present, else the bundled public-domain text.
"""
import argparse
import glob
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_texts():
    shared = pathlib.Path(os.environ.get("LYRICNN_SHARED", ROOT.parent / "shared" / "data"))
    files = sorted(glob.glob(str(shared / "datasets" / "song_lyrics_21_artists" / "*.csv")))
    if files:
        import csv
        csv.field_size_limit(1 << 30)
        texts = []
        for f in files:
            with open(f, encoding="utf-8", newline="") as fh:
                r = csv.DictReader(fh)
                for row in r:
                    t = row.get("Lyric") or row.get("lyrics")
                    if t:
                        texts.append(t)
        return texts, "song_lyrics_21_artists (%d files)" % len(files)
    # fallback: the bundled public-domain poems
    from lyricnn import datasets
    return datasets.load_poets()["text"], "bundled pd_poets"


def timeit(fn, repeat):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--single-limit", type=int, default=0, help="texts for the one-at-a-time mode (0: all)")
    ap.add_argument("--max-length", type=int, default=512, help="window length of the windows rows")
    ap.add_argument("--stride", type=int, default=128, help="overlap of consecutive windows")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

    import lyricnn
    from lyricnn.tokenizer import Tokenizer
    try:
        import tokenizers
    except ImportError:
        tokenizers = None

    texts, source = load_texts()
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    tok = Tokenizer.from_pretrained("bert-base-uncased")
    hf = None
    if tokenizers is not None:
        hf_json = ROOT.parent / "shared" / "data" / "distilbert-base-uncased" / "tokenizer.json"
        if hf_json.exists():
            hf = tokenizers.Tokenizer.from_file(str(hf_json))
        else:
            tok.save_pretrained("/tmp/lyricnn_bench_tok")
            hf = tokenizers.Tokenizer.from_file("/tmp/lyricnn_bench_tok/tokenizer.json")
    single = texts if not args.single_limit else texts[:args.single_limit]
    sbytes = sum(len(t.encode("utf-8")) for t in single)

    ntok = sum(len(x) for x in tok(texts)["input_ids"])
    if hf is not None:
        assert [len(e.ids) for e in hf.encode_batch(texts[:200])] == [len(x) for x in tok(texts[:200])["input_ids"]]
    stok = sum(len(x) for x in tok(single)["input_ids"])

    rows = []

    def lnn_single():
        for t in single:
            tok(t)

    def lnn_batch():
        return tok(texts)

    def hf_single():
        for t in single:
            hf.encode(t)

    def hf_batch():
        hf.no_truncation()
        return hf.encode_batch(texts)

    L, S = args.max_length, args.stride

    def lnn_windows():
        return tok(texts, truncation=True, max_length=L, stride=S, return_overflowing_tokens=True)

    def hf_windows():
        hf.enable_truncation(L, stride=S)
        try:
            return hf.encode_batch(texts)
        finally:
            hf.no_truncation()

    nwin = len(lnn_windows()["overflow_to_sample_mapping"])
    if hf is not None:
        assert sum(1 + len(e.overflowing) for e in hf_windows()) == nwin
    win = "windows %d/%d" % (L, S)
    modes = [("one text at a time", 1, lnn_single, hf_single, sbytes, stok),
             ("batch, 1 thread", 1, lnn_batch, hf_batch, nbytes, ntok),
             ("batch, %d threads" % args.threads, args.threads, lnn_batch, hf_batch, nbytes, ntok),
             ("batch, %s, 1 thread" % win, 1, lnn_windows, hf_windows, nbytes, ntok),
             ("batch, %s, %d threads" % (win, args.threads), args.threads, lnn_windows, hf_windows, nbytes, ntok)]
    n0 = lyricnn.get_num_threads()
    for name, nth, fl, fh, nb, nt in modes:
        lyricnn.set_num_threads(nth)
        tl, _ = timeit(fl, args.repeat)
        th = None
        if hf is not None:
            # tokenizers' pool size is fixed at first use: run it in a subprocess-free way by toggling parallelism
            os.environ["TOKENIZERS_PARALLELISM"] = "true" if nth > 1 else "false"
            th, _ = timeit(fh, args.repeat)
        rows.append((name, nb / tl / 1e6, nt / tl / 1e6, nb / th / 1e6 if th else None, nt / th / 1e6 if th else None))
    lyricnn.set_num_threads(n0)

    print("corpus: %s, %d texts, %.1f MB, %d tokens (%d windows of max_length=%d, stride=%d); lyricnn %s; "
          "tokenizers %s; %d cores" % (source, len(texts), nbytes / 1e6, ntok, nwin, L, S, lyricnn.__version__,
                                       getattr(tokenizers, "__version__", "absent"), os.cpu_count() or 1))
    print()
    print("| mode | lyricnn MB/s | lyricnn Mtok/s | HF MB/s | HF Mtok/s | speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, lmb, ltk, hmb, htk in rows:
        if hmb:
            print("| %s | %.1f | %.2f | %.1f | %.2f | %.1fx |" % (name, lmb, ltk, hmb, htk, lmb / hmb))
        else:
            print("| %s | %.1f | %.2f | - | - | - |" % (name, lmb, ltk))
    print()
    print("windows / untruncated time: lyricnn %.2fx (1 thread), %.2fx (%d threads)%s"
          % (rows[1][1] / rows[3][1], rows[2][1] / rows[4][1], args.threads,
             "; HF %.2fx, %.2fx" % (rows[1][3] / rows[3][3], rows[2][3] / rows[4][3]) if rows[3][3] else ""))
    if args.threads > 1:
        print()
        print("lyricnn batch scaling: %.2fx on %d threads (%.2f per thread)"
              % (rows[2][1] / rows[1][1], args.threads, rows[2][1] / rows[1][1] / args.threads))
        if rows[2][3]:
            print("HF batch scaling: %.2fx" % (rows[2][3] / rows[1][3]))


if __name__ == "__main__":
    main()
