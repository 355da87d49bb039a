"""Evaluation metrics (numpy only): the numbers `evaluate()` reports."""
import numpy as np


def _as_1d(a, name):
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError("%s must be one-dimensional, got shape %s" % (name, a.shape))
    return a


def confusion_matrix(y_true, y_pred, labels):
    """(K, K) counts, rows = true label, columns = predicted label, in the order of `labels`."""
    y_true, y_pred = _as_1d(y_true, "y_true"), _as_1d(y_pred, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError("y_true and y_pred have different lengths (%d vs %d)" % (len(y_true), len(y_pred)))
    index = {lab: i for i, lab in enumerate(labels)}
    k = len(labels)
    cm = np.zeros((k, k), dtype=np.int64)
    try:
        t = np.fromiter((index[v] for v in y_true.tolist()), dtype=np.int64, count=len(y_true))
        p = np.fromiter((index[v] for v in y_pred.tolist()), dtype=np.int64, count=len(y_pred))
    except KeyError as e:
        raise ValueError("label %r is not one of labels=%r" % (e.args[0], list(labels))) from None
    np.add.at(cm, (t, p), 1)
    return cm


def classification_report(y_true, y_pred, labels=None):
    """accuracy, macro precision/recall/F1, per-class precision/recall/F1/accuracy/support, confusion.

    Per-class accuracy is the recall of that class (the share of its rows predicted right), as the
    homework workflows print it. Undefined ratios (no predictions of a class) count as 0, like
    scikit-learn's zero_division=0.
    """
    y_true, y_pred = _as_1d(y_true, "y_true"), _as_1d(y_pred, "y_pred")
    if labels is None:
        labels = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    labels = list(labels)
    cm = confusion_matrix(y_true, y_pred, labels)
    tp = np.diag(cm).astype(np.float64)
    pred_n = cm.sum(axis=0).astype(np.float64)
    true_n = cm.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(pred_n > 0, tp / pred_n, 0.0)
        recall = np.where(true_n > 0, tp / true_n, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    n = cm.sum()
    return {
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "precision_macro": float(precision.mean()) if len(labels) else 0.0,
        "recall_macro": float(recall.mean()) if len(labels) else 0.0,
        "f1_macro": float(f1.mean()) if len(labels) else 0.0,
        "per_class": {lab: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                            "accuracy": float(recall[i]), "support": int(true_n[i])}
                      for i, lab in enumerate(labels)},
        "labels": labels,
        "confusion_matrix": cm,
    }


def regression_report(y_true, y_pred):
    """MSE, RMSE, MAE and Pearson r."""
    y_true = _as_1d(y_true, "y_true").astype(np.float64)
    y_pred = _as_1d(y_pred, "y_pred").astype(np.float64)
    if len(y_true) != len(y_pred):
        raise ValueError("y_true and y_pred have different lengths (%d vs %d)" % (len(y_true), len(y_pred)))
    if len(y_true) == 0:
        raise ValueError("y_true is empty")
    err = y_pred - y_true
    mse = float(np.mean(err ** 2))
    st, sp = y_true.std(), y_pred.std()
    r = float(np.mean((y_true - y_true.mean()) * (y_pred - y_pred.mean())) / (st * sp)) if st > 0 and sp > 0 else float("nan")
    return {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": float(np.mean(np.abs(err))), "pearson_r": r}


def roc_auc(y_true, score):
    """Area under the ROC curve of a binary problem: the probability that a random positive row scores above
    a random negative one, ties counting one half (the Mann-Whitney U statistic over both counts; equal to
    scikit-learn's roc_auc_score). y_true: 0/1 or booleans (1/True is the positive class); score: the
    positive class's probability or logit. NaN when only one class is present, or when a score is NaN."""
    y_true = _as_1d(y_true, "y_true")
    score = _as_1d(score, "score").astype(np.float64)
    if len(y_true) != len(score):
        raise ValueError("y_true and score have different lengths (%d vs %d)" % (len(y_true), len(score)))
    vals = set(np.unique(y_true).tolist())
    if not vals <= {0, 1}:
        raise ValueError("y_true must hold 0/1 or booleans for roc_auc, got the values %s: pass "
                         "y_true == positive_label" % sorted(vals, key=str)[:5])
    pos = y_true.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0 or np.isnan(score).any():
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    ranks = np.empty(len(s), dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])   # tied runs get their average rank (1-based)
    ends = np.r_[starts[1:], len(s)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
