"""Benchmark the grid generators + sampler against calling F.affine_grid + F.grid_sample directly.

Prints Markdown tables. Every case is timed forward + backward (gradients w.r.t. θ and the
input, as in training). Each ratio is timed pair by pair: within a round the two members of a
pair run back to back, so a machine shared with other work slows numerator and denominator
alike. The tables report medians over rounds, with the quartiles of the ratios.

    python bench/bench_transforms.py                  # CPU, torch's default thread count
    python bench/bench_transforms.py --threads 1
    python bench/bench_transforms.py --device cuda
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import stn
from stn import transforms as T

PAIRS = [  # (case, the baseline it is divided by)
    ("affine", "direct"),
    ("attention", "direct"),
    ("projective", "direct"),
    ("tps16", "direct"),
    ("tps16 grid", "affine grid"),
    ("tps64 grid", "affine grid"),
    ("tps256 grid", "affine grid"),
    ("tps16", "affine"),
    ("tps64", "affine"),
    ("tps256", "affine"),
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _params(name: str, batch: int, device: torch.device, **options) -> tuple[T.Transform, torch.Tensor]:
    """A transform and a non-trivial θ near the identity, requiring grad."""
    tf = T.get(name, **options)
    g = torch.Generator().manual_seed(0)
    p = tf.identity(batch) + 0.05 * torch.randn(batch, tf.n_params, generator=g)
    return tf, p.to(device).requires_grad_()


def make_cases(batch: int, size: int, device: torch.device) -> dict[str, Callable[[], object]]:
    """Name → a closure that runs one forward + backward."""
    hw = (size, size)
    x = torch.rand(batch, 1, size, size, device=device, requires_grad=True)
    gout = torch.rand(batch, 1, size, size, device=device)
    ggrid = torch.rand(batch, size, size, 2, device=device)
    cases: dict[str, Callable[[], object]] = {}

    theta = _params("affine", batch, device)[1].detach().view(batch, 2, 3).clone().requires_grad_()

    def direct():
        grid = F.affine_grid(theta, [batch, 1, *hw], align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return torch.autograd.grad(out, (theta, x), gout)

    cases["direct"] = direct

    def sampled(tf: T.Transform, p: torch.Tensor) -> Callable[[], object]:
        def run():
            out = stn.sample(x, tf.grid(p, hw))
            return torch.autograd.grad(out, (p, x), gout)

        return run

    def grid_only(tf: T.Transform, p: torch.Tensor) -> Callable[[], object]:
        def run():
            return torch.autograd.grad(tf.grid(p, hw), (p,), ggrid)

        return run

    for name in ("affine", "attention", "projective"):
        cases[name] = sampled(*_params(name, batch, device))
    cases["affine grid"] = grid_only(*_params("affine", batch, device))
    for k in (4, 8, 16):
        tf, p = _params("tps", batch, device, grid_size=k)
        cases[f"tps{k * k}"] = sampled(tf, p)
        cases[f"tps{k * k} grid"] = grid_only(tf, p)
    return cases


def _calibrate(fn: Callable[[], object], device: torch.device, target_s: float) -> int:
    """Warm up (caches, allocator, autotuning) and pick how many calls make one timed block."""
    for _ in range(3):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return max(1, round(target_s / max(time.perf_counter() - t0, 1e-6)))


def _time(fn: Callable[[], object], n: int, device: torch.device) -> float:
    """Seconds per call over a block of ``n`` calls."""
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / n


def measure(
    cases: dict[str, Callable[[], object]], device: torch.device, rounds: int, target_s: float
) -> tuple[dict[str, list[float]], dict[tuple[str, str], list[float]]]:
    """Seconds per call of every case, and the ratio of every pair in :data:`PAIRS`, per round.

    Each round visits the pairs in a shuffled order and times the two members of a pair back
    to back, in a random order, so a ratio compares two timings taken under the same load.
    """
    number = {name: _calibrate(fn, device, target_s) for name, fn in cases.items()}
    times: dict[str, list[float]] = {name: [] for name in cases}
    ratios: dict[tuple[str, str], list[float]] = {pair: [] for pair in PAIRS}
    rng = random.Random(0)
    for _ in range(rounds):
        pairs = PAIRS[:]
        rng.shuffle(pairs)
        for pair in pairs:
            order = pair if rng.random() < 0.5 else pair[::-1]
            t = {name: _time(cases[name], number[name], device) for name in order}
            for name, seconds in t.items():
                times[name].append(seconds)
            ratios[pair].append(t[pair[0]] / t[pair[1]])
    return times, ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=60, help="input and output side")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--target", type=float, default=0.05, help="seconds per timed block (at least one call)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    what = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"

    cases = make_cases(args.batch, args.size, device)
    times, ratios = measure(cases, device, args.rounds, args.target)
    ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}

    def ratio(num: str, den: str) -> str:
        r = sorted(ratios[(num, den)])
        q1, q3 = r[len(r) // 4], r[(3 * len(r)) // 4]
        return f"{statistics.median(r):.2f} ({q1:.2f}–{q3:.2f})"

    print(
        f"torch {torch.__version__}, device {device} ({what}), threads {torch.get_num_threads()}, "
        f"batch {args.batch}, 1 channel, {args.size}x{args.size} in and out, forward + backward; "
        f"medians of {args.rounds} interleaved rounds, ratio quartiles in brackets\n"
    )
    print("| family | ms | ratio to F.affine_grid + F.grid_sample | target |")
    print("|---|---:|---:|---|")
    print(f"| direct F.affine_grid + F.grid_sample | {ms['direct']:.1f} | 1 | |")
    for name, label, target in [
        ("affine", "affine", "≤ 1.1"),
        ("attention", "attention", "≤ 1.1"),
        ("projective", "projective", ""),
        ("tps16", "tps (16 points)", ""),
    ]:
        print(f"| {label} | {ms[name]:.1f} | {ratio(name, 'direct')} | {target} |")

    print("\n| TPS control points | grid ms | grid / affine grid | grid + sample ms | grid + sample / affine |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| affine (6 numbers) | {ms['affine grid']:.1f} | 1 | {ms['affine']:.1f} | 1 |")
    for k in (4, 8, 16):
        n = k * k
        target = " (target ≤ 2)" if n == 16 else ""
        print(
            f"| {n} ({k}×{k}) | {ms[f'tps{n} grid']:.1f} | {ratio(f'tps{n} grid', 'affine grid')}{target} "
            f"| {ms[f'tps{n}']:.1f} | {ratio(f'tps{n}', 'affine')} |"
        )


if __name__ == "__main__":
    main()
