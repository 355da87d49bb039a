"""Data helpers for training: class weights, stratified splits, batches with dynamic padding (numpy only:
scikit-learn is not a dependency; tests/test_data.py checks these against it)."""
import math
import numbers
import warnings

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


def _class_labels(y, func):
    """y as a 1-D array of class labels (a (n, 1) column is flattened); continuous targets are refused."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError("%s needs one class label per row (a 1-D array), got shape %s" % (func, y.shape))
    if y.dtype.kind == "f" and len(y) and not np.array_equal(y, np.trunc(y)):
        raise ValueError("%s stratifies by class, but y holds continuous values (e.g. %r); pass class labels"
                         % (func, y[np.flatnonzero(y != np.trunc(y))[0]]))
    return y


def _approximate_mode(counts, n_draws, rng):
    """Per-class counts summing to n_draws, proportional to `counts`: the floors of the proportional shares,
    plus one for the classes with the largest remainders; ties among equal remainders are broken with rng.
    scikit-learn's sklearn.utils.extmath._approximate_mode (the same float expression, so the same ties)."""
    continuous = counts / counts.sum() * n_draws
    floored = np.floor(continuous)
    need = int(n_draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (tied,) = np.nonzero(remainder == value)
            take = min(len(tied), need)
            floored[rng.choice(tied, size=take, replace=False)] += 1
            need -= take
            if need == 0:
                break
    return floored.astype(np.int64)


def _n_test(test_size, n):
    """Rows in the test part: ceil(test_size * n) for a fraction, test_size itself for an integer
    (scikit-learn's rule)."""
    if isinstance(test_size, (bool, np.bool_)) or not isinstance(test_size, numbers.Real):
        raise ValueError("test_size must be a float in (0, 1) or an integer row count, got %r" % (test_size,))
    if isinstance(test_size, numbers.Integral):
        if not 0 < test_size < n:
            raise ValueError("test_size=%d must be positive and smaller than the number of samples (%d), or a "
                             "float in (0, 1)" % (test_size, n))
        n_test = int(test_size)
    else:
        if not 0 < test_size < 1:
            raise ValueError("test_size=%r must be in the (0, 1) range, or an integer row count" % (test_size,))
        n_test = math.ceil(test_size * n)
    if n - n_test < 1:
        raise ValueError("with %d samples and test_size=%r the training part would be empty" % (n, test_size))
    return n_test


def stratified_split(y, test_size=0.2, seed=0):
    """Indices (train_idx, test_idx), each sorted, of a seeded stratified shuffle split (numpy only).

    test_size: a fraction (the test part gets ceil(test_size * n) rows) or a row count. Each class gets the
    same number of training rows as scikit-learn's train_test_split(..., stratify=y) gives it: the training
    rows are shared out in proportion to the class sizes (floors, then one more for the largest remainders,
    ties broken at random), the rest of each class is the test part. Which rows go where is a seeded random
    draw (numpy's default_rng(seed)); the rows themselves differ from scikit-learn's. Every class needs at
    least 2 members, and both parts need room for one row of each class.
    """
    y = _class_labels(y, "stratified_split")
    n = len(y)
    n_test = _n_test(test_size, n)
    n_train = n - n_test
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    if counts.min() < 2:
        raise ValueError("stratified_split needs at least 2 members of every class (one for each part); "
                         "classes with a single member: %r" % classes[counts < 2].tolist())
    if n_train < len(classes):
        raise ValueError("the training part (%d rows) is smaller than the number of classes (%d); lower "
                         "test_size" % (n_train, len(classes)))
    if n_test < len(classes):
        raise ValueError("the test part (%d rows, test_size=%r) is smaller than the number of classes (%d); "
                         "raise test_size" % (n_test, test_size, len(classes)))
    rng = np.random.default_rng(seed)
    train_counts = _approximate_mode(counts, n_train, rng)
    train, test = [], []
    for k in range(len(classes)):
        members = rng.permutation(np.flatnonzero(inverse == k))
        train.append(members[:train_counts[k]])
        test.append(members[train_counts[k]:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def stratified_kfold(y, n_splits=5, seed=0):
    """List of n_splits (train_idx, val_idx) pairs, each sorted: seeded stratified k-fold with shuffling
    (numpy only).

    Every row is in exactly one validation fold. Each class has the same number of rows in each fold as in
    scikit-learn's StratifiedKFold(n_splits, shuffle=True): the rows, sorted by class (classes numbered in
    order of first appearance in y), are dealt round-robin to the folds. Which rows of a class go to which
    fold is a seeded random draw (numpy's default_rng(seed)). As in scikit-learn, n_splits larger than every
    class is an error, and a class with fewer members than n_splits (missing from some folds) a warning.
    """
    y = _class_labels(y, "stratified_kfold")
    if isinstance(n_splits, (bool, np.bool_)) or not isinstance(n_splits, numbers.Integral) or n_splits < 2:
        raise ValueError("n_splits must be an integer >= 2, got %r" % (n_splits,))
    n_splits = int(n_splits)
    n = len(y)
    if n_splits > n:
        raise ValueError("n_splits=%d is greater than the number of samples (%d)" % (n_splits, n))
    _, first, inverse = np.unique(y, return_index=True, return_inverse=True)
    code = np.unique(first, return_inverse=True)[1][inverse.ravel()]  # classes numbered by first appearance
    counts = np.bincount(code)
    if np.all(counts < n_splits):
        raise ValueError("n_splits=%d is greater than the number of members of every class (largest class: %d); "
                         "use n_splits <= %d" % (n_splits, counts.max(), counts.max()))
    if counts.min() < n_splits:
        warnings.warn("the least populated class in y has only %d members, fewer than n_splits=%d: some "
                      "validation folds have none of it" % (counts.min(), n_splits), UserWarning, stacklevel=2)
    ordered = np.sort(code)
    per_fold = np.stack([np.bincount(ordered[i::n_splits], minlength=len(counts)) for i in range(n_splits)])
    rng = np.random.default_rng(seed)
    fold = np.empty(n, dtype=np.int64)
    for k in range(len(counts)):
        folds_k = np.repeat(np.arange(n_splits), per_fold[:, k])
        rng.shuffle(folds_k)
        fold[code == k] = folds_k
    return [(np.flatnonzero(fold != i), np.flatnonzero(fold == i)) for i in range(n_splits)]


def kfold(n, n_splits=5, seed=0):
    """List of n_splits (train_idx, val_idx) pairs, each sorted: seeded shuffled k-fold over n rows (numpy
    only), for targets that cannot be stratified (regression). The folds have scikit-learn's KFold sizes (the
    first n % n_splits folds one row more); which rows go where is a seeded draw (numpy's default_rng(seed))."""
    if isinstance(n_splits, (bool, np.bool_)) or not isinstance(n_splits, numbers.Integral) or n_splits < 2:
        raise ValueError("n_splits must be an integer >= 2, got %r" % (n_splits,))
    if int(n_splits) > n:
        raise ValueError("n_splits=%d is greater than the number of samples (%d)" % (n_splits, n))
    perm = np.random.default_rng(seed).permutation(n)
    parts = np.array_split(perm, int(n_splits))
    return [(np.sort(np.concatenate(parts[:i] + parts[i + 1:])), np.sort(p)) for i, p in enumerate(parts)]


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
