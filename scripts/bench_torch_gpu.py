#!/usr/bin/env python3
"""Time the book's deep network in PyTorch on one CUDA GPU, as the dpcnn CUDA
backend's BenchmarkTrainDeep times it: training steps (forward, softmax
cross-entropy, backward, Adam update) on fixed random MNIST-sized images, at
several batch sizes, in eager mode with cuDNN in float32 and TF32 off.

    python scripts/bench_torch_gpu.py [--batches 100,1000,10000] [--steps 10] [--json-out FILE]

The network is scripts/bench_torch.py's deep_net (dpcnn's `deep`). Inputs and
labels live on the GPU, so the figure is the GPU's compute alone; dpcnn's
backend copies each layer's tensors between host and device, which this
comparison includes on its side.
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_torch import deep_net  # noqa: E402  (same network as the CPU comparison)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", default="100,1000,10000", help="comma-separated batch sizes")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per round")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3, help="rounds; the median is reported")
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--no-cudnn-benchmark", action="store_true", help="leave cudnn.benchmark off (its autotuner is on by default)")
    ap.add_argument("--json-out", help="also write the results as JSON to this file")
    args = ap.parse_args()
    try:
        batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        ap.error(f"--batches {args.batches!r}: want comma-separated integers")
    if any(b < 1 for b in batches) or args.steps < 1 or args.repeat < 1 or args.warmup < 0:
        ap.error("batches, steps and repeat must be at least 1, warmup at least 0")
    if not torch.cuda.is_available():
        sys.exit("bench_torch_gpu: torch sees no CUDA device")

    # Plain float32 everywhere: no TF32 in convolutions or matrix multiplies.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    dev = torch.device(args.device)
    info = {
        "framework": f"pytorch {torch.__version__}",
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "gpu": torch.cuda.get_device_name(dev),
        "tf32": False,
        "cudnnBenchmark": torch.backends.cudnn.benchmark,
        "steps": args.steps,
        "repeat": args.repeat,
        "results": [],
    }
    print(f"{info['framework']}, CUDA {info['cuda']}, cuDNN {info['cudnn']}, {info['gpu']}, float32, TF32 off, "
          f"cudnn.benchmark {info['cudnnBenchmark']}")

    for batch in batches:
        torch.manual_seed(1)
        net = deep_net().to(dev)
        opt = torch.optim.Adam(net.parameters(), lr=0.001)
        loss_fn = nn.CrossEntropyLoss()
        x = torch.rand(batch, 1, 28, 28, device=dev)
        labels = torch.randint(0, 10, (batch,), device=dev)
        net.train()

        def step():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), labels)
            loss.backward()
            opt.step()

        for _ in range(args.warmup):
            step()
        torch.cuda.synchronize(dev)
        rounds = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            torch.cuda.synchronize(dev)
            rounds.append(batch * args.steps / (time.perf_counter() - t0))
        res = {"batch": batch, "trainImagesPerSec": statistics.median(rounds), "rounds": rounds}
        info["results"].append(res)
        print(f"batch {batch}: median train {res['trainImagesPerSec']:.0f} images/s "
              f"({args.repeat} rounds of {args.steps} steps: {', '.join(f'{r:.0f}' for r in rounds)})")
        del net, opt, x, labels
        torch.cuda.empty_cache()

    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(info, f, indent=2)


if __name__ == "__main__":
    main()
