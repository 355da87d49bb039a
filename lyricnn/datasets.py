"""Data sets: the bundled public-domain poems (load_poets) and loaders for the shared third-party sets in
../shared/data/datasets (load_lyrics_21, load_taylor_swift, load_musicoset, load_disaster_tweets; copyrighted
lyrics are never bundled), with mask_artist_names against the artist names that leak into lyrics."""
import csv
import gzip
import io
import os
import re
import unicodedata

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


# --- the shared (copyrighted, never bundled) data sets: ../shared/data/datasets beside the checkout ------------

SHARED_ENV = "LYRICNN_SHARED"


class DataMissingError(FileNotFoundError):
    """A shared data set is not where lyricnn looked for it (the message says where and how to point at it)."""


def _shared_candidates():
    """Folders that may hold datasets/, most specific first: $LYRICNN_SHARED, then shared/data beside the
    checkout holding this package, then beside the current directory or any folder above it (a notebook
    in notebooks/ of a checkout whose lyricnn is installed elsewhere)."""
    import pathlib

    env = os.environ.get(SHARED_ENV)
    if env:
        return [pathlib.Path(env).expanduser()]
    out = []
    pkg_root = pathlib.Path(__file__).resolve().parents[1]
    cwd = pathlib.Path.cwd().resolve()
    for p in (pkg_root, cwd, *cwd.parents):
        for c in (p / "shared" / "data", p.parent / "shared" / "data"):
            if c not in out:
                out.append(c)
    return out


def shared_dir(*required):
    """The folder holding the shared datasets/ (a pathlib.Path), checking that datasets/<each of required>
    exists there.

    Looked up in $LYRICNN_SHARED (the folder holding datasets/, e.g. /data/shared/data) when it is set,
    else in shared/data beside the lyricnn checkout (../shared/data from the repository root), else beside
    the current directory or a folder above it. Raises DataMissingError naming what is missing, where it
    looked and how to fix it.
    """
    tried = _shared_candidates()
    for base in tried:
        if all((base / "datasets" / r).exists() for r in required) and (base / "datasets").is_dir():
            return base
    need = ", ".join("datasets/%s" % r for r in required) or "datasets/"
    raise DataMissingError(
        "DATA MISSING: lyricnn needs the shared data sets in ../shared/data/datasets/ beside the lyricnn "
        "checkout (%s); looked in %s. Set %s to the folder holding datasets/ if they live elsewhere. "
        "They are third-party data (copyrighted lyrics) and are not bundled with the package."
        % (need, ", ".join(str(t) for t in tried[:4]) + (", ..." if len(tried) > 4 else ""), SHARED_ENV))


def dataset_dir(name, data_dir=None, required=()):
    """The folder of the shared data set `name` (e.g. "musicoset"): data_dir/name, data_dir/datasets/name
    or data_dir itself, the first that holds the required files; located with shared_dir() when data_dir is
    None. DataMissingError when the files are not there."""
    import pathlib

    if data_dir is None:
        return shared_dir(*[name + "/" + r for r in required] or [name]) / "datasets" / name
    d = pathlib.Path(data_dir).expanduser()
    for c in (d / name, d / "datasets" / name, d):
        if c.is_dir() and all((c / r).exists() for r in required):
            return c
    raise DataMissingError("DATA MISSING: the data set %r is not in %s (looked for %s there, in %s/%s and in "
                           "%s/datasets/%s)" % (name, d, ", ".join(required) or "the folder", d, name, d, name))


def _pandas(func):
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("lyricnn.datasets.%s returns a pandas DataFrame: pip install pandas" % func) from None
    return pd


