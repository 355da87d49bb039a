"""Benchmark: LoRA fine-tuning on real lyrics (the 21-artist set), CPU fp32 or a GPU, in one run.

    python bench/lora.py [--songs 64] [--batch-size 16] [--max-length 512] [--steps 4] [--reps 2]
                         [--threads N] [--torch-full] [--quick] [--device cuda [--precision bf16|fp32|tf32]]

Setups, all on distilbert-base sizes (random init, the same initial weights), the same batches (the same songs
in the same order, dynamic padding), AdamW (lr 5e-5, weight decay 0.01 without biases / LayerNorm, clip
1.0), dropout 0.1 in training mode (the encoder's and the LoRA input's), the same thread count:
  1. lyricnn LoRA: SequenceClassifier(lora=dict(r=8, alpha=16, dropout=0.1), q_lin / v_lin), the head trains;
  2. lyricnn full fine-tuning: every tensor trains;
  3. torch+peft LoRA: peft.get_peft_model(DistilBertForSequenceClassification, LoraConfig(r=8, lora_alpha=16,
     lora_dropout=0.1, target_modules=["q_lin", "v_lin"], task_type=SEQ_CLS)), the head trains (peft's
     modules_to_save), torch.optim.AdamW over the trainable parameters;
  (--torch-full adds 4. torch+transformers full fine-tuning.)
With --device cuda every setup runs on the GPU: lyricnn with device="cuda" and --precision (bf16: bf16
activations and GEMMs, fp32 master weights and Adam state), torch with the model and batches on the GPU and,
for bf16, torch.autocast(bfloat16) around the forward (fp32 weights and AdamW state, the same split);
each timed step ends with torch.cuda.synchronize() (lyricnn's train_step returns the loss, a sync). The
table then adds torch's peak GPU memory of each torch setup. Without peft installed the torch+peft setup is
left out (said in the output).
Texts are tokenized once (lyricnn's bert-base-uncased WordPiece) outside the timings. Every setup's model is
built and runs one untimed warm-up step; then the setups take turns, one step each on the same batch, for
--steps batches, --reps times over (on a shared machine the load then weighs on all of them alike). Prints
a markdown table: the median time per step, trainable parameters, optimizer state (Adam's m and v, float32),
the saved file (adapter_model.safetensors for LoRA, model.safetensors for full fine-tuning) and the median
over the steps of each setup's time over lyricnn LoRA's time on the same batch.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import torch  # noqa: E402
import transformers  # noqa: E402

try:
    import peft  # noqa: E402
except ImportError:  # the GPU machine may lack it: the torch+peft setup is then left out
    peft = None

import lyricnn  # noqa: E402
from lyricnn.classifier import SequenceClassifier  # noqa: E402
from lyricnn.data import batch_order, pad_batch  # noqa: E402
from finetune import MODELS, load_songs, no_decay, tokenizer  # noqa: E402

R, ALPHA, P = 8, 16, 0.1
TARGETS = ["q_lin", "v_lin"]


class Lyricnn:
    """A lyricnn setup: SequenceClassifier.train_step (LoRA or full fine-tuning)."""

    def __init__(self, path, n_labels, lr, lora, device="cpu", precision=None):
        self.lora = lora
        self.m = SequenceClassifier.from_pretrained(path, num_labels=n_labels, seed=0, lora=dict(
            r=R, alpha=ALPHA, dropout=P, target_modules=TARGETS) if lora else None, device=device,
            precision=precision)
        self.m.configure_optimizer("adamw", lr=lr, weight_decay=0.01, max_grad_norm=1.0)

    def step(self, ids, mask, labels):
        self.m.train_step(ids, mask, labels)

    def sizes(self, out_dir):
        st = self.m.optimizer_state()
        if self.lora:
            self.m.save_adapter(out_dir)
            f = os.path.join(out_dir, "adapter_model.safetensors")
        else:
            self.m.save_pretrained(out_dir)
            f = os.path.join(out_dir, "model.safetensors")
        return self.m.num_parameters(trainable_only=True), st["m"].nbytes + st["v"].nbytes, os.path.getsize(f)


class Torch:
    """A torch setup: transformers' DistilBertForSequenceClassification (under peft's LoRA or not), AdamW over the
    trainable parameters, clip_grad_norm_."""

    def __init__(self, base, state0, lr, lora, device="cpu", precision=None):
        self.lora, self.device = lora, device
        self.autocast = device == "cuda" and precision == "bf16"
        model = transformers.DistilBertForSequenceClassification(base.config)
        model.load_state_dict(state0)
        model.to(device)
        if lora:
            model = peft.get_peft_model(model, peft.LoraConfig(task_type=peft.TaskType.SEQ_CLS, r=R, lora_alpha=ALPHA,
                                                               lora_dropout=P, target_modules=TARGETS))
        model.train()
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        groups = [{"params": [p for n, p in named if not no_decay(n)], "weight_decay": 0.01},
                  {"params": [p for n, p in named if no_decay(n)], "weight_decay": 0.0}]
        self.model, self.opt, self.params = model, torch.optim.AdamW(groups, lr=lr), [p for _, p in named]

    def step(self, ids, mask, labels):
        self.opt.zero_grad(set_to_none=True)
        dev = self.device
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
            out = self.model(input_ids=torch.from_numpy(ids).to(dev), attention_mask=torch.from_numpy(mask).to(dev),
                             labels=torch.from_numpy(labels).to(dev))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        if dev == "cuda":
            torch.cuda.synchronize()

    def sizes(self, out_dir):
        opt_bytes = sum(v.nbytes for s in self.opt.state.values() for k, v in s.items()
                        if k in ("exp_avg", "exp_avg_sq"))
        self.model.save_pretrained(out_dir)
        f = os.path.join(out_dir, "adapter_model.safetensors" if self.lora else "model.safetensors")
        return sum(p.numel() for p in self.params), opt_bytes, os.path.getsize(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--songs", type=int, default=64)
    ap.add_argument("--artists", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--steps", type=int, default=4, help="timed batches per round (default 4)")
    ap.add_argument("--model", choices=sorted(MODELS), default="distilbert-base")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--reps", type=int, default=2, help="rounds over the timed batches (default 2)")
    ap.add_argument("--torch-full", action="store_true", help="also time torch+transformers full fine-tuning")
    ap.add_argument("--quick", action="store_true", help="a short run: batch 8, max_length 128, the small model")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where every setup runs (default cpu)")
    ap.add_argument("--precision", choices=("bf16", "fp32", "tf32"), default="bf16",
                    help="with --device cuda: lyricnn's precision, and torch autocast(bfloat16) for bf16 (default bf16)")
    args = ap.parse_args()
    dev, prec = args.device, (args.precision if args.device == "cuda" else None)
    if dev == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = prec == "tf32"
        torch.backends.cudnn.allow_tf32 = prec == "tf32"
    if args.quick:
        args.batch_size, args.max_length, args.model, args.steps = 8, 128, "small", 2

    torch.set_num_threads(args.threads)
    lyricnn.set_num_threads(args.threads)
    texts, labels, artists = load_songs(max(args.songs, args.batch_size * (args.steps + 1)), args.artists)
    tok = tokenizer()
    seqs = [np.asarray(s, np.int64) for s in tok(texts, truncation=True, max_length=args.max_length)["input_ids"]]
    lengths = np.array([len(s) for s in seqs])
    batches = batch_order(lengths, args.batch_size, shuffle=True, seed=0)
    batches = [b for b in batches if len(b) == args.batch_size][:args.steps + 1]
    warm, timed = batches[0], batches[1:]
    torch.manual_seed(0)
    conf = transformers.DistilBertConfig(num_labels=len(artists), **MODELS[args.model])
    base = transformers.DistilBertForSequenceClassification(conf)
    state0 = {k: v.clone() for k, v in base.state_dict().items()}
    tmp = tempfile.mkdtemp(prefix="lyricnn_bench_lora_")
    base.save_pretrained(os.path.join(tmp, "base"))
    bl = [len(seqs[i]) for b in timed for i in b]
    print("lyrics: %d songs of %d artists, batch %d, max_length %d, %d timed steps (tokens/song in them: median %d, "
          "max %d)" % (len(texts), len(artists), args.batch_size, args.max_length, len(timed), np.median(bl), max(bl)))
    print("model: DistilBertForSequenceClassification %s (%.1fM params), random init; LoRA r=%d alpha=%d dropout %.1f "
          "on %s; threads=%d; torch %s, transformers %s, peft %s, lyricnn %s (BLAS %s); device %s%s" % (
              args.model, sum(p.numel() for p in base.parameters()) / 1e6, R, ALPHA, P, "/".join(TARGETS), args.threads,
              torch.__version__, transformers.__version__, peft.__version__ if peft else "not installed",
              lyricnn.__version__, lyricnn.build_info().get("blas"), dev,
              " (%s, %s)" % (torch.cuda.get_device_name(), prec) if dev == "cuda" else ""))
    if peft is None:
        print("peft is not installed: the torch+peft setup is left out")
    print()
    path = os.path.join(tmp, "base")
    ref = "lyricnn LoRA (r=%d, q_lin/v_lin)" % R
    setups = [(ref, lambda: Lyricnn(path, len(artists), args.lr, True, dev, prec)),
              ("lyricnn full fine-tuning", lambda: Lyricnn(path, len(artists), args.lr, False, dev, prec))]
    if peft is not None:
        setups.append(("torch+peft LoRA (r=%d, q_lin/v_lin)" % R, lambda: Torch(base, state0, args.lr, True, dev, prec)))
    if args.torch_full or (dev == "cuda" and peft is None):
        setups.append(("torch+transformers full fine-tuning", lambda: Torch(base, state0, args.lr, False, dev, prec)))
    names = [n for n, _ in setups]
    runs, peak = {}, {}
    for name, make in setups:  # every model built and warmed up (one untimed step) before any timing
        if dev == "cuda":
            torch.cuda.reset_peak_memory_stats()
        runs[name] = make()
        runs[name].step(*pad_batch([seqs[i] for i in warm]), labels[warm])
        if dev == "cuda" and name.startswith("torch"):
            peak[name] = torch.cuda.max_memory_allocated() / 2 ** 30
    times = {n: [] for n in names}
    for r in range(args.reps):  # round robin, one step each: all setups see the same machine load
        for b in timed:
            ids, mask = pad_batch([seqs[i] for i in b])
            for name in names:
                t0 = time.perf_counter()
                runs[name].step(ids, mask, labels[b])
                times[name].append(time.perf_counter() - t0)
        print("  rep %d: %s" % (r + 1, ", ".join("%s %.2f s" % (n.split(" (")[0], np.mean(times[n][-len(timed):]))
                                                 for n in names)), flush=True)
    t = {n: np.asarray(v) for n, v in times.items()}
    print()
    unit, scale = ("ms", 1e3) if dev == "cuda" else ("s", 1.0)
    mem = " torch peak GPU memory |" if dev == "cuda" else ""
    print("| setup | %s / step (median) | trainable params | optimizer state | saved file | time / lyricnn LoRA time |%s"
          % (unit, mem))
    print("|---|---:|---:|---:|---:|---:|" + ("---:|" if mem else ""))
    for k, name in enumerate(names):
        n, ob, fs = runs[name].sizes(os.path.join(tmp, "out%d" % k))
        ratio = np.median(t[name] / t[ref])  # of the same steps, timed back to back
        extra = (" %s |" % ("%.2f GiB" % peak[name] if name in peak else "-")) if mem else ""
        print("| %s | %.2f | %s | %.1f MB | %.2f MB | %.2fx |%s" % (name, scale * np.median(t[name]), "{:,}".format(n),
                                                                    ob / 1e6, fs / 1e6, ratio, extra))


if __name__ == "__main__":
    main()
