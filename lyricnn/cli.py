"""Command line: python -m lyricnn demo|..."""
import argparse


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m lyricnn")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("demo", help="run the demo on bundled data")
    args = ap.parse_args(argv)
    if args.cmd == "demo":
        from . import demo
        return demo.main()
    return 0