# --- artist names: the answer leaks into the lyrics ----------------------------------------------------------
# song_lyrics_21_artists keeps the Genius section headers without their brackets ("[Verse 2: Drake]" became
# "drake ..."), and many songs name their performer or producers ("produced by ..."): 67% of Drake's songs
# and 36% of Beyoncé's contain the artist's name. An artist classifier then reads the answer. These are the
# names and aliases mask_artist_names removes by default: the 21 artists of song_lyrics_21_artists, their
# stage names and nicknames, and the BTS members' stage names. Common words are left out on purpose
# ("v" of BTS, "shady", "em", "justin", "charlie", "adam", "post"), so the masking is not complete: guest
# performers (Majid Jordan, Lil Wayne, ...) stay. Pass names= to mask others.
ARTIST_ALIASES = {
    "Ariana Grande": ("ariana grande", "ariana", "grande"),
    "BTS": ("bts", "bangtan", "bangtan boys", "rm", "rap monster", "jin", "suga", "agust d", "j-hope",
            "j hope", "jhope", "jimin", "jungkook", "jung kook"),
    "Beyoncé": ("beyoncé", "beyonce", "queen b", "queen bey", "bey", "yoncé", "yonce", "sasha fierce"),
    "Billie Eilish": ("billie eilish", "billie", "eilish", "finneas"),
    "Cardi B": ("cardi b", "cardi", "bardi", "belcalis"),
    "Charlie Puth": ("charlie puth", "puth"),
    "Coldplay": ("coldplay", "chris martin"),
    "Drake": ("drake", "drizzy", "drizzy drake", "champagne papi", "aubrey graham", "aubrey", "6 god"),
    "Dua Lipa": ("dua lipa", "dua", "lipa"),
    "Ed Sheeran": ("ed sheeran", "sheeran"),
    "Eminem": ("eminem", "slim shady", "marshall mathers", "mathers"),
    "Justin Bieber": ("justin bieber", "bieber", "biebs"),
    "Katy Perry": ("katy perry", "katy", "katheryn"),
    "Khalid": ("khalid",),
    "Lady Gaga": ("lady gaga", "gaga", "mother monster"),
    "Maroon 5": ("maroon 5", "maroon five", "adam levine", "levine"),
    "Nicki Minaj": ("nicki minaj", "nicki", "minaj", "onika", "roman zolanski"),
    "Post Malone": ("post malone", "posty", "malone"),
    "Rihanna": ("rihanna", "riri", "rih", "badgalriri", "bad gal riri", "robyn fenty"),
    "Selena Gomez": ("selena gomez", "selena", "gomez"),
    "Taylor Swift": ("taylor swift", "taylor", "t swift", "tswift"),
}
ARTIST_NAMES = tuple(sorted({a for names in ARTIST_ALIASES.values() for a in names}))

# bracketed headers of raw (Genius-style) lyrics: "[Verse 1: Drake]", "[Produced by ...]" (one line, bounded)
_BRACKETED = re.compile(r"\[[^\[\]\n]{0,200}\]")
# credits in the flattened text: "produced by nineteen85 majid jordan  noah 40 shebib   drake ..." runs to
# the next section break (3+ spaces) or line end, at most 150 characters; else only the words "produced by"
_CREDIT = re.compile(r"\b(?:produced|prod|co-produced|written|mixed|engineered) by\b"
                     r"(?:[^\n]{0,150}?(?=\s{3}|\n|$))?", re.IGNORECASE)
_NAME_RES = {}


def _names_re(names):
    key = tuple(names)
    r = _NAME_RES.get(key)
    if r is None:
        alts = []
        for n in sorted({unicodedata.normalize("NFC", str(n)).strip().lower() for n in key} - {""},
                        key=lambda s: (-len(s), s)):
            # words of a multi-word name may be separated by any run of spaces (flattened lyrics); a hyphen
            # may be a space or nothing ("j-hope", "j hope", "jhope")
            words = [re.escape(w) for w in n.split()]
            alts.append(r"\s+".join(w.replace(r"\-", r"[-\s]?") for w in words))
        if not alts:
            raise ValueError("names is empty; give the artist names to mask (default: ARTIST_NAMES)")
        r = re.compile(r"(?<!\w)(?:%s)(?!\w)" % "|".join(alts), re.IGNORECASE)
        _NAME_RES[key] = r
    return r


