"""Data helpers for training: class weights, stratified splits, batches with dynamic padding."""
import numpy as np


def class_weights(y, classes=None, mode="balanced"):
    """Per-class loss weights, in the order of `classes` (default: sorted unique labels).

    mode='balanced' gives n_samples / (n_classes * count(class)), scikit-learn's formula, so rare
    artists weigh more. A dict {class: weight} is returned as an array in `classes` order.
    """
    y = np.asarray(y)
    if classes is None:
        classes = np.unique(y)
    classes = list(classes)
    if isinstance(mode, dict):
        missing = [c for c in classes if c not in mode]
        if missing:
            raise ValueError("class_weight dict has no weight for classes %r; give one weight per class" % missing)
        return np.array([float(mode[c]) for c in classes], dtype=np.float32)
    if mode != "balanced":
        raise ValueError("class_weight must be None, 'balanced' or a dict {class: weight}, got %r" % (mode,))
    counts = np.array([np.sum(y == c) for c in classes], dtype=np.float64)
    if np.any(counts == 0):
        absent = [c for c, n in zip(classes, counts) if n == 0]
        raise ValueError("class_weight='balanced' needs every class in the training data, but %r never "
                         "occurs; drop the class or pass explicit weights" % absent)
    return (len(y) / (len(classes) * counts)).astype(np.float32)


def _sklearn_model_selection():
    try:
        from sklearn import model_selection
    except ImportError:
        raise ImportError("stratified splits use scikit-learn: pip install scikit-learn") from None
    return model_selection


def stratified_split(y, test_size=0.2, seed=0):
    """Indices (train_idx, test_idx) of a stratified shuffle split (scikit-learn)."""
    ms = _sklearn_model_selection()
    idx = np.arange(len(y))
    tr, te = ms.train_test_split(idx, test_size=test_size, random_state=seed, stratify=np.asarray(y))
    return np.sort(tr), np.sort(te)


def stratified_kfold(y, n_splits=5, seed=0):
    """List of (train_idx, val_idx) for stratified k-fold with shuffling (scikit-learn)."""
    ms = _sklearn_model_selection()
    skf = ms.StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    y = np.asarray(y)
    return list(skf.split(np.zeros(len(y)), y))


def batch_order(lengths, batch_size, shuffle=True, seed=0, bucket=False):
    """Row indices grouped into batches.

    shuffle: a seeded permutation each call; bucket=True sorts rows by length inside windows of 50
    batches so each batch pads to a similar length (less padding), then shuffles the batch order.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1, got %r" % (batch_size,))
    n = len(lengths)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n) if shuffle else np.arange(n)
    if bucket:
        lengths = np.asarray(lengths)
        window = batch_size * 50
        chunks = [order[i:i + window] for i in range(0, n, window)]
        order = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in chunks]) if chunks else order
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if bucket and shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def pad_batch(seqs, pad_id=0, dtype=np.int64, pad_to_multiple_of=None):
    """Pad a list of 1-D id arrays to the longest: (input_ids, attention_mask), both (B, T)."""
    if not len(seqs):
        raise ValueError("pad_batch needs at least one sequence")
    t = max(len(s) for s in seqs)
    if pad_to_multiple_of:
        t = -(-t // pad_to_multiple_of) * pad_to_multiple_of
    ids = np.full((len(seqs), t), pad_id, dtype=dtype)
    mask = np.zeros((len(seqs), t), dtype=dtype)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = s
        mask[i, :len(s)] = 1
    return ids, mask
