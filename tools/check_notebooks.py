"""Check that every notebooks/*.ipynb and its paired py:percent source (jupytext) hold the same cells.

    python tools/check_notebooks.py [DIR]     # exit 0 when all pairs agree, 1 otherwise (DIR: notebooks/)

The .py is read with jupytext (as `jupytext --to ipynb` would convert it) and compared with the .ipynb
cell by cell: cell type and source only. Outputs, execution counts, cell ids and metadata are not
compared, so a notebook committed with its outputs still passes. Also checked: every .ipynb has its .py
and vice versa, and the .ipynb carries the pairing metadata (jupytext.formats = "ipynb,py:percent").

To bring a pair back in sync after editing one side: `jupytext --sync notebooks/NAME.ipynb` (it takes the
cells from the file modified last and keeps the .ipynb's outputs).
"""
import difflib
import pathlib
import sys

FORMATS = "ipynb,py:percent"
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _cells(nb):
    return [(c.cell_type, c.source) for c in nb.cells]


def _describe(name, a, b):
    """The first differing cell of two [(type, source)] lists, as a short unified diff."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            if x[0] != y[0]:
                return "%s: cell %d is %s in the .ipynb but %s in the .py" % (name, i, x[0], y[0])
            diff = difflib.unified_diff(x[1].splitlines(), y[1].splitlines(), "%s.ipynb cell %d" % (name, i),
                                        "%s.py cell %d" % (name, i), lineterm="", n=1)
            return "\n".join(diff)
    return "%s: %d cells in the .ipynb, %d in the .py" % (name, len(a), len(b))


def check(directory):
    """A list of problems (empty when every pair is in sync)."""
    import jupytext
    import nbformat

    directory = pathlib.Path(directory)
    problems = []
    ipynbs = {p.stem: p for p in directory.glob("*.ipynb")}
    pys = {p.stem: p for p in directory.glob("*.py")}
    if not ipynbs:
        problems.append("no notebooks in %s" % directory)
    for stem in sorted(set(ipynbs) - set(pys)):
        problems.append("%s.ipynb has no paired %s.py (jupytext --set-formats %s %s)"
                        % (stem, stem, FORMATS, ipynbs[stem]))
    for stem in sorted(set(pys) - set(ipynbs)):
        problems.append("%s.py has no paired %s.ipynb (jupytext --set-formats %s %s)" % (stem, stem, FORMATS, pys[stem]))
    for stem in sorted(set(ipynbs) & set(pys)):
        nb = nbformat.read(str(ipynbs[stem]), as_version=4)
        text = jupytext.read(str(pys[stem]), fmt="py:percent")
        fmt = nb.metadata.get("jupytext", {}).get("formats")
        if fmt != FORMATS:
            problems.append("%s.ipynb: jupytext.formats is %r, expected %r" % (stem, fmt, FORMATS))
        a, b = _cells(nb), _cells(text)
        if a != b:
            problems.append("%s: the .ipynb and the .py differ (edit one side, then jupytext --sync %s)\n%s"
                            % (stem, ipynbs[stem], _describe(stem, a, b)))
    return problems


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    directory = pathlib.Path(argv[0]) if argv else ROOT / "notebooks"
    try:
        problems = check(directory)
    except ImportError as e:
        print("check_notebooks: %s (pip install -r requirements/test.txt)" % e, file=sys.stderr)
        return 2
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 1
    print("notebooks in sync: %s" % ", ".join(sorted(p.name for p in directory.glob("*.ipynb"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