def _mask_one(text, names_re, repl):
    if not isinstance(text, str):
        return text
    t = unicodedata.normalize("NFC", text)
    t = _BRACKETED.sub(" ", t)
    t = _CREDIT.sub(" ", t)
    return names_re.sub(repl, t)


def mask_artist_names(texts, names=None, repl=""):
    """Remove artist names and credits from lyrics, so that a classifier cannot read the answer.

    texts: one string, or a list / numpy array / pandas Series of them (the same kind comes back; non-string
    entries such as NaN pass through). For each text:
      - bracketed headers of raw lyrics ("[Verse 1: Drake]", "[Produced by ...]") are removed;
      - credits ("produced by ...", "written by ...") up to the next section break (3+ spaces) or line end;
      - every whole-word occurrence of a name in `names` (case-insensitive; "beyoncé" and "beyonce" are both
        listed; multi-word names match across runs of spaces) is replaced by `repl` (default: removed).
    names: the names to mask; default ARTIST_NAMES (every alias in ARTIST_ALIASES: the 21 artists of
    song_lyrics_21_artists, their stage names and nicknames such as "drizzy", "queen b", "slim shady",
    "marshall mathers", "riri"). Pass ARTIST_NAMES + ("majid jordan",) to add some.

    This is a word list, not named-entity recognition: guest performers and producers not on the list,
    and names in other spellings, stay.
    """
    names_re = _names_re(ARTIST_NAMES if names is None else ([names] if isinstance(names, str) else names))
    if isinstance(texts, str):
        return _mask_one(texts, names_re, repl)
    if type(texts).__name__ == "Series" and hasattr(texts, "map"):
        return texts.map(lambda t: _mask_one(t, names_re, repl))
    import numpy as np

    if isinstance(texts, np.ndarray):
        out = np.empty(texts.shape, dtype=object)
        out.ravel()[:] = [_mask_one(t, names_re, repl) for t in texts.ravel()]
        return out
    return [_mask_one(t, names_re, repl) for t in texts]


def contains_names(texts, names=None):
    """A bool numpy array: which texts contain a name of `names` (default ARTIST_NAMES; a str is one name, an
    artist of ARTIST_ALIASES stands for all its aliases), matched as mask_artist_names matches them.

    contains_names(df["lyrics"], "Drake").mean() is the share of songs that name Drake."""
    import numpy as np

    if isinstance(names, str):
        names = ARTIST_ALIASES.get(names, (names,))
    r = _names_re(ARTIST_NAMES if names is None else names)
    texts = [texts] if isinstance(texts, str) else list(texts)
    return np.fromiter((isinstance(t, str) and r.search(unicodedata.normalize("NFC", t)) is not None
                        for t in texts), dtype=bool, count=len(texts))


def _norm_artist(name):
    """'Beyoncé', 'beyonce', 'TaylorSwift', 'Taylor Swift', 'BTS (방탄소년단)' -> a comparison key."""
    s = re.sub(r"\s*\(.*\)\s*$", "", str(name))
    s = unicodedata.normalize("NFKD", s)
    return "".join(ch for ch in s if ch.isalnum() and not unicodedata.combining(ch)).lower()


# the two layouts of song_lyrics_21_artists: the 21 per-artist files, and the Genius dump of coldplay.csv
_LAYOUTS = ({"artist": "Artist", "title": "Title", "lyrics": "Lyric"},
            {"artist": "artist", "title": "title", "lyrics": "lyrics"})


def _read_lyrics_file(path, pd):
    header = pd.read_csv(path, nrows=0).columns
    for rank, layout in enumerate(_LAYOUTS):
        if all(c in header for c in layout.values()):
            df = pd.read_csv(path, usecols=list(layout.values()), dtype=str, keep_default_na=False)
            df = df.rename(columns={v: k for k, v in layout.items()})[["artist", "title", "lyrics"]]
            return df, rank
    raise ValueError("%s is not a song_lyrics_21_artists file: expected the columns Artist, Title, Lyric "
                     "(or artist, title, lyrics), found %s" % (path, list(header)))


