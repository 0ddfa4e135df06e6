"""Command line: python -m fastlstm demo, check and bench."""
import argparse
import sys

DESCRIPTION = "fastlstm's commands: demo (the sunspot forecaster), check (every backend against the " \
              "reference on this machine) and bench (timings against PyTorch and ONNX Runtime)."


def build_parser():
    """The command line's parser, with its ``demo``, ``check`` and ``bench`` subparsers.

    Returns
    -------
    parser, subparsers : argparse.ArgumentParser, dict of name -> argparse.ArgumentParser
    """
    parser = argparse.ArgumentParser(prog="python -m fastlstm", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train an LSTM forecaster on yearly sunspots and plot its forecast",
                               description="Train an LSTM on the yearly sunspot numbers 1700-2008 (NOAA, public "
                                           "domain, shipped in the package), forecast the test years one year "
                                           "ahead, print its error next to naive forecasts' and write a plot.")
    demo.add_argument("--epochs", type=int, default=150, help="passes over the training years (default: %(default)s)")
    demo.add_argument("--hidden-size", type=int, default=32,
                      help="hidden units of the forecaster's LSTM (default: %(default)s)")
    demo.add_argument("--test-years", type=int, default=60,
                      help="last years held out and forecast (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0,
                      help="seed of the initialisation and the shuffling (default: %(default)s)")
    demo.add_argument("--plot", default="sunspots_forecast.png", help="PNG to write (default: %(default)s)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    check = commands.add_parser("check", help="run every available backend against the reference")
    check.add_argument("--steps", type=int, default=20, help="sequence length T (default: %(default)s)")
    check.add_argument("--batch", type=int, default=8, help="batch size B (default: %(default)s)")
    check.add_argument("--input-size", type=int, default=16, help="input features I (default: %(default)s)")
    check.add_argument("--hidden-size", type=int, default=32, help="hidden units H (default: %(default)s)")
    bench = commands.add_parser("bench", help="time the benchmark shapes against PyTorch and ONNX Runtime",
                                description="Time fastlstm on the shapes table of fastlstm/benchmark/shapes.py "
                                            "(or, with --grid, on random shapes) against PyTorch and ONNX "
                                            "Runtime, interleaved, with the same weights, inputs and thread "
                                            "count.")
    from .benchmark.command import add_arguments as add_bench_arguments

    add_bench_arguments(bench)
    return parser, {"demo": demo, "check": check, "bench": bench}


def main(argv=None):
    parser, commands = build_parser()
    demo, bench = commands["demo"], commands["bench"]
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run as run_demo

        try:
            run_demo(args.epochs, args.hidden_size, args.test_years, seed=args.seed, plot=args.plot,
                     progress=not args.no_progress)
        except ValueError as error:
            demo.error(str(error))
        return 0
    if args.command == "check":
        from .check import check as run_check

        ok = run_check(args.steps, args.batch, args.input_size, args.hidden_size)
        return 0 if ok else 1
    if args.command == "bench":
        from .benchmark.command import resolve, run as run_bench

        try:
            resolve(args)
        except ValueError as error:
            bench.error(str(error))
        return run_bench(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
