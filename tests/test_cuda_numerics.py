"""The CUDA kernels' float32 arithmetic re-enacted in numpy, where a case can be pinned without a GPU
(tests/test_cuda.py runs the kernels themselves on a GPU machine).

The attention backward recomputes each probability from the log-sum-exp the forward saved: p = exp(x - lse).
A query row whose keys are all masked scores -FLT_MAX everywhere (HF: s + finfo.min rounds to finfo.min), so
its softmax is uniform (1/L); the forward gets that right (running max m = -FLT_MAX, sum l = L), but the saved
lse = m + log(l) rounds back to -FLT_MAX, and exp(x - lse) = 1: the old backward made dQ, dK and dV of such a
sequence L times too large. The kernels now take p from att_prob / att_prob_exp2 (csrc/cuda/attention.cuh),
which give 1/L where lse == -FLT_MAX. These tests re-enact both forwards' online softmax (the SIMT kernels'
32-key tiles with exp, the tensor-core kernels' 64-key tiles with exp2) and both backward rules, and check
the fixed rule against the float64 softmax -- and that the old rule fails the same check (so the check can
tell them apart)."""
import math

import numpy as np
import pytest

import _backend_refs as R

F32 = np.float32
FLT_MAX = np.finfo(np.float32).max
LOG2E = F32(1.4426950408889634)


def forward_lse(scores, masked, tile, base2):
    """The saved lse of one query row, as the kernels compute it in float32: scores (L,) raw q.k, masked (L,)
    bool; the scaled score plus -FLT_MAX for a masked key, an online max/sum over tiles of `tile` keys."""
    with np.errstate(over="ignore"):  # a masked key with a very negative score overflows to -inf (weight 0)
        x = (scores.astype(F32) + np.where(masked, -FLT_MAX, F32(0)).astype(F32)).astype(F32)
    m, l = F32(-np.inf), F32(0)

    def ex(v):
        return np.exp2(v * LOG2E).astype(F32) if base2 else np.exp(v).astype(F32)

    with np.errstate(over="ignore", invalid="ignore"):
        for j0 in range(0, len(x), tile):
            xt = x[j0:j0 + tile]
            mn = F32(max(m, xt.max()))
            corr = ex(F32(m - mn))
            l = F32(l * corr + ex((xt - mn).astype(F32)).sum(dtype=F32))
            m = mn
        return F32(m + F32(math.log(l))), x


def backward_p(x, lse, rule, base2):
    """The backward's recomputed probabilities of the row: 'old' = exp(x - lse); 'fixed' = attention.cuh's
    att_prob / att_prob_exp2 (1/L where lse == -FLT_MAX)."""
    L = len(x)
    if rule == "fixed" and lse == -FLT_MAX:
        return np.full(L, F32(1) / F32(L), F32)
    with np.errstate(over="ignore"):
        return np.exp2((x - lse).astype(F32) * LOG2E).astype(F32) if base2 else np.exp((x - lse).astype(F32)).astype(F32)


def _case(L, masked_keys, seed):
    r = np.random.default_rng(seed)
    hs = 32
    q, k, v = (r.standard_normal((L, hs)) for _ in range(3))
    s = (q[:1] @ k.T / math.sqrt(hs))[0]  # query 0's scaled scores
    masked = np.zeros(L, bool)
    masked[masked_keys] = True
    dO = r.standard_normal(hs)
    return s, masked, v, dO


def _row_error(s, masked, v, dO, rule, tile, base2):
    """max relative error of the row's recomputed P and of its dV contribution P^T dO against float64"""
    lse, x = forward_lse(s, masked, tile, base2)
    p = backward_p(x, lse, rule, base2).astype(np.float64)
    ref = R._att_probs(s[None, :], (~masked).astype(np.int32))[0]
    dv, dv_ref = np.outer(p, dO), np.outer(ref, dO)
    return max(np.abs(p - ref).max() / np.abs(ref).max(), np.abs(dv - dv_ref).max() / np.abs(dv_ref).max())


KERNELS = [(32, False), (64, True)]  # (tile, exp2): the SIMT kernels, the tensor-core kernels
ROWS = {  # (L, masked keys)
    "fully masked, 80 keys": (80, slice(None)),
    "fully masked, 1 key": (1, slice(None)),
    "fully masked, 37 keys": (37, slice(None)),
    "half masked": (80, slice(40, None)),
    "one masked key": (37, [5]),
    "no mask": (65, []),
}


@pytest.mark.parametrize("kernel", KERNELS, ids=["simt", "tensor-core"])
@pytest.mark.parametrize("row", list(ROWS), ids=list(ROWS))
def test_attention_backward_probabilities_of_masked_rows(row, kernel):
    L, mk = ROWS[row]
    s, masked, v, dO = _case(L, mk, seed=L)
    tile, base2 = kernel
    assert _row_error(s, masked, v, dO, "fixed", tile, base2) < 1e-5
    old = _row_error(s, masked, v, dO, "old", tile, base2)
    if masked.all() and L > 1:  # the bug: p = 1 instead of 1/L, everything L times too large
        assert old > 0.5, "the re-enactment no longer shows the old rule's failure"
        lse, _ = forward_lse(s, masked, tile, base2)
        assert lse == -FLT_MAX  # what att_row_all_masked recognises
    else:  # elsewhere the two rules are the same arithmetic
        assert old < 1e-5


def test_saved_lse_of_rows_with_an_unmasked_key_is_not_the_marker():
    """att_row_all_masked(lse) must never fire on a row that has an unmasked key, even one far below the rest
    of the scores or at the extreme of bf16/float32 score ranges."""
    for scores in ([-1e4, -3e4, -5e4], [-1e30, -2e30, 0.0], [-3e38, -3e38, -3e38]):
        s = np.array(scores, F32)
        for tile, base2 in KERNELS:
            lse, _ = forward_lse(s, np.array([False, True, True]), tile, base2)
            assert lse != -FLT_MAX and np.isfinite(lse)