def load_lyrics_21(data_dir=None, artists=None, mask_artists=True, drop_duplicates=True):
    """Song lyrics of 21 artists (song_lyrics_21_artists: the Kaggle "Song Lyrics Dataset"), one row per
    song, as a pandas DataFrame with the columns artist, title, lyrics.

    The lyrics are lower-cased, with most punctuation and all newlines removed (as published). Songs with
    empty lyrics are dropped, and with drop_duplicates=True repeats of the same lyrics by one artist
    (remixes, re-releases) too, keeping the first. The artist column holds the display name
    ("Beyoncé", "BTS", "Taylor Swift").

    data_dir: the folder of the CSV files (or a folder holding song_lyrics_21_artists/ or
    datasets/song_lyrics_21_artists/); default: found with shared_dir() ($LYRICNN_SHARED or
    ../shared/data beside the checkout). DataMissingError when absent.
    artists: names of the artists to load, in that order ("Drake", "beyonce", "TaylorSwift": case, accents
    and spaces do not matter); default all 21, in file-name order. An unknown name is a ValueError.
    mask_artists: True (the default) passes the lyrics through mask_artist_names(): many songs name their
    artist in section headers and credits ("drake ...", "produced by ..."), which leaks the label.
    The data holds Coldplay twice: Coldplay.csv in the layout of the other files and coldplay.csv, a Genius
    dump with another layout and other normalisation (no apostrophes, a tell of its own). The first is
    used; the second only when it is the only Coldplay file (as on a case-insensitive file system).
    """
    pd = _pandas("load_lyrics_21")
    d = dataset_dir("song_lyrics_21_artists", data_dir)
    files = sorted(p for p in d.iterdir() if p.suffix.lower() == ".csv" and p.is_file())
    if not files:
        raise DataMissingError("DATA MISSING: no CSV files in %s (song_lyrics_21_artists)" % d)
    by_artist = {}   # key -> (layout rank, file name, frame)
    for p in files:
        df, rank = _read_lyrics_file(p, pd)
        if not len(df):
            continue
        key = _norm_artist(df["artist"].iloc[0])
        if key not in by_artist or rank < by_artist[key][0]:
            by_artist[key] = (rank, p.name, df)
    if artists is None:
        keys = sorted(by_artist, key=lambda k: by_artist[k][1].lower())
    else:
        keys = [_norm_artist(a) for a in ([artists] if isinstance(artists, str) else artists)]
        unknown = [a for a, k in zip(artists if not isinstance(artists, str) else [artists], keys)
                   if k not in by_artist]
        if unknown:
            raise ValueError("unknown artist(s) %s; song_lyrics_21_artists has %s" % (
                unknown, ", ".join(sorted(re.sub(r"\s*\(.*\)\s*$", "", v[2]["artist"].iloc[0])
                                          for v in by_artist.values()))))
        keys = list(dict.fromkeys(keys))
    parts = []
    for k in keys:
        df = by_artist[k][2].copy()
        df["artist"] = df["artist"].str.replace(r"\s*\(.*\)\s*$", "", regex=True)
        df = df[df["lyrics"].str.strip() != ""]
        if drop_duplicates:
            df = df.drop_duplicates(subset=["lyrics"])
        parts.append(df)
    out = pd.concat(parts, ignore_index=True)
    if mask_artists:
        out["lyrics"] = mask_artist_names(out["lyrics"])
    return out


def load_taylor_swift(data_dir=None, lines=False):
    """Taylor Swift's lyrics in their original case with newlines (taylor_swift/): one row per song
    (title, album, lyrics; 224 songs) or, with lines=True, per lyric line (lyrics.csv: song, album, lyric,
    previous_lyric, next_lyric, multiplicity). Columns are lower-cased with underscores."""
    pd = _pandas("load_taylor_swift")
    name = "lyrics.csv" if lines else "songs.csv"
    d = dataset_dir("taylor_swift", data_dir, required=(name,))
    df = pd.read_csv(d / name, dtype={"Lyrics": str, "Lyric": str})
    df.columns = [c.strip().lower().replace(" ", "_") for c in df.columns]
    return df


