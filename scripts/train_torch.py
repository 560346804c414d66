#!/usr/bin/python3
"""Train one of dpcnn's MNIST recipes in PyTorch on the CPU and time it to a
test accuracy by the rules of `cnnctl bench accuracy`, so the two can be
compared side by side on the same machine.

    /usr/bin/python3 scripts/train_torch.py --net deep --epochs 20 --target 0.99 --seeds 5
    /usr/bin/python3 scripts/train_torch.py --net simple --epochs 3 --target 0.98 --seeds 3 --json
    /usr/bin/python3 scripts/train_torch.py --net fast-lenet5 --epochs 5 --target 0.99 \\
        --schedule onecycle --lr 0.01 --batch 200 --threads 2 [--channels-last]
    /usr/bin/python3 scripts/train_torch.py --net fast-lenet5 --epochs 1 --train-limit 4000 \\
        --test-limit 1000 --target 0.9   # a quick check

What matches dpcnn:
  * data: the four MNIST IDX files (gzip-compressed or not) from --data (default
    $DPCNN_MNIST_DIR, else the GoMNIST module's data folder), pixels x/255 as
    float32, no mean subtraction;
  * networks: deep (the book "Deep Learning from Scratch" ch. 8 DeepConvNet),
    simple (the book's SimpleConvNet), fast-lenet5, with dpcnn's initialisation
    (He: weights N(0, 2/fan_in), fan_in = C·KH·KW or in-features; simple:
    N(0, 0.01²); biases 0);
  * Adam with betas (0.9, 0.999) and eps 1e-7; --weight-decay is decoupled
    (AdamW: w ← w·(1 − lr·wd) before the Adam step) on the conv and linear
    weights only, not the biases;
  * learning-rate schedules (constant, step, exponential, cosine, onecycle,
    linear warm-up) computed per optimizer step by the formulas of dpcnn's
    model.LRSchedule.Rate and set into every param group before each step;
  * batches: a fresh random permutation of the training set every epoch, the
    last partial batch dropped (floor(N/batch) steps per epoch);
  * timing: the clock starts before the data is read from disk; a run stops at
    the first evaluation (every --eval-every epochs, on the whole test set) whose
    accuracy is ≥ --target, and its time is the wall time until then,
    evaluation included; a run that never reaches it is "not reached" and its
    seconds are the whole run's; over the reached runs: the olympic mean (the
    fastest and the slowest dropped from 3 runs on, the plain mean below), min,
    max, spread (max − min) and sample standard deviation.

What differs (a twin, not a bit-exact copy):
  * dropout: the book (and dpcnn) masks without scaling in training and scales
    by (1 − ratio) at test time; this uses nn.Dropout, inverted dropout (scales
    by 1/(1 − ratio) in training, identity at test time): the same in
    expectation, not the same numbers;
  * the random streams (initial weights, data order, dropout masks) are
    torch's and numpy's, not dpcnn's, so the same --seed does not give the same
    run; float rounding differs too (oneDNN's convolutions and reductions, fused
    multiply-adds, math.cos rather than dpcnn's cosPi);
  * images/s is training images over the wall time spent in training steps
    (evaluation and data loading excluded).
"""

import argparse
import gzip
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn

DEFAULT_MNIST_DIR = "/root/go/pkg/mod/github.com/petar/!go!m!n!i!s!t@v0.0.0-20150320212226-2fbe10d0fa63/data"
NETS = ("deep", "simple", "fast-lenet5")
SCHEDULES = ("constant", "cosine", "onecycle", "step", "exponential")


# ---------------------------------------------------------------- data

def _open(path):
    """Opens path, or path + '.gz', decompressing a gzip file."""
    for p in (path, path + ".gz"):
        if os.path.exists(p):
            with open(p, "rb") as f:
                gz = f.read(2) == b"\x1f\x8b"
            return gzip.open(p, "rb") if gz else open(p, "rb")
    raise FileNotFoundError(f"{path}(.gz): no such file")


