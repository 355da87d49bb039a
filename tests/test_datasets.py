import gzip
import hashlib
import os

from lyricnn import datasets


def test_poets_bundled_matches_shared(shared):
    d = datasets.load_poets()
    assert len(d["text"]) == 1808
    assert sorted(set(d["label"])) == ["Emily Dickinson", "Robert Burns", "Walt Whitman", "William Shakespeare"]
    raw = shared("datasets", "pd_poets", "pd_poets.csv").read_bytes()
    bundled = gzip.open(os.path.join(datasets._DATA, "pd_poets.csv.gz")).read()
    assert hashlib.sha256(bundled).hexdigest() == hashlib.sha256(raw).hexdigest()


def test_poets_frame():
    df = datasets.load_poets(as_frame=True)
    counts = df["label"].value_counts().to_dict()
    assert counts == {"Walt Whitman": 643, "Robert Burns": 565, "Emily Dickinson": 446, "William Shakespeare": 154}
    assert df["n_words"].dtype.kind == "i"
