"""Training curves against the global step, and confusion matrices (matplotlib, imported lazily)."""
import numpy as np

__all__ = ["plot_history", "plot_confusion_matrix"]


def _pick_metric(df, metric):
    if metric is not None:
        col = metric if metric.startswith("val_") else "val_" + metric
        if col not in df.columns:
            raise ValueError("history has no column %r; it has %s" % (col, list(df.columns)))
        return col
    for c in ("val_accuracy", "val_f1_macro", "val_pearson_r", "val_rmse", "val_mae"):
        if c in df.columns and df[c].notna().any():
            return c
    return None


def plot_history(history, path=None, metric=None, smooth=0.9, title=None, figsize=(10, 4)):
    """Two panels against the global step: training loss (raw and exponentially smoothed) with the
    validation loss, and a validation metric (default: accuracy, else F1 / Pearson r / RMSE).

    history: an estimator's history_ DataFrame (or records). path: save a PNG there (the folder must
    exist). Returns the matplotlib Figure.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plot_history needs matplotlib: pip install matplotlib") from None
    import pandas as pd

    df = history if isinstance(history, pd.DataFrame) else pd.DataFrame.from_records(history)
    if len(df) == 0:
        raise ValueError("the history is empty; fit the estimator first")
    steps = df[df["loss"].notna()]
    evals = df[df["loss"].isna()] if "loss" in df else df.iloc[:0]
    mcol = _pick_metric(df, metric)
    fig, axes = plt.subplots(1, 2 if mcol else 1, figsize=figsize, squeeze=False)
    ax = axes[0, 0]
    if len(steps):
        ax.plot(steps["step"], steps["loss"], color="tab:blue", alpha=0.3, lw=0.8, label="train loss")
        if smooth and len(steps) > 2:
            sm, acc = [], None
            for v in steps["loss"].to_numpy(dtype=np.float64):
                acc = v if acc is None else smooth * acc + (1 - smooth) * v
                sm.append(acc)
            ax.plot(steps["step"], sm, color="tab:blue", lw=1.6, label="train loss (smoothed)")
    if "val_loss" in df.columns and evals["val_loss"].notna().any():
        ev = evals[evals["val_loss"].notna()]
        ax.plot(ev["step"], ev["val_loss"], "o-", color="tab:orange", label="validation loss")
    ax.set_xlabel("global step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    if mcol:
        ax2 = axes[0, 1]
        shown = [mcol]
        if metric is None and mcol == "val_accuracy" and "val_f1_macro" in df.columns:
            shown.append("val_f1_macro")   # classification: accuracy and macro F1 side by side
        for col, color in zip(shown, ("tab:green", "tab:red")):
            ev = df[df[col].notna()]
            ax2.plot(ev["step"], ev[col], "o-", color=color, label=col.replace("_", " "))
        ax2.set_xlabel("global step")
        ax2.set_ylabel(" / ".join(c[4:] for c in shown))
        ax2.grid(alpha=0.3)
        ax2.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def plot_confusion_matrix(cm, labels=None, normalize=False, ax=None, title=None, path=None, cmap="Blues",
                          figsize=None):
    """A confusion matrix (rows true, columns predicted, as evaluate() returns it) as a heat map with the
    counts written in the cells.

    labels: the class names in row order (default 0..K-1). normalize=True colours and writes each row as
    fractions of its true class (the recall per class on the diagonal). ax: draw into this matplotlib Axes;
    else a new figure. path: save a PNG there. Returns the Figure.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plot_confusion_matrix needs matplotlib: pip install matplotlib") from None
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError("cm must be a square (K, K) matrix, got shape %s" % (cm.shape,))
    k = cm.shape[0]
    labels = [str(v) for v in (range(k) if labels is None else labels)]
    if len(labels) != k:
        raise ValueError("%d labels for a %dx%d matrix" % (len(labels), k, k))
    shown = cm.astype(np.float64)
    if normalize:
        sums = shown.sum(axis=1, keepdims=True)
        shown = np.divide(shown, sums, out=np.zeros_like(shown), where=sums > 0)
    if ax is None:
        size = figsize or (1.6 + 0.75 * k, 1.2 + 0.65 * k)
        fig, ax = plt.subplots(figsize=(max(size[0], 3.6), max(size[1], 3.2)))
    else:
        fig = ax.figure
    im = ax.imshow(shown, cmap=cmap, vmin=0, vmax=1 if normalize else max(shown.max(), 1))
    ax.set_xticks(range(k))
    ax.set_xticklabels(labels, rotation=30 if max(len(v) for v in labels) > 4 else 0, ha="right")
    ax.set_yticks(range(k))
    ax.set_yticklabels(labels)
    hi = shown.max() if shown.size else 1
    for (i, j), v in np.ndenumerate(shown):
        text = ("%.2f" % v) if normalize else "%d" % cm[i, j]
        ax.text(j, i, text, ha="center", va="center", color="white" if v > 0.6 * hi else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or ("confusion matrix (rows sum to 1)" if normalize else "confusion matrix"))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig
