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


# --- shared data sets: loaders and artist-name masking ----------------------------------------------------

import numpy as np
import pytest

from conftest import SHARED


def test_mask_artist_names_kinds_and_rules():
    m = datasets.mask_artist_names
    raw = ("[Verse 1: Drake & Rihanna]\nI got my eyes on you (Drizzy)\n[Produced by Noah \"40\" Shebib]\n"
           "Queen  B and J-Hope, jhope, Beyonce's song, BEYONCÉ\nmandrake obey taylormade")
    out = m(raw)
    assert out == " \nI got my eyes on you ()\n \n and , , 's song, \nmandrake obey taylormade"
    # flattened lyrics (song_lyrics_21_artists): headers lost their brackets, credits run to a section break
    flat = "produced by boida frank dukes  nineteen85   drake i got it  pre drake  majid jordan yeah"
    assert m(flat) == " " + "   " + " i got it  pre   majid jordan yeah"
    assert m("slim shady and marshall mathers") == " and "
    assert m("drake", repl="[artist]") == "[artist]"
    assert m("majid jordan and drake", names=["Majid Jordan"]) == " and drake"
    assert m("majid jordan and drake", names=datasets.ARTIST_NAMES + ("majid jordan",)) == " and "
    # containers keep their kind; non-strings pass through
    assert m(["drake x", None, "y"]) == [" x", None, "y"]
    arr = m(np.array(["drake x", "rihanna"], dtype=object))
    assert isinstance(arr, np.ndarray) and arr.tolist() == [" x", ""]
    pd = pytest.importorskip("pandas")
    s = m(pd.Series(["riri", float("nan")], index=[5, 7]))
    assert list(s.index) == [5, 7] and s[5] == "" and s.isna()[7]
    with pytest.raises(ValueError, match="names is empty"):
        m("x", names=[])
    assert datasets.contains_names(["drizzy drake", "obey", None, "queen  b"]).tolist() == [True, False, False, True]
    assert datasets.contains_names("beyoncé", "Drake").tolist() == [False]
    # every documented alias is masked, alone and inside a sentence
    for artist, names in datasets.ARTIST_ALIASES.items():
        for n in names:
            assert m("la %s la" % n.upper()) == "la  la", (artist, n)


def _write(path, header, rows):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_load_lyrics_21_layouts(tmp_path):
    """Both layouts of the folder, on a synthetic copy: the per-artist files and the Genius dump; the usual
    layout wins when an artist has both; empty and repeated lyrics are dropped; artists match loosely."""
    pytest.importorskip("pandas")
    d = tmp_path / "song_lyrics_21_artists"
    d.mkdir()
    std = ["", "Artist", "Title", "Album", "Year", "Date", "Lyric"]
    _write(d / "Drake.csv", std, [[0, "Drake", "A", "x", 2018, "", "drake yeah i'm here"],
                                  [1, "Drake", "B", "x", 2018, "", ""],
                                  [2, "Drake", "C", "x", 2018, "", "drake yeah i'm here"]])
    _write(d / "BTS.csv", std, [[0, "BTS (방탄소년단)", "D", "x", 2018, "", "jimin sings"]])
    genius = ["", "Unnamed: 0", "title", "tag", "artist", "year", "views", "features", "lyrics", "id"]
    _write(d / "coldplay.csv", genius, [[0, 1, "Yellow", "rock", "Coldplay", 2000, 1, "{}", "look at the stars", 1]])
    df = datasets.load_lyrics_21(data_dir=tmp_path)
    assert list(df.columns) == ["artist", "title", "lyrics"]
    assert df["artist"].tolist() == ["BTS", "Coldplay", "Drake"]
    assert df["lyrics"].tolist() == [" sings", "look at the stars", " yeah i'm here"]
    raw = datasets.load_lyrics_21(data_dir=d, artists=["drake", "bts"], mask_artists=False, drop_duplicates=False)
    assert raw["title"].tolist() == ["A", "C", "D"] and raw["lyrics"][0] == "drake yeah i'm here"
    _write(d / "ColdPlay.csv", std, [[0, "Coldplay", "Fix You", "x", 2005, "", "lights will guide you home"]])
    assert datasets.load_lyrics_21(data_dir=d, artists="COLDPLAY")["title"].tolist() == ["Fix You"]
    with pytest.raises(ValueError, match="unknown artist.*Taylor.*has BTS, Coldplay, Drake"):
        datasets.load_lyrics_21(data_dir=d, artists=["Drake", "Taylor"])
    _write(d / "other.csv", ["a", "b"], [[1, 2]])
    with pytest.raises(ValueError, match="not a song_lyrics_21_artists file"):
        datasets.load_lyrics_21(data_dir=d)


def test_missing_data_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("LYRICNN_SHARED", str(tmp_path / "nowhere"))
    for load in (datasets.load_lyrics_21, datasets.load_musicoset, datasets.load_disaster_tweets,
                 datasets.load_taylor_swift):
        with pytest.raises(datasets.DataMissingError, match="DATA MISSING.*nowhere.*LYRICNN_SHARED"):
            load()
    with pytest.raises(FileNotFoundError, match="DATA MISSING.*musicoset"):
        datasets.load_musicoset(data_dir=tmp_path)
    monkeypatch.setenv("LYRICNN_SHARED", str(SHARED))
    if (SHARED / "datasets").is_dir():
        assert datasets.shared_dir() == SHARED


def test_load_lyrics_21_shared(shared):
    """The real folder: 21 artists; the masking removes every own-name mention (before: 70% of Drake's
    songs, 39% of Beyoncé's)."""
    shared("datasets", "song_lyrics_21_artists")
    pytest.importorskip("pandas")
    raw = datasets.load_lyrics_21(mask_artists=False)
    counts = raw["artist"].value_counts()
    assert len(counts) == 21 and counts["Eminem"] == 515 and counts["Drake"] == 264 and counts["Beyoncé"] == 380
    assert counts["Coldplay"] == 325 and raw["lyrics"].str.strip().ne("").all()
    assert not raw.duplicated(["artist", "lyrics"]).any()
    masked = datasets.load_lyrics_21()
    assert (masked["title"] == raw["title"]).all()
    for artist, lo in (("Drake", 0.6), ("Beyoncé", 0.3)):
        before = datasets.contains_names(raw.loc[raw["artist"] == artist, "lyrics"], artist).mean()
        after = datasets.contains_names(masked.loc[masked["artist"] == artist, "lyrics"], artist).mean()
        assert before > lo and after == 0.0, (artist, before, after)
    assert datasets.contains_names(masked["lyrics"]).sum() == 0
    assert not masked["lyrics"].str.contains("produced by").any()
    three = datasets.load_lyrics_21(artists=["Taylor Swift", "Drake", "Beyonce"])
    assert three["artist"].unique().tolist() == ["Taylor Swift", "Drake", "Beyoncé"] and len(three) == 449 + 264 + 380


def test_load_other_shared_sets(shared):
    shared("datasets", "musicoset")
    shared("datasets", "disaster_tweets")
    shared("datasets", "taylor_swift")
    pytest.importorskip("pandas")
    m = datasets.load_musicoset()
    assert len(m) == 926 and m["song_id"].is_unique and m["lyrics"].str.len().gt(0).all()
    assert set(datasets.MUSICOSET_AUDIO_FEATURES) <= set(m.columns) and m["valence"].between(0, 1).all()
    assert m["ever_pop"].sum() == 338 and "[Verse 1]" in m["lyrics"].str.cat()
    t = datasets.load_disaster_tweets()
    assert len(t) == 7613 and t["target"].value_counts().to_dict() == {0: 4342, 1: 3271}
    assert len(datasets.load_disaster_tweets(split="test")) == 3263
    with pytest.raises(ValueError, match="split"):
        datasets.load_disaster_tweets(split="val")
    s = datasets.load_taylor_swift()
    assert list(s.columns) == ["title", "album", "lyrics"] and len(s) == 224 and "\n" in s["lyrics"][0]
    assert len(datasets.load_taylor_swift(lines=True)) == 9330
