"""Run the notebooks in full and save them with their outputs (`make notebooks-run`).

    python tools/run_notebooks.py                  # all of notebooks/*.ipynb, one after the other
    python tools/run_notebooks.py 01 05            # those whose names start with 01 or 05
    python tools/run_notebooks.py --clean          # clean the saved outputs again, without running
    LYRICNN_NB_DEVICE=cuda python tools/run_notebooks.py   # on a GPU (make notebooks-run DEVICE=cuda)

Each notebook runs with nbclient in notebooks/ (its cwd), with this interpreter as the kernel and the checkout
first on PYTHONPATH, progress as plain lines (LYRICNN_PROGRESS=lines) and matplotlib's inline backend. The
outputs are then cleaned so that they render on GitHub and say nothing about the machine but what the
notebooks print on purpose: no widget state, no execution timestamps, no carriage-return progress redraws,
and the checkout's absolute path replaced by a relative one. The .py pairs are unchanged (outputs live in the
.ipynb only; tools/check_notebooks.py ignores them). LYRICNN_NB_SMALL=1 gives the quick runs instead.
"""
import os
import pathlib
import re
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
CELL_TIMEOUT = int(os.environ.get("LYRICNN_NB_CELL_TIMEOUT", "3600"))


def _bases():
    """(absolute path, what to print instead): the shared data (as found and resolved), the checkout, its
    parent; longest first."""
    out = [(str(ROOT), "."), (str(ROOT.parent), "..")]
    shared = pathlib.Path(os.environ.get("LYRICNN_SHARED", ROOT.parent / "shared" / "data"))
    for p in (shared, shared.resolve()):
        out.append((str(p), "../shared/data"))
    return sorted(set(out), key=lambda t: -len(t[0]))


def _clean_text(s):
    """One output text: the last state of each carriage-return redraw, the checkout's path made relative."""
    s = "\n".join(line.rsplit("\r", 1)[-1] if "\r" in line.rstrip("\r") else line.rstrip("\r")
                  for line in s.split("\n"))
    for base, rel in _bases():
        s = s.replace(base + os.sep, rel + os.sep).replace(base, rel)
    return re.sub(r"/(?:home|Users|root)/[^\s'\"]+/", "<path>/", s)


def clean(nb):
    """Widget state, timings and machine paths out of a executed notebook (in place)."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for k in ("collapsed", "scrolled"):
            cell.metadata.pop(k, None)
        if cell.cell_type != "code":
            continue
        if cell.source.strip() == "nb.done()":   # its printed line only (older setups also returned the seconds)
            cell.outputs = [o for o in cell.get("outputs", []) if o.output_type == "stream"]
        outs = []
        for o in cell.get("outputs", []):
            if o.output_type == "stream":
                o.text = _clean_text(o.text)
            elif o.output_type in ("display_data", "execute_result"):
                o.data.pop("application/vnd.jupyter.widget-view+json", None)
                if not o.data:
                    continue
                if "text/plain" in o.data:
                    o.data["text/plain"] = _clean_text(o.data["text/plain"])
                if "text/html" in o.data:
                    o.data["text/html"] = _clean_text(o.data["text/html"])
            elif o.output_type == "error":
                o.traceback = [_clean_text(t) for t in o.traceback]
            outs.append(o)
        cell.outputs = outs
    return nb


def run(path, small=False):
    import nbclient
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    env = {"LYRICNN_PROGRESS": "lines", "MPLBACKEND": "module://matplotlib_inline.backend_inline",
           "PYTHONPATH": os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
           "PYDEVD_DISABLE_FILE_VALIDATION": "1", "LYRICNN_NB_SMALL": "1" if small else "0"}
    os.environ.update(env)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(NB_DIR)}})
    t0 = time.time()
    try:
        client.execute()
    finally:
        clean(nb)
        nbformat.write(nb, str(path))
    return time.time() - t0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--clean"]:   # clean the saved outputs again, without running
        import nbformat

        for p in sorted(NB_DIR.glob("*.ipynb")):
            if not argv[1:] or any(p.name.startswith(a) for a in argv[1:]):
                nbformat.write(clean(nbformat.read(str(p), as_version=4)), str(p))
        return 0
    small = os.environ.get("LYRICNN_NB_SMALL", "0") not in ("", "0")
    names = sorted(p for p in NB_DIR.glob("*.ipynb") if not argv or any(p.name.startswith(a) for a in argv))
    if not names:
        print("no notebooks match %s" % argv, file=sys.stderr)
        return 2
    failed = []
    for p in names:
        print("running %s (%s) ..." % (p.name, "small" if small else "full"), flush=True)
        try:
            s = run(p, small)
            print("  %s: %.1f min" % (p.name, s / 60), flush=True)
        except Exception as e:  # the notebook is saved with its outputs up to the failing cell
            failed.append(p.name)
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else "(no message)"
            print("  %s FAILED: %s: %s" % (p.name, type(e).__name__, msg), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
