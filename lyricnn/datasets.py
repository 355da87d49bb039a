"""Data sets bundled with lyricnn (public domain only; copyrighted lyrics are never bundled)."""
import csv
import gzip
import io
import os

_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def _read_csv_gz(name):
    with gzip.open(os.path.join(_DATA, name), "rb") as f:
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        csv.field_size_limit(1 << 30)
        return list(csv.DictReader(text))


def load_poets(as_frame=False):
    """Public-domain poems labelled by poet (Dickinson, Whitman, Burns, Shakespeare).

    1,808 rows; see lyricnn/data/pd_poets.SOURCES.md for provenance. Returns a dict of lists with the
    columns (text, label, form, title, group, n_words, ...), or a pandas DataFrame if as_frame=True.
    Use `group` for grouped splits: sections of one Whitman poem share a group.
    """
    rows = _read_csv_gz("pd_poets.csv.gz")
    for r in rows:
        r["n_words"] = int(r["n_words"])
    if as_frame:
        import pandas as pd

        return pd.DataFrame(rows)
    cols = list(rows[0].keys()) if rows else []
    return {c: [r[c] for r in rows] for c in cols}
