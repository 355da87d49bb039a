"""The last stage of tools/gpu_check.sh: which of the CUDA backend's build-time switches its GPU tests allow
flipping, read from pytest's junit XML (and the compute-sanitizer log), one plain line per switch.

    python tools/gpu_verdict.py tests.xml [more.xml ...] [--sanitizer sanitizer.log]

A switch may flip when every test behind it ran on the GPU and passed (none failed, errored or skipped), and
at least one did. CUDA_VERIFIED (lyricnn/_device.py: device="auto" picks the GPU) needs every other test of
the runs to have passed (a switch that stays off may fail its own tests: users only get it by asking), every
run to have left its results, and no compute-sanitizer error.
"""
import re
import sys
import xml.etree.ElementTree as ET

# switch: (where, the value now -> the value to flip to, a test-name pattern (id included), what it covers)
SWITCHES = [
    ("ATTENTION_DEFAULT", "csrc/cuda/attention.cu", '"simt" -> "auto"',
     r"test_attention_tc_|test_attention_fully_masked.*cuda-bf16",
     "the tensor-core attention vs SIMT and float64, training, the fully masked sequence"),
    ("GEMM_DEFAULT", "csrc/cuda/gemm_lt.cu", '"blas" -> "lt"', r"test_linear_lt_",
     "the cuBLASLt bias epilogue vs cuBLAS and float64, determinism, training"),
    ("FUSED_OPT_DEFAULT", "csrc/cuda/optimizer.cu", "0 -> 1",
     r"test_fused_optimizer_step|test_unscale_clip_and_the_fused_step.*cuda|test_adam_step_skips.*cuda",
     "the fused clip + Adam + weight-cast step, bit-identical to the separate passes"),
    ("EMBED_DEFAULT", "csrc/cuda/embedding.cu", '"serial" -> "sorted"',
     r"test_sorted_embedding_backward|test_embedding_plan.*cuda",
     "the embedding backward over id-sorted rows vs the serial kernel and float64"),
    ("DROPOUT_BITS_DEFAULT", "csrc/cuda/attention.cu", "0 -> 1", r"test_attention_dropout_bits",
     "the attention's dropout mask kept as bits from the forward, vs recomputing it"),
    ("FOLD_DEFAULT", "csrc/cuda/layernorm.cu", "0 -> 1", r"test_fold_layernorm_and_bias_act_backward",
     "the column sums folded into the LayerNorm and bias-activation backward passes"),
]
FP16 = (r"test_fp16_|test_half_precision_trains_close_to_fp32\[fp16|test_backend_ops.*cuda-f16",
        "precision='fp16' (f16 ops, loss scaling on the GPU)")


def read(xml_path):
    """[(name, outcome)] with outcome 'passed', 'failed', 'error' or 'skipped'."""
    out = []
    for tc in ET.parse(xml_path).getroot().iter("testcase"):
        name = "%s::%s" % (tc.get("classname", ""), tc.get("name", ""))
        kinds = {c.tag for c in tc}
        outcome = ("failed" if "failure" in kinds else "error" if "error" in kinds else
                   "skipped" if "skipped" in kinds else "passed")
        out.append((name, outcome))
    return out


def judge(cases, pattern):
    """(ok, n passed, [names not passed]) of the tests whose name matches pattern."""
    sel = [(n, o) for n, o in cases if re.search(pattern, n)]
    bad = [n for n, o in sel if o != "passed"]
    return bool(sel) and not bad, len(sel) - len(bad), bad


def sanitizer_state(path):
    try:
        text = open(path, errors="replace").read()
    except OSError:
        return "not run"
    m = re.search(r"ERROR SUMMARY: (\d+) error", text)
    if m:
        return "clean" if m.group(1) == "0" else "%s errors" % m.group(1)
    return "no summary (refused or stopped; see sanitizer.log)"


def main(argv):
    args, san_path = list(argv[1:]), None
    if "--sanitizer" in args:
        k = args.index("--sanitizer")
        san_path = args[k + 1] if k + 1 < len(args) else None
        del args[k:k + 2]
    if not args:
        sys.exit(__doc__)
    cases, missing = [], []
    for path in args:  # a run cut short leaves no file: its tests count as not run
        try:
            cases += read(path)
        except (OSError, ET.ParseError) as e:
            missing.append("%s (%s)" % (path, e))
    if missing:
        print("missing test results: %s" % "; ".join(missing))
    if not cases:
        print("no test results: no switch may flip; CUDA_VERIFIED stays False")
        return 1
    san = sanitizer_state(san_path) if san_path else "not run"
    total = len(cases)
    failed = [n for n, o in cases if o in ("failed", "error")]
    print("tests: %d run, %d passed, %d failed or errored, %d skipped; compute-sanitizer: %s" % (
        total, sum(o == "passed" for _, o in cases), len(failed), sum(o == "skipped" for _, o in cases), san))
    kept = []  # the patterns of the switches that stay off: their failures do not block CUDA_VERIFIED
    for name, where, flip, pattern, what in SWITCHES:
        ok, n, bad = judge(cases, pattern)
        if not ok:
            kept.append(pattern)
        if ok:
            print("FLIP %s in %s (%s): its %d tests passed (%s)" % (name, where, flip, n, what))
        else:
            print("KEEP %s in %s: %s" % (name, where, "no test of it ran" if not n and not bad else
                                          "%d of its tests did not pass: %s" % (len(bad), ", ".join(bad[:4]))))
    ok, n, bad = judge(cases, FP16[0])
    print("%s fp16: %s" % ("VERIFIED" if ok else "UNVERIFIED", "%d tests passed (%s; on this GPU's architecture: "
                                                                 "sm_75 itself stays unverified)" % (n, FP16[1])
                            if ok else "%d not passed: %s" % (len(bad), ", ".join(bad[:4])) if bad else "no test ran"))
    gpu_ran = sum(o == "passed" and ("cuda" in n or "test_cuda" in n) for n, o in cases)
    # the default paths (with the switches above flipped or kept) must all pass; a kept switch's own tests may fail
    blocking = [n for n in failed if not any(re.search(p, n) for p in kept)]
    san_ok = san in ("clean", "not run", "no summary (refused or stopped; see sanitizer.log)")
    if not blocking and not missing and gpu_ran > 0 and san_ok:
        print("FLIP CUDA_VERIFIED in lyricnn/_device.py (False -> True): %d of %d tests passed, %d on the GPU%s%s"
              % (total - len(failed), total, gpu_ran,
                 "" if not failed else "; the failures are the kept switches' own tests (those stay off)",
                 "" if san == "clean" else "; compute-sanitizer %s: say so in the notes" % san))
    else:
        why = ("%d tests failed (%s)" % (len(blocking), ", ".join(blocking[:4])) if blocking else
               "a test run left no results" if missing else
               "no GPU test passed" if not gpu_ran else "compute-sanitizer: %s" % san)
        print("KEEP CUDA_VERIFIED = False: %s" % why)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
