"""Forward+backward of one layer on fastlstm's backends and PyTorch, interleaved, median times.

    python bench/side_by_side.py [--steps 100 --batch 32 --size 128 --repeats 7]

PyTorch (if installed) runs with the same number of threads as Numba (2 on this project's
machines).
"""
import argparse
import time

import numpy as np

import fastlstm

# Between contenders: lets the previous one's spinning threads (OpenBLAS, OpenMP) go idle,
# so that no contender is timed while another's thread pool still holds a core.
PAUSE = 0.25

CELLS = [
    ("LSTM", fastlstm.LSTM, {}, "LSTM", {}),
    ("LSTM+peephole", fastlstm.LSTM, {"peephole": True}, None, {}),
    ("GRU", fastlstm.GRU, {}, "GRU", {}),
    ("GRU(reset_after=False)", fastlstm.GRU, {"reset_after": False}, None, {}),
    ("RNN(tanh)", fastlstm.RNN, {}, "RNN", {"nonlinearity": "tanh"}),
    ("RNN(relu)", fastlstm.RNN, {"nonlinearity": "relu"}, "RNN", {"nonlinearity": "relu"}),
]


def _fastlstm_step(layer, x, dy):
    def run():
        layer(x)
        layer.backward(dy)
    return run


def _torch_step(torch, layer, x, dy):
    xt = torch.from_numpy(x).requires_grad_(True)
    dyt = torch.from_numpy(dy)

    def run():
        layer.zero_grad(set_to_none=True)
        y, _ = layer(xt)
        y.backward(dyt)
    return run


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--no-reference", action="store_true")
    args = parser.parse_args()
    try:
        import torch
        from numba import get_num_threads
        torch.set_num_threads(get_num_threads())
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.steps, args.batch, args.size)).astype(args.dtype)
    dy = rng.standard_normal((args.steps, args.batch, args.size)).astype(args.dtype)
    print(f"forward+backward, T={args.steps} B={args.batch} I=H={args.size} {args.dtype}, "
          f"median of {args.repeats} interleaved runs (ms)")
    print(f"{'cell':<24}{'cpu':>10}{'reference':>11}{'torch':>10}{'cpu/ref':>10}{'cpu/torch':>11}")
    for label, cls, options, torch_name, torch_options in CELLS:
        contenders = {"cpu": _fastlstm_step(cls(args.size, args.size, dtype=args.dtype, seed=0, **options), x, dy)}
        if not args.no_reference:
            contenders["reference"] = _fastlstm_step(
                cls(args.size, args.size, dtype=args.dtype, backend="reference", seed=0, **options), x, dy)
        if torch is not None and torch_name is not None:
            peer = getattr(torch.nn, torch_name)(args.size, args.size, dtype=getattr(torch, args.dtype),
                                                 **torch_options)
            contenders["torch"] = _torch_step(torch, peer, x, dy)
        times = {name: [] for name in contenders}
        for run in contenders.values():
            run()  # compile / warm up
        for _ in range(args.repeats):
            for name, run in contenders.items():
                time.sleep(PAUSE)
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        med = {name: 1e3 * float(np.median(t)) for name, t in times.items()}
        fmt = lambda name: f"{med[name]:>10.2f}" if name in med else f"{'-':>10}"
        ratio = lambda name: f"{med['cpu'] / med[name]:>10.3f}" if name in med else f"{'-':>10}"
        print(f"{label:<24}{fmt('cpu')}{fmt('reference'):>11}{fmt('torch')}{ratio('reference')}{ratio('torch'):>11}")


if __name__ == "__main__":
    main()