def read_idx(path, magic, limit):
    """Reads an IDX file's first limit items (all for 0) as uint8."""
    with _open(path) as f:
        head = np.frombuffer(f.read(4), dtype=">u4")[0]
        if head != magic:
            raise ValueError(f"{path}: magic {head:#x}, want {magic:#x}")
        ndim = magic & 0xFF
        dims = [int(d) for d in np.frombuffer(f.read(4 * ndim), dtype=">u4")]
        n = dims[0] if limit <= 0 else min(limit, dims[0])
        size = int(np.prod(dims[1:], dtype=np.int64))
        data = np.frombuffer(f.read(n * size), dtype=np.uint8)
        if data.size != n * size:
            raise ValueError(f"{path}: truncated")
        return data.reshape([n] + dims[1:])


def load_mnist(folder, train_limit, test_limit):
    """Returns (train images, train labels, test images, test labels): images
    N×1×28×28 float32 in [0, 1], labels int64."""
    def pair(prefix, limit):
        x = read_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte"), 0x803, limit)
        y = read_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte"), 0x801, limit)
        if len(x) != len(y):
            raise ValueError(f"{folder}: {len(x)} {prefix} images but {len(y)} labels")
        x = torch.from_numpy(x.astype(np.float32) / np.float32(255)).unsqueeze(1)
        return x, torch.from_numpy(y.astype(np.int64))

    return (*pair("train", train_limit), *pair("t10k", test_limit))


# ---------------------------------------------------------------- networks

# deep_net is bench_torch.py's: the throughput benchmark and this twin
# train the very same module.
from bench_torch import deep_net  # noqa: E402  (the scripts folder is on sys.path when run as a script)


def simple_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 30, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(30 * 12 * 12, 100), nn.ReLU(), nn.Linear(100, 10),
    )


def fast_lenet5_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 100), nn.ReLU(), nn.Linear(100, 10),
    )


def init_weights(net: nn.Module, he: bool, std: float = 0.01) -> None:
    """He (N(0, 2/fan_in)) or N(0, std²) weights, zero biases."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()  # C·KH·KW, or in-features
            with torch.no_grad():
                m.weight.normal_(0.0, math.sqrt(2.0 / fan_in) if he else std)
                m.bias.zero_()


def make_net(name: str) -> nn.Module:
    if name == "deep":
        net = deep_net()
        init_weights(net, he=True)
    elif name == "simple":
        net = simple_net()
        init_weights(net, he=False, std=0.01)
    elif name == "fast-lenet5":
        net = fast_lenet5_net()
        init_weights(net, he=True)
    else:
        raise ValueError(f"unknown net {name!r}")
    return net


# ---------------------------------------------------------------- schedule

def make_rate(args, steps_per_epoch: int, total: int):
    """Returns rate(s), the learning rate of the optimizer step with 0-based
    index s, by dpcnn's model.LRSchedule.Rate."""
    lr, kind = args.lr, args.schedule
    warm = int(math.floor(args.warmup_epochs * steps_per_epoch + 0.5))  # Go's math.Round (halves away from 0)
    gamma = args.lr_gamma if args.lr_gamma is not None else (0.1 if kind == "step" else 0.9)
    every = args.lr_every if args.lr_every is not None else 1

    def cos_anneal(a, b, pct):
        return b + (a - b) * (1 + math.cos(math.pi * pct)) / 2

    def rate(s: int) -> float:
        s = max(s, 0)
        epoch = s // max(steps_per_epoch, 1)
        if kind == "onecycle":
            initial = lr / 25
            final = initial / 1e4
            up = args.pct_start * total - 1
            end = total - 1
            if s <= up:
                return cos_anneal(initial, lr, s / up) if up > 0 else lr
            if s >= end:
                return final
            return cos_anneal(lr, final, (s - up) / (end - up))
        if kind == "constant":
            r = lr
        elif kind == "step":
            r = lr * gamma ** (epoch // every)
        elif kind == "exponential":
            r = lr * gamma ** epoch
        elif kind == "cosine":
            span = max(total - warm, 1)
            p = min(max(s - warm, 0), span) / span
            # minLR + (lr − minLR)·(1 + cos πp)/2, written from lr down as dpcnn
            # writes it, so the first rate after the warm-up is lr exactly.
            r = lr - (lr - args.min_lr) * (1 - math.cos(math.pi * p)) / 2
        else:
            raise ValueError(f"unknown schedule {kind!r}")
        if s < warm:
            r *= (s + 1) / warm
        return r

    return rate


# ---------------------------------------------------------------- training

def evaluate(net, x, y, fmt) -> float:
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 1000):
            xb = x[i:i + 1000].contiguous(memory_format=fmt)
            correct += int((net(xb).argmax(1) == y[i:i + 1000]).sum())
    return correct / len(x)


