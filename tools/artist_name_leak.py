"""How many songs of song_lyrics_21_artists name their own artist, before and after
lyricnn.datasets.mask_artist_names (the leak the artist notebooks mask), and which listed names occur in
other artists' songs (the word list's false positives).

    python tools/artist_name_leak.py            # needs ../shared/data/datasets (or LYRICNN_SHARED)
"""
import collections
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lyricnn import datasets as ds  # noqa: E402


def _share(texts, artist, first=None):
    if first is not None:
        texts = texts.map(lambda s: " ".join(s.split()[:first]))
    return 100.0 * ds.contains_names(texts, artist).mean()


def main():
    raw = ds.load_lyrics_21(mask_artists=False)
    masked = ds.load_lyrics_21()
    any_re = ds._names_re(ds.ARTIST_NAMES)
    print("songs naming their own artist (any alias in lyricnn.datasets.ARTIST_ALIASES), %d songs:" % len(raw))
    print("%-14s %6s %16s %7s" % ("artist", "before", "first 12 words", "after"))
    rows = []
    for artist, g in raw.groupby("artist"):
        after = masked.loc[masked["artist"] == artist, "lyrics"]
        rows.append((artist, _share(g["lyrics"], artist), _share(g["lyrics"], artist, 12), _share(after, artist)))
    for artist, b, b12, a in sorted(rows, key=lambda r: -r[1]):
        print("%-14s %5.0f%% %15.0f%% %6.0f%%" % (artist, b, b12, a))
    owner = {n: a for a, names in ds.ARTIST_ALIASES.items() for n in names}
    others = collections.Counter()
    for artist, text in zip(raw["artist"], raw["lyrics"]):
        for m in any_re.finditer(text):
            n = re.sub(r"\s+", " ", m.group(0).lower())
            if owner.get(n, owner.get(n.replace(" ", "-"))) != artist:
                others[n] += 1
    print("listed names in other artists' songs (features, shout-outs, common words): %s"
          % ", ".join("%s %d" % kv for kv in others.most_common(12)))
    left = ds.contains_names(masked["lyrics"]).mean()
    print("after masking, songs with any listed name: %.1f%%; with 'produced by': %d"
          % (100 * left, masked["lyrics"].str.contains("produced by").sum()))


if __name__ == "__main__":
    main()
