"""Command line: ``python -m fastlstm check``."""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastlstm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="run every available backend against the reference")
    check.add_argument("--steps", type=int, default=20)
    check.add_argument("--batch", type=int, default=8)
    check.add_argument("--input-size", type=int, default=16)
    check.add_argument("--hidden-size", type=int, default=32)
    args = parser.parse_args(argv)
    if args.command == "check":
        from .check import check as run_check

        ok = run_check(args.steps, args.batch, args.input_size, args.hidden_size)
        return 0 if ok else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
