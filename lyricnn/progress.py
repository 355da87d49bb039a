"""Progress display for fit and tune: a tqdm bar in a terminal, plain lines elsewhere.

A tqdm bar redraws itself with carriage returns, which a terminal shows as one moving line but a log file
(or a notebook saved with its outputs) keeps as one very long line, with the per-evaluation lines printed
over it. So the bar is used where it can redraw:
  - a terminal (stderr is a TTY): tqdm's text bar;
  - Jupyter with ipywidgets installed: tqdm.auto's widget;
and everywhere else (a log file, a pipe, a notebook without ipywidgets, nbclient/papermill runs) plain lines,
one per tenth of the work and at least one a minute: "fine-tuning: 30/300 steps (10%) ... ~1.8 min left".
LYRICNN_PROGRESS=bar|lines|off overrides the choice.
"""
import math
import os
import sys
import time

__all__ = ["make_bar", "LineProgress"]

_MODES = ("bar", "lines", "off")


def _mode():
    m = os.environ.get("LYRICNN_PROGRESS", "").strip().lower()
    if m in _MODES:
        return m
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return "bar"
    except (AttributeError, ValueError):
        pass
    if "ipykernel" in sys.modules:
        try:
            import ipywidgets  # noqa: F401

            return "bar"   # tqdm.auto draws a widget
        except ImportError:
            pass
    return "lines"


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix(self, *a, **k):
        pass

    def close(self):
        pass

    def write(self, s):
        print(s, flush=True)


def _secs(s):
    return "%.0f s" % s if s < 90 else "%.1f min" % (s / 60) if s < 5400 else "%.1f h" % (s / 3600)


class LineProgress:
    """tqdm's update / set_postfix / write / close, printed as plain lines (see the module docstring)."""

    def __init__(self, total, initial=0, desc="", unit="it", every=0.1, min_interval=60.0, file=None):
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.every, self.min_interval = every, min_interval
        self.file = file
        self.postfix = {}
        self.t0 = self.last_t = time.monotonic()
        self.start_n = initial
        self.last_mark = self._mark(initial)
        self.closed = False

    def _mark(self, n):
        return int(math.floor(n / (self.every * self.total))) if self.total else 0

    def _print(self, s):
        print(s, file=self.file if self.file is not None else sys.stdout, flush=True)

    def line(self):
        el = time.monotonic() - self.t0
        done = self.n - self.start_n
        s = "%s: %d/%d %s (%d%%)" % (self.desc, self.n, self.total, self.unit + "s",
                                     100 * self.n // self.total if self.total else 100)
        if self.postfix:
            s += ", " + ", ".join("%s %s" % kv for kv in self.postfix.items())
        s += ", %s" % _secs(el)
        if 0 < done and self.n < self.total:
            s += ", ~%s left" % _secs(el / done * (self.total - self.n))
        return s

    def update(self, n=1):
        self.n += n
        now = time.monotonic()
        mark = self._mark(self.n)
        if mark > self.last_mark or now - self.last_t >= self.min_interval or self.n == self.total:
            self.last_mark, self.last_t = mark, now
            self._print(self.line())

    def set_postfix(self, ordered_dict=None, refresh=True, **kw):
        self.postfix.update(ordered_dict or {})
        self.postfix.update(kw)

    def write(self, s):
        self._print(s)

    def close(self):
        if not self.closed and self.n != self.total and self.n > self.start_n and \
                time.monotonic() - self.last_t > 0:
            self._print(self.line())
        self.closed = True


def make_bar(total, initial=0, enabled=True, desc="", unit="it"):
    """A progress object with tqdm's update / set_postfix / write / close: tqdm (terminal, notebook widget),
    LineProgress (elsewhere) or a silent one (enabled False, LYRICNN_PROGRESS=off)."""
    mode = _mode() if enabled else "off"
    if mode == "bar":
        try:
            from tqdm.auto import tqdm
        except ImportError:
            mode = "lines"
        else:
            bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, leave=True)
            bar.write = tqdm.write
            return bar
    if mode == "lines":
        return LineProgress(total, initial=initial, desc=desc, unit=unit)
    return _NoBar()
