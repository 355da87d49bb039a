"""What evaluate() returns: the metrics dict, with a readable repr, print() and plot_confusion_matrix().

    rep = clf.evaluate(X_test, y_test)
    rep                          # in a notebook or the REPL: the metrics table (the repr)
    rep.print()                  # the same in a script
    rep["accuracy"], rep["per_class"]["Drake"]["f1"]     # still a dict
    rep.plot_confusion_matrix()  # matplotlib (lyricnn.plotting.plot_confusion_matrix)
    rep.to_frame()               # per-class table as a pandas DataFrame
"""
import numpy as np

__all__ = ["Report"]


class Report(dict):
    """A dict of metrics (the keys evaluate() documents) that prints as a table.

    Classification: accuracy, precision_macro, recall_macro, f1_macro, loss, per_class ({label: precision,
    recall, f1, accuracy, support}), labels, confusion_matrix (rows true, columns predicted). Regression: mse,
    rmse, mae, pearson_r."""

    def __init__(self, metrics, title=None):
        super().__init__(metrics)
        self.title = title

    @property
    def task(self):
        return "classify" if "confusion_matrix" in self else "regress"

    def lines(self):
        """The table as a list of lines (what print() and repr show)."""
        out = [self.title] if self.title else []
        if self.task == "regress":
            out.append("mse %.5f | rmse %.5f | mae %.5f | pearson r %.4f" % (
                self["mse"], self["rmse"], self["mae"], self["pearson_r"]))
            return out
        head = "accuracy %.4f | macro precision %.4f recall %.4f F1 %.4f" % (
            self["accuracy"], self["precision_macro"], self["recall_macro"], self["f1_macro"])
        if "loss" in self:
            head += " | loss %.4f" % self["loss"]
        if "roc_auc" in self:
            head += " | ROC AUC %.4f" % self["roc_auc"]
        out.append(head)
        per = self.get("per_class") or {}
        w = max([len(str(k)) for k in per] + [5])
        out.append("  %-*s %9s %9s %9s %9s %8s" % (w, "class", "precision", "recall", "f1", "accuracy", "support"))
        for lab, m in per.items():
            out.append("  %-*s %9.4f %9.4f %9.4f %9.4f %8d" % (w, lab, m["precision"], m["recall"], m["f1"],
                                                                m.get("accuracy", m["recall"]), m["support"]))
        cm = np.asarray(self["confusion_matrix"])
        labels = [str(v) for v in self.get("labels", range(len(cm)))]
        out.append("confusion matrix (rows true, columns predicted):")
        cw = max([len(v) for v in labels] + [len(str(int(cm.max()))) if cm.size else 1, 4])
        out.append("  %-*s " % (w, "") + " ".join("%*s" % (cw, v[:cw]) for v in labels))
        for lab, row in zip(labels, cm):
            out.append("  %-*s " % (w, lab) + " ".join("%*d" % (cw, v) for v in row))
        return out

    def __repr__(self):
        return "\n".join(self.lines())

    def _repr_pretty_(self, p, cycle):   # IPython / Jupyter text display
        p.text(repr(self))

    def print(self, file=None):
        """Print the metrics table."""
        print(repr(self), file=file)

    def to_frame(self):
        """Per-class metrics (classification) or the metrics (regression) as a pandas DataFrame."""
        import pandas as pd

        if self.task == "regress":
            return pd.DataFrame([{k: self[k] for k in ("mse", "rmse", "mae", "pearson_r") if k in self}])
        return pd.DataFrame(self["per_class"]).T

    def plot_confusion_matrix(self, normalize=False, ax=None, title=None, path=None, cmap="Blues"):
        """The confusion matrix as a matplotlib heat map (see lyricnn.plotting.plot_confusion_matrix)."""
        if self.task != "classify":
            raise ValueError("plot_confusion_matrix is for a classifier's report; this one holds regression metrics")
        from .plotting import plot_confusion_matrix

        return plot_confusion_matrix(self["confusion_matrix"], self.get("labels"), normalize=normalize, ax=ax,
                                     title=title, path=path, cmap=cmap)