def read_musicoset_lyrics(path):
    """(DataFrame song_id, lyrics; the number of rows skipped) from MusicOSet's lyrics.csv. Each lyric is a
    Python-list repr ("['[Verse 1]\\nThought ...']"), parsed with ast.literal_eval (literals only, never
    evaluated as code) and joined with newlines. Read line by line because the file's last row is cut off
    (an unclosed quote that would make pandas swallow the whole file); rows that do not parse, or are
    empty, are skipped and counted."""
    import ast

    pd = _pandas("read_musicoset_lyrics")
    rows, skipped = [], 0
    with open(path, encoding="utf-8") as f:
        next(f)  # header: song_id, lyrics
        for line in f:
            song_id, _, raw = line.rstrip("\n").partition("\t")
            if len(raw) > 1 and raw[0] == raw[-1] == '"':
                raw = raw[1:-1].replace('""', '"')  # CSV quoting
            try:
                parts = ast.literal_eval(raw) if len(raw) < 1_000_000 else None
                text = "\n".join(parts).strip() if isinstance(parts, list) else ""
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                text = ""
            if text:
                rows.append((song_id, text))
            else:
                skipped += 1
    return pd.DataFrame(rows, columns=["song_id", "lyrics"]), skipped


def load_musicoset(data_dir=None, verbose=False):
    """MusicOSet's songs with lyrics (926 rows: of the 931 in lyrics.csv, 4 are empty and the last is cut
    off), joined on song_id with the
    song metadata (song_name, artists, popularity, explicit, song_type), the 13 Spotify audio features
    (valence, energy, danceability, ...) and `ever_pop` (is_pop true in any year of song_pop.csv).
    The lyrics keep their case, newlines and Genius section headers ("[Verse 1]"). verbose=True prints how
    many rows were read and skipped."""
    pd = _pandas("load_musicoset")
    d = dataset_dir("musicoset", data_dir, required=("lyrics.csv", "acoustic_features.csv", "song_pop.csv",
                                                     "songs.csv"))
    lyrics, skipped = read_musicoset_lyrics(d / "lyrics.csv")
    acoustic = pd.read_csv(d / "acoustic_features.csv", sep="\t")
    song_pop = pd.read_csv(d / "song_pop.csv", sep="\t")
    songs = pd.read_csv(d / "songs.csv", sep="\t")
    ever_pop = song_pop.groupby("song_id")["is_pop"].any().rename("ever_pop").reset_index()
    meta = songs[[c for c in ("song_id", "song_name", "artists", "popularity", "explicit", "song_type")
                  if c in songs.columns]]
    df = lyrics.merge(meta, on="song_id", how="left").merge(acoustic, on="song_id").merge(ever_pop, on="song_id")
    if verbose:
        print("musicoset: %d songs with lyrics (%d empty or unparsable rows skipped), %d with audio features "
              "and popularity" % (len(lyrics), skipped, len(df)))
    return df.reset_index(drop=True)


MUSICOSET_AUDIO_FEATURES = ("duration_ms", "key", "mode", "time_signature", "acousticness", "danceability",
                            "energy", "instrumentalness", "liveness", "loudness", "speechiness", "valence",
                            "tempo")


def load_disaster_tweets(data_dir=None, split="train"):
    """Kaggle's "nlp-getting-started" tweets (disaster_tweets/): split="train" (7613 rows: id, keyword,
    location, text, target; 4342 of class 0, 3271 of class 1) or "test" (3263 rows without target).
    Rows without text are dropped."""
    pd = _pandas("load_disaster_tweets")
    if split not in ("train", "test"):
        raise ValueError("split must be 'train' or 'test', got %r" % (split,))
    d = dataset_dir("disaster_tweets", data_dir, required=(split + ".csv",))
    df = pd.read_csv(d / (split + ".csv"))   # CRLF line endings: pandas handles them
    return df.dropna(subset=["text"]).reset_index(drop=True)
