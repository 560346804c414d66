#!/usr/bin/python3
"""Time the book's deep network in PyTorch on the CPU, as `cnnctl bench train`
times it in dpcnn: training steps (forward, softmax cross-entropy, backward,
Adam update) and test-mode forward passes at batch 100 on fixed random
images, several rounds, medians reported.

    /usr/bin/python3 scripts/bench_torch.py --threads 2 [--json] [--channels-last]

The network is dpcnn's `deep`: conv3×3×16 (pad 1), relu, conv16, relu, pool,
conv32, relu, conv32 (pad 2), relu, pool, conv64, relu, conv64, relu, pool,
affine 1024→50, relu, dropout 0.5, affine 50→10, dropout 0.5, softmax
cross-entropy; Adam with lr 0.001.
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn as nn


def deep_net() -> nn.Module:
    def conv(cin, cout, pad=1):
        return [nn.Conv2d(cin, cout, 3, padding=pad), nn.ReLU()]

    return nn.Sequential(
        *conv(1, 16), *conv(16, 16), nn.MaxPool2d(2),
        *conv(16, 32), *conv(32, 32, pad=2), nn.MaxPool2d(2),
        *conv(32, 64), *conv(64, 64), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1024, 50), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(50, 10), nn.Dropout(0.5),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per round")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=5, help="rounds; medians are reported")
    ap.add_argument("--channels-last", action="store_true", help="NHWC tensors (oneDNN's preferred layout)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    if args.threads < 1 or args.batch < 1 or args.steps < 1 or args.repeat < 1 or args.warmup < 0:
        ap.error("threads, batch, steps and repeat must be at least 1, warmup at least 0")

    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    net = deep_net()
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), lr=0.001)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(args.batch, 1, 28, 28).contiguous(memory_format=fmt)
    labels = torch.randint(0, 10, (args.batch,))

    def train():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), labels)
        loss.backward()
        opt.step()

    def infer():
        with torch.no_grad():
            net(x)

    net.train()
    for _ in range(args.warmup):
        train()
    net.eval()
    for _ in range(args.warmup):
        infer()

    images = args.batch * args.steps
    train_rounds, infer_rounds, cpu_ratios = [], [], []
    for r in range(args.repeat):
        net.train()
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(args.steps):
            train()
        wall = time.perf_counter() - t0
        cpu_ratios.append((time.process_time() - c0) / wall)
        train_rounds.append(images / wall)
        net.eval()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            infer()
        infer_rounds.append(images / (time.perf_counter() - t0))
        if not args.json:
            print(f"round {r + 1}: train {train_rounds[-1]:.0f} images/s (CPU/wall {cpu_ratios[-1]:.2f}), "
                  f"inference {infer_rounds[-1]:.0f} images/s")

    res = {
        "framework": f"pytorch {torch.__version__}",
        "threads": args.threads,
        "batch": args.batch,
        "steps": args.steps,
        "repeat": args.repeat,
        "channelsLast": args.channels_last,
        "trainImagesPerSec": statistics.median(train_rounds),
        "inferImagesPerSec": statistics.median(infer_rounds),
        "trainCpuPerWall": statistics.median(cpu_ratios),
        "trainRounds": train_rounds,
        "inferRounds": infer_rounds,
    }
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"pytorch {torch.__version__}, deep net, batch {args.batch}, {args.threads} threads"
              f"{', channels-last' if args.channels_last else ''}: median train {res['trainImagesPerSec']:.0f} images/s, "
              f"inference {res['inferImagesPerSec']:.0f} images/s ({args.repeat} rounds of {args.steps} steps)")


if __name__ == "__main__":
    main()