def run_once(args, seed: int) -> dict:
    """One seeded run, timed from before the data is read."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    np.random.seed(seed)
    rng = np.random.default_rng(seed)
    xtr, ytr, xte, yte = load_mnist(args.data, args.train_limit, args.test_limit)
    n = len(xtr)
    steps_per_epoch = n // args.batch
    if steps_per_epoch < 1:
        raise SystemExit(f"train_torch: {n} training images, fewer than one batch of {args.batch}")
    total = args.epochs * steps_per_epoch
    rate = make_rate(args, steps_per_epoch, total)

    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    net = make_net(args.net).to(memory_format=fmt)
    if args.weight_decay > 0:
        weights = [p for name, p in net.named_parameters() if name.endswith("weight")]
        biases = [p for name, p in net.named_parameters() if not name.endswith("weight")]
        opt = torch.optim.AdamW([{"params": weights, "weight_decay": args.weight_decay},
                                 {"params": biases, "weight_decay": 0.0}],
                                lr=args.lr, betas=(0.9, 0.999), eps=1e-7)
    else:
        opt = torch.optim.Adam(net.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-7, weight_decay=0)
    loss_fn = nn.CrossEntropyLoss()

    res = {"seed": seed, "reached": False, "seconds": 0.0, "step": 0, "epoch": 0,
           "bestAccuracy": 0.0, "finalAccuracy": 0.0, "imagesPerSec": 0.0}
    step, train_time, images = 0, 0.0, 0
    for epoch in range(1, args.epochs + 1):
        net.train()
        perm = torch.from_numpy(rng.permutation(n))
        loss_sum = 0.0
        e0 = time.perf_counter()
        for b in range(steps_per_epoch):
            idx = perm[b * args.batch:(b + 1) * args.batch]
            xb = xtr[idx].contiguous(memory_format=fmt)
            r = rate(step)
            for g in opt.param_groups:
                g["lr"] = r
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xb), ytr[idx])
            loss.backward()
            opt.step()
            loss_sum += float(loss)
            step += 1
        train_time += time.perf_counter() - e0
        images += steps_per_epoch * args.batch
        line = f"seed {seed} epoch {epoch}/{args.epochs}: loss {loss_sum / steps_per_epoch:.4f}"
        if epoch % args.eval_every != 0 and epoch != args.epochs:
            print(f"{line}, lr {rate(step - 1):.3g}, {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
            continue
        acc = evaluate(net, xte, yte, fmt)
        now = time.perf_counter() - t0
        res["bestAccuracy"] = max(res["bestAccuracy"], acc)
        res["finalAccuracy"] = acc
        res["epoch"], res["step"] = epoch, step
        print(f"{line}, test accuracy {acc:.4f}, lr {rate(step - 1):.3g}, {now:.1f} s", file=sys.stderr, flush=True)
        if acc >= args.target:
            res["reached"] = True
            break
    res["seconds"] = time.perf_counter() - t0
    res["imagesPerSec"] = images / train_time if train_time > 0 else 0.0
    return res


def summarize(runs) -> dict:
    times = sorted(r["seconds"] for r in runs if r["reached"])
    s = {"reached": len(times), "notReached": len(runs) - len(times),
         "olympicMeanSeconds": 0.0, "minSeconds": 0.0, "maxSeconds": 0.0,
         "spreadSeconds": 0.0, "stdDevSeconds": 0.0}
    if times:
        kept = times[1:-1] if len(times) >= 3 else times
        s["olympicMeanSeconds"] = statistics.fmean(kept)
        s["minSeconds"], s["maxSeconds"] = times[0], times[-1]
        s["spreadSeconds"] = times[-1] - times[0]
        s["stdDevSeconds"] = statistics.stdev(times) if len(times) > 1 else 0.0
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("DPCNN_MNIST_DIR") or DEFAULT_MNIST_DIR,
                    help="folder of the MNIST IDX files (default $DPCNN_MNIST_DIR, else GoMNIST's)")
    ap.add_argument("--train-limit", type=int, default=0, help="first N training images (0: all)")
    ap.add_argument("--test-limit", type=int, default=0, help="first N test images (0: all)")
    ap.add_argument("--net", choices=NETS, default="deep")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.001, help="Adam's rate; the schedule's base, onecycle's peak")
    ap.add_argument("--weight-decay", type=float, default=0.0, help="decoupled (AdamW) decay of the weights")
    ap.add_argument("--schedule", choices=SCHEDULES, default="constant")
    ap.add_argument("--warmup-epochs", type=float, default=0.0, help="linear warm-up (not onecycle)")
    ap.add_argument("--min-lr", type=float, default=0.0, help="cosine: the rate at the end")
    ap.add_argument("--pct-start", type=float, default=0.3, help="onecycle: share of the steps spent rising")
    ap.add_argument("--lr-every", type=int, default=None, help="step: epochs between decays (default 1)")
    ap.add_argument("--lr-gamma", type=float, default=None, help="step, exponential: decay factor (default 0.1, 0.9)")
    ap.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs (and after the last)")
    ap.add_argument("--target", type=float, default=0.99, help="test accuracy to reach")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=1, help="runs: --seed, --seed+1, …")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--channels-last", action="store_true", help="NHWC tensors (oneDNN's preferred layout)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    if args.epochs < 1 or args.batch < 1 or args.seeds < 1 or args.threads < 1 or args.eval_every < 1:
        ap.error("epochs, batch, seeds, threads and eval-every must be at least 1")
    if not (0 < args.target <= 1):
        ap.error(f"--target {args.target}: want a test accuracy in (0, 1]")
    if not (args.lr > 0):
        ap.error("--lr must be positive")
    if not (0 <= args.weight_decay < 1):
        ap.error("--weight-decay must be in [0, 1)")
    if not (0 < args.pct_start < 1):
        ap.error("--pct-start must be in (0, 1)")
    if args.warmup_epochs < 0:
        ap.error("--warmup-epochs must be 0 or more")
    if args.warmup_epochs > 0 and args.schedule == "onecycle":
        ap.error("--warmup-epochs does not apply to onecycle (it rises over --pct-start of the steps)")
    if args.min_lr < 0 or (args.min_lr > 0 and args.min_lr >= args.lr):
        ap.error("--min-lr must be at least 0 and below --lr")
    if args.lr_every is not None and args.lr_every < 1:
        ap.error("--lr-every must be at least 1")
    if args.lr_gamma is not None and not (0 < args.lr_gamma <= 1):
        ap.error("--lr-gamma must be in (0, 1]")

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)

    runs = [run_once(args, args.seed + i) for i in range(args.seeds)]
    summ = summarize(runs)
    if args.json:
        out = {"framework": "pytorch", "torch": torch.__version__, "threads": args.threads, "net": args.net,
               "target": args.target, "epochs": args.epochs, "batch": args.batch, "lr": args.lr,
               "schedule": args.schedule, "channelsLast": args.channels_last, "runs": runs, **summ}
        print(json.dumps(out, indent=2))
        return
    print(f"pytorch {torch.__version__}, {args.threads} threads: {args.net} to test accuracy {args.target:.4f}\n")
    print(f"{'seed':>6}  {'reached':>7}  {'seconds':>8}  {'epoch':>5}  {'best acc':>8}  {'final acc':>9}  {'images/s':>8}")
    for r in runs:
        print(f"{r['seed']:>6}  {str(r['reached']).lower():>7}  {r['seconds']:>8.1f}  {r['epoch']:>5}  "
              f"{r['bestAccuracy']:>8.4f}  {r['finalAccuracy']:>9.4f}  {r['imagesPerSec']:>8.0f}")
    print(f"\n{summ['reached']} of {len(runs)} runs reached {args.target:.4f}; olympic mean "
          f"{summ['olympicMeanSeconds']:.1f} s (min {summ['minSeconds']:.1f}, max {summ['maxSeconds']:.1f}, "
          f"spread {summ['spreadSeconds']:.1f}, stddev {summ['stdDevSeconds']:.1f}); not reached: {summ['notReached']}")


if __name__ == "__main__":
    main()
