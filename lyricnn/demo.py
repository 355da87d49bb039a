"""`make demo` / `python -m lyricnn demo`: the main job on bundled, public-domain data.

Until the fine-tuning engine lands this runs the tokenizer over the bundled poems and prints a short
report: throughput against the one-text-at-a-time path, length statistics, and sample tokenizations.
"""
import time

import numpy as np

from . import build_info, datasets, get_num_threads
from .tokenizer import Tokenizer


def main():
    info = build_info()
    print("lyricnn %s | %s | OpenMP %s, %d threads | BLAS %s" % (
        info["version"], info["compiler"], "on" if info["openmp"] else "off", info["num_threads"], info["blas"]))
    data = datasets.load_poets()
    texts, labels = data["text"], data["label"]
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    print("bundled data: %d public-domain poems by %d poets (%.2f MB)" % (len(texts), len(set(labels)), nbytes / 1e6))

    tok = Tokenizer.from_pretrained("distilbert-base-uncased")
    t0 = time.perf_counter()
    enc = tok(texts, truncation=True, max_length=512, padding="longest")
    t_batch = time.perf_counter() - t0
    t0 = time.perf_counter()
    for t in texts[:200]:
        tok(t, truncation=True, max_length=512)
    t_single = (time.perf_counter() - t0) * len(texts) / 200

    lengths = enc["attention_mask"].sum(axis=1)
    full = [len(x) for x in tok(texts)["input_ids"]]
    print("tokenized in %.3f s as one batch (%.1f MB/s, %d threads); one text at a time: ~%.3f s" % (
        t_batch, nbytes / 1e6 / t_batch, get_num_threads(), t_single))
    print("tokens per poem: mean %.0f, median %.0f, max %d; %.1f%% exceed 512 and were truncated" % (
        np.mean(full), np.median(full), max(full), 100.0 * np.mean(np.array(full) > 512)))
    print("padded batch: input_ids %s %s, %.1f%% of positions are padding" % (
        enc["input_ids"].shape, enc["input_ids"].dtype, 100.0 * (1 - lengths.sum() / enc["input_ids"].size)))
    by_poet = {}
    for lab, n in zip(labels, full):
        by_poet.setdefault(lab, []).append(n)
    for lab in sorted(by_poet):
        print("  %-20s %4d poems, mean %4.0f tokens" % (lab, len(by_poet[lab]), np.mean(by_poet[lab])))
    print("\nsample tokenizations:")
    rng = np.random.default_rng(0)
    for i in rng.choice(len(texts), 3, replace=False):
        first = texts[i].strip().splitlines()[0]
        print("  [%s] %r" % (labels[i], first))
        print("    -> %s" % " ".join(tok.tokenize(first)))
    return 0
