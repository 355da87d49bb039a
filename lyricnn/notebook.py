"""What every notebook of notebooks/ sets up first, in one call (so the notebooks open with their workflow):

    import lyricnn.notebook
    nb = lyricnn.notebook.setup("Artist classification", datasets=["song_lyrics_21_artists"])
    nb.SMALL, nb.MODEL, nb.DEVICE, nb.SEED     # the settings
    ...
    nb.done()                                  # wall-clock time and the machine

setup() reads the settings from the environment: LYRICNN_NB_SMALL=1 (a quick run on small subsets with a tiny
random model; CI runs the notebooks that way), LYRICNN_NB_MODEL (a model name or directory; default
all-MiniLM-L6-v2 when installed), LYRICNN_NB_DEVICE ("auto", "cpu", "cuda"), LYRICNN_SHARED (the folder
holding datasets/; default ../shared/data beside the checkout). It checks that the data sets are there (a
DATA MISSING error saying where it looked), prints which lyricnn runs (and warns when it is not the
checkout that holds the notebook: an installed lyricnn in site-packages shadows it), the model, the device,
the engine threads and the machine. Paths are printed relative to the checkout, so that notebooks committed
with their outputs hold no paths of the machine that ran them.
"""
import os
import platform
import time
import warnings
from pathlib import Path

__all__ = ["setup", "Settings", "majority_baseline", "machine", "TINY_BERT"]

#: a tiny randomly initialised BERT for small runs of notebooks that need BERT's HF head
TINY_BERT = dict(model_type="bert", vocab_size=30522, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=512, max_position_embeddings=512, type_vocab_size=2, hidden_dropout_prob=0.1,
                 attention_probs_dropout_prob=0.1, initializer_range=0.02, layer_norm_eps=1e-12)


def _flag(name):
    return os.environ.get(name, "0").strip().lower() not in ("", "0", "false", "no")


def _checkout(start=None):
    """The lyricnn checkout holding `start` (default: the working directory), or None."""
    here = Path(start or Path.cwd()).resolve()
    return next((p for p in (here, *here.parents) if (p / "lyricnn" / "__init__.py").is_file()
                 and (p / "notebooks").is_dir()), None)


def _rel(path, root):
    """path relative to the checkout (../shared/data/... for the data beside it); absolute only elsewhere."""
    if root is not None:
        for p in (Path(os.path.abspath(path)), Path(path).resolve()):   # symbolic links kept, then resolved
            for base, prefix in ((root, ""), (root.parent, "../")):
                try:
                    return prefix + str(p.relative_to(base))
                except ValueError:
                    pass
    return str(Path(path).resolve())


def machine():
    """'Intel(R) Xeon(R) ... , 2 CPUs, Linux x86_64': the processor model, the CPUs and the system."""
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d CPUs, %s %s" % (model or "unknown CPU", os.cpu_count() or 0, platform.system(), platform.machine())


class Settings:
    """The notebook's settings (attributes in capitals, as the notebooks name them) and its clock."""

    def __init__(self, title, small, model, device, seed, data, root, spec):
        self.TITLE, self.SMALL, self.MODEL, self.DEVICE, self.SEED = title, small, model, device, seed
        self.DATA, self.ROOT, self.spec = data, root, spec
        self.t0 = time.perf_counter()

    def elapsed(self):
        return time.perf_counter() - self.t0

    def done(self):
        """Print the notebook's wall-clock time, the machine and the build (the notebook's last cell); the
        seconds are elapsed()."""
        import lyricnn

        info = lyricnn.build_info()
        s = self.elapsed()
        print("%s: %s run finished in %.1f min on %s; lyricnn %s (%s, BLAS %s, %d engine threads)"
              % (self.TITLE, "small" if self.SMALL else "full", s / 60, machine(), info["version"],
                 info["compiler"].split(" (")[0], info["blas"], lyricnn.get_num_threads()))


def setup(title, datasets=(), small_model="tiny-distilbert", seed=0):
    """Read the notebook settings from the environment, check the data, print what runs; returns Settings.

    datasets: the folders under datasets/ the notebook reads (a DATA MISSING error when one is absent).
    small_model: the model of small runs (a name or a config dict, e.g. TINY_BERT).
    """
    import lyricnn
    from . import datasets as _datasets
    from .models import resolve_model

    warnings.filterwarnings("ignore", message="IProgress not found")   # tqdm without ipywidgets
    small = _flag("LYRICNN_NB_SMALL")
    model = os.environ.get("LYRICNN_NB_MODEL") or (small_model if small else "auto")
    device = os.environ.get("LYRICNN_NB_DEVICE", "auto")
    root = _checkout()
    shared = _datasets.shared_dir(*datasets)
    spec = resolve_model(model)
    pkg = Path(lyricnn.__file__).resolve()
    print("%s: %s" % ("small run" if small else "full run", title))
    print("model:", spec.description)
    print("lyricnn %s from %s | device %s | %d engine threads | data %s"
          % (lyricnn.__version__, _rel(pkg, root), device, lyricnn.get_num_threads(),
             _rel(shared / "datasets", root)))
    if root is not None and root not in pkg.parents:
        warnings.warn("this notebook sits in the checkout %s, but `import lyricnn` found %s (an installed copy "
                      "shadows the checkout): the code and build you run are not this checkout's. `pip install -e "
                      "%s` (or uninstall the other copy) to use the checkout" % (root, pkg.parent, root),
                      UserWarning, stacklevel=2)
    return Settings(title, small, model, device, seed, shared / "datasets", root, spec)


def majority_baseline(y_train, y_test):
    """Accuracy of always predicting the most frequent training label on y_test (returned), printed with that
    baseline's macro F1 (the F1 of the one class it predicts over the number of classes), the yardstick for a
    model trained with balanced class weights, which trades accuracy on the large class for the small ones."""
    import numpy as np

    vals, counts = np.unique(np.asarray(y_train), return_counts=True)
    top = vals[np.argmax(counts)]
    acc = float(np.mean(np.asarray(y_test) == top))
    k = len(set(np.asarray(y_train).tolist()) | set(np.asarray(y_test).tolist()))
    print("majority-class baseline (always %r): test accuracy %.3f, macro F1 %.3f"
          % (top.item() if hasattr(top, "item") else top, acc, 2 * acc / (1 + acc) / k))
    return acc
