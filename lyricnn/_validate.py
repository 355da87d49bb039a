"""Argument checkers for the Python boundary: one rule per kind of argument, one style of message.

Each checker returns the value in its plain Python form (``int``, ``float`` or ``bool``; numpy scalars are
accepted and converted) or raises:

  TypeError   the value has the wrong type (a str where an int belongs, 2.5 for a count, True for a size);
  ValueError  the type is right but the value is out of range (0 epochs, a negative seed, NaN lr).

Messages name the argument, show the value received and say what to pass instead, e.g.
``batch_size must be an int >= 1, got 2.5 (float); pass a whole number (an int, not a float)``.

    from ._validate import check_int, check_float, check_seed, check_bool

    n = check_int(batch_size, "batch_size", min=1)
    lr = check_float(lr, "lr", min=0, min_inclusive=False)          # finite and > 0
    p = check_float(dropout, "dropout", min=0, max=1, max_inclusive=False, allow_none=True)
    seed = check_seed(seed)                                          # int in [0, 2**64)
    flag = check_bool(early_stopping, "early_stopping")
    ids = as_array(input_ids, "input_ids")    # np.asarray, with a clear error for ragged rows

Rules shared by all checkers:
  * bool is not a number here: ``check_int(True, ...)`` and ``check_float(False, ...)`` raise TypeError
    (True as a batch size is always a mistake).
  * ints are ints: 2.0 or "2" is refused by check_int (the caller converts on purpose if it wants).
  * floats must be finite: NaN and +-inf are refused by check_float.
  * ``allow_none=True`` lets None through unchanged (the argument's "not set" value).
"""
import math
import numbers

import numpy as np

__all__ = ["check_int", "check_float", "check_seed", "check_bool", "check_choice", "as_array", "SEED_MAX"]

#: Seeds are unsigned 64-bit integers in the engine (Philox keys); check_seed allows [0, SEED_MAX).
SEED_MAX = 2 ** 64


def _show(value):
    """`value (type)` for messages, the repr shortened."""
    r = repr(value)
    if len(r) > 60:
        r = r[:57] + "..."
    return "%s (%s)" % (r, type(value).__name__)


def _is_bool(value):
    return isinstance(value, (bool, np.bool_))


def _range_text(min, max, min_inclusive=True, max_inclusive=True):
    if min is not None and max is not None:
        return "in %s%r, %r%s" % ("[" if min_inclusive else "(", min, max, "]" if max_inclusive else ")")
    if min is not None:
        return "%s %r" % (">=" if min_inclusive else ">", min)
    if max is not None:
        return "%s %r" % ("<=" if max_inclusive else "<", max)
    return ""


def check_int(value, name, min=None, max=None, allow_none=False):
    """`value` as an int, checked to lie in [min, max] (either bound may be None: unbounded).

    Accepts Python ints and numpy integers; refuses bool, float (even 2.0), str and anything else with a
    TypeError, and out-of-range ints with a ValueError. Returns None for None when allow_none is true.
    """
    if value is None and allow_none:
        return None
    rng = _range_text(min, max)
    want = "an int" + (" " + rng if rng else "") + (" or None" if allow_none else "")
    if _is_bool(value) or not isinstance(value, (numbers.Integral, np.integer)):
        hint = ""
        if isinstance(value, (float, np.floating)):
            hint = "; pass a whole number (an int, not a float)"
        elif isinstance(value, str):
            hint = "; pass a number, not a str (e.g. int(%r) if it came from text)" % (value,)
        elif _is_bool(value):
            hint = "; a bool is not a count"
        raise TypeError("%s must be %s, got %s%s" % (name, want, _show(value), hint))
    v = int(value)
    if (min is not None and v < min) or (max is not None and v > max):
        raise ValueError("%s must be %s, got %d" % (name, want, v))
    return v


def check_float(value, name, min=None, max=None, min_inclusive=True, max_inclusive=True, allow_none=False):
    """`value` as a finite float, checked against [min, max] (open ends with min_inclusive /
    max_inclusive False; None: unbounded).

    Accepts Python and numpy ints and floats; refuses bool and non-numbers with a TypeError, NaN, inf
    and out-of-range values with a ValueError. Returns None for None when allow_none is true.
    """
    if value is None and allow_none:
        return None
    rng = _range_text(min, max, min_inclusive, max_inclusive)
    want = "a finite number" + (" " + rng if rng else "") + (" or None" if allow_none else "")
    if _is_bool(value) or not isinstance(value, (numbers.Real, np.integer, np.floating)):
        hint = "; pass a number, not a str (e.g. float(%r) if it came from text)" % (value,) \
            if isinstance(value, str) else ""
        raise TypeError("%s must be %s, got %s%s" % (name, want, _show(value), hint))
    v = float(value)
    if not math.isfinite(v):
        raise ValueError("%s must be %s, got %r" % (name, want, v))
    if min is not None and (v < min if min_inclusive else v <= min):
        raise ValueError("%s must be %s, got %r" % (name, want, v))
    if max is not None and (v > max if max_inclusive else v >= max):
        raise ValueError("%s must be %s, got %r" % (name, want, v))
    return v


def check_seed(value, name="seed"):
    """A random seed: an int in [0, 2**64) (the engine keys dropout by a 64-bit seed, so larger seeds
    would silently alias smaller ones, e.g. 2**64 + 5 and 5). TypeError for non-ints (including bool and
    str), ValueError for negative or too-large ints."""
    if _is_bool(value) or not isinstance(value, (numbers.Integral, np.integer)):
        hint = " (e.g. int(%r) if it came from text)" % (value,) if isinstance(value, str) else ""
        raise TypeError("%s must be an int in [0, 2**64), got %s; pass a non-negative whole number such as 0 or "
                        "42%s" % (name, _show(value), hint))
    v = int(value)
    if not 0 <= v < SEED_MAX:
        raise ValueError("%s must be an int in [0, 2**64), got %d; seeds are 64-bit (a larger or negative seed "
                         "would silently equal another one), e.g. use %s %% 2**64 or a smaller number"
                         % (name, v, name))
    return v


def check_bool(value, name, allow_none=False):
    """`value` as a bool: only True / False (and numpy bools) are accepted, so that strings such as
    "no" or "false" (truthy in Python) and 0/1 do not slip through. TypeError otherwise."""
    if value is None and allow_none:
        return None
    if not _is_bool(value):
        raise TypeError("%s must be True or False%s, got %s" % (name, " or None" if allow_none else "",
                                                                   _show(value)))
    return bool(value)


def check_choice(value, name, choices):
    """`value` if it is one of `choices` (compared with ==, hashable values only), else a ValueError listing
    them."""
    try:
        ok = value in choices
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError("%s must be one of %s, got %r" % (name, ", ".join(repr(c) for c in choices), value))
    return value


def as_array(x, name):
    """np.asarray(x), with a ValueError naming `name` when numpy cannot make an array of it, in particular
    for ragged nested lists (rows of different lengths), which numpy reports as an "inhomogeneous shape"."""
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as e:
        lens = None
        if isinstance(x, (list, tuple)):
            try:
                lens = [len(r) for r in x]
            except TypeError:
                lens = None
        if lens and len(set(lens)) > 1:
            i = next(j for j, n in enumerate(lens) if n != lens[0])
            raise ValueError("%s is ragged: row 0 has %d entries but row %d has %d; pad every row to one length "
                             "(e.g. tokenizer(texts, padding=True)) and pass the attention_mask"
                             % (name, lens[0], i, lens[i])) from None
        raise ValueError("%s must be an array of numbers; numpy cannot make an array of it (%s)" % (name, e)) from None
