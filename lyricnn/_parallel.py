"""Fitted estimators in other processes (Dask, Spark, joblib, multiprocessing): load once, one call at a time.

A fitted estimator pickles as the files of save() (config.json, model.safetensors, the tokenizer files,
lyricnn_estimator.json), never as engine objects. Unpickling loads them; in one process the copies of one
fitted model (the same file bytes) share the loaded model, so a Dask worker that receives the estimator with
every task loads it once. Calls into one model are serialised with a lock (the engine runs one call per model
at a time), and on a Dask worker the engine takes the worker's thread count (not the cores of the machine,
nor the single thread Dask's nanny sets through OMP_NUM_THREADS): a worker with nthreads=T runs T engine
threads for the one prediction at a time, so the processes of a LocalCluster together use the cores once.
LYRICNN_NUM_THREADS overrides that count.
"""
import hashlib
import os
import sys
import threading
import weakref

__all__ = ["model_lock", "shared_load", "configure_worker_threads"]

_guard = threading.Lock()
_locks = weakref.WeakKeyDictionary()     # model -> Lock
_loaded = weakref.WeakValueDictionary()  # digest of the saved files -> _Loaded
_worker_threads_set = False
load_count = 0   # models loaded by unpickling in this process (tests and benchmarks read it)


def model_lock(model):
    """The lock that serialises calls into `model` (one per model object)."""
    lock = _locks.get(model)
    if lock is None:
        with _guard:
            lock = _locks.get(model)
            if lock is None:
                lock = _locks[model] = threading.Lock()
    return lock


class _Loaded:
    """What unpickling loads (shared by the estimators unpickled from the same bytes in one process)."""

    def __init__(self, model, tokenizer, spec):
        self.model, self.tokenizer, self.spec = model, tokenizer, spec


def files_digest(files):
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode("utf-8") + b"\0" + len(files[name]).to_bytes(8, "little"))
        h.update(files[name])
    return h.hexdigest()


def shared_load(digest, load):
    """The _Loaded for `digest`, calling load() -> (model, tokenizer, spec) only the first time in this process
    (while some estimator still holds it)."""
    with _guard:
        got = _loaded.get(digest)
    if got is not None:
        return got
    global load_count
    got = _Loaded(*load())
    with _guard:
        load_count += 1
        return _loaded.setdefault(digest, got)


def configure_worker_threads():
    """On a Dask worker, once per process: the engine's threads = LYRICNN_NUM_THREADS, else the worker's
    nthreads. Elsewhere nothing changes."""
    global _worker_threads_set
    if _worker_threads_set or "distributed" not in sys.modules:   # a worker has imported it already
        return
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError, AttributeError):
        return
    n = os.environ.get("LYRICNN_NUM_THREADS")
    try:
        n = int(n) if n else int(getattr(getattr(worker, "state", worker), "nthreads", 0) or worker.nthreads)
    except (TypeError, ValueError, AttributeError):
        return
    if n >= 1:
        from . import set_num_threads

        set_num_threads(n)
        _worker_threads_set = True
