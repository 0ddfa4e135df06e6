"""fastlstm's cuda backend against PyTorch's cuDNN RNNs on the DeepBench shapes.

Needs an NVIDIA GPU, numba-cuda and PyTorch with CUDA::

    python bench/cuda_vs_cudnn.py                 # the table, as Markdown
    python bench/cuda_vs_cudnn.py --json out.json # and every sample

Both libraries get the same torch CUDA tensors (fastlstm takes them in place through
``__cuda_array_interface__``), float32, TF32 off. Each sample is the mean time of a block
of back-to-back calls between two CUDA events (so host-side launch overhead counts when the
GPU waits for it); the libraries alternate block by block, and the ratio is the median over
rounds of fastlstm's block time over cuDNN's. Training is forward + backward (dx and every
parameter gradient); inference keeps no tape (``tape=False`` / ``torch.no_grad()``).
"""
import argparse
import json
import platform
import statistics
import sys


from fastlstm.benchmark.shapes import CUDNN_SHAPES, select_shapes

TORCH_CLASSES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def _fastlstm_call(torch, shape):
    from numba import cuda

    steps, batch, hidden, mode = shape.steps, shape.batch, shape.hidden_size, shape.mode
    layer = shape.make_layer(backend="cuda", seed=0)
    layer.params = {name: cuda.to_device(value) for name, value in layer.params.items()}
    x = torch.randn(steps, batch, hidden, device="cuda")
    dy = torch.randn(steps, batch, hidden, device="cuda")
    if mode == "inference":
        return lambda: layer(x, tape=False), layer, x

    def train():
        layer(x)
        layer.backward(dy)
    return train, layer, x


def _torch_call(torch, shape):
    steps, batch, hidden, mode = shape.steps, shape.batch, shape.hidden_size, shape.mode
    module = getattr(torch.nn, TORCH_CLASSES[shape.cell])(shape.input_size, hidden).cuda()
    x = torch.randn(steps, batch, hidden, device="cuda")
    dy = torch.randn(steps, batch, hidden, device="cuda")
    if mode == "inference":
        def infer():
            with torch.no_grad():
                module(x)
        return infer
    x.requires_grad_(True)

    def train():
        y, _ = module(x)
        y.backward(dy)
    return train


def _block_ms(torch, call, calls):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(calls):
        call()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / calls


def _loop_plan(layer, x):
    """The recurrent loop the layer's forward picked, e.g. "persistent: 342 blocks x ..."."""
    layer(x)
    return layer._tape.layer_tapes[0].forward_loop.describe()


def measure(torch, shape, rounds, block_ms):
    ours, layer, x = _fastlstm_call(torch, shape)
    theirs = _torch_call(torch, shape)
    loop = _loop_plan(layer, x)
    for call in (ours, theirs):   # compile, autotune, warm caches
        for _ in range(3):
            call()
    calls = {name: max(1, int(block_ms / _block_ms(torch, call, 3)))
             for name, call in (("fastlstm", ours), ("cudnn", theirs))}
    samples = {"fastlstm": [], "cudnn": []}
    for _ in range(rounds):
        samples["fastlstm"].append(_block_ms(torch, ours, calls["fastlstm"]))
        samples["cudnn"].append(_block_ms(torch, theirs, calls["cudnn"]))
    ratios = [a / b for a, b in zip(samples["fastlstm"], samples["cudnn"])]
    return dict(id=shape.id, cell=shape.label, hidden=shape.hidden_size, batch=shape.batch,
                steps=shape.steps, mode=shape.mode, target=shape.target,
                fastlstm_ms=statistics.median(samples["fastlstm"]),
                cudnn_ms=statistics.median(samples["cudnn"]),
                ratio=statistics.median(ratios), loop=loop, samples=samples)


def profile(torch, shape, calls=20):
    """Print the host-side functions that take fastlstm's time on one shape (cProfile)."""
    import cProfile
    import pstats

    ours, _, _ = _fastlstm_call(torch, shape)
    ours()
    torch.cuda.synchronize()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        ours()
    torch.cuda.synchronize()
    profiler.disable()
    print(f"host profile, {shape.label} {shape.hidden_size}/{shape.batch}/{shape.steps} {shape.mode}, "
          f"{calls} calls:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def environment(torch):
    import numba
    from numba import cuda

    device = cuda.get_current_device()
    import numba_cuda

    return dict(gpu=torch.cuda.get_device_name(), compute_capability=list(device.compute_capability),
                driver=".".join(map(str, cuda.cudadrv.driver.driver.get_version())),
                cuda_runtime=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                torch=torch.__version__, numba=numba.__version__,
                numba_cuda=getattr(numba_cuda, "__version__", "?"), python=platform.python_version())


def markdown(results):
    lines = ["| id | cell | H | B | T | mode | fastlstm ms | cuDNN ms | ratio | target | met | loop |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['id']} | {r['cell']} | {r['hidden']} | {r['batch']} | {r['steps']} | {r['mode']} | "
                     f"{r['fastlstm_ms']:.3f} | {r['cudnn_ms']:.3f} | {r['ratio']:.2f} | ≤ {r['target']:.1f} | "
                     f"{'yes' if r['ratio'] <= r['target'] else 'no'} | {r['loop']} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--block-ms", type=float, default=200.0, help="length of one timed block")
    parser.add_argument("--json", help="also write every sample to this file")
    parser.add_argument("--only", nargs="*", help="shape ids of fastlstm.benchmark.shapes.CUDNN_SHAPES (g1 …)")
    parser.add_argument("--profile", help="also print where the host time of this shape id's calls goes")
    args = parser.parse_args(argv)
    import torch

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    env = environment(torch)
    print(json.dumps(env), flush=True)
    results = []
    for shape in select_shapes(args.only, shapes=CUDNN_SHAPES):
        results.append(measure(torch, shape, args.rounds, args.block_ms))
        r = results[-1]
        print(f"{r['cell']} {r['hidden']}/{r['batch']}/{r['steps']} {r['mode']}: fastlstm "
              f"{r['fastlstm_ms']:.3f} ms, cuDNN {r['cudnn_ms']:.3f} ms, ratio {r['ratio']:.2f}", flush=True)
    print(markdown(results))
    if args.profile is not None:
        profile(torch, select_shapes([args.profile], shapes=CUDNN_SHAPES)[0])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(environment=env, results=results), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
