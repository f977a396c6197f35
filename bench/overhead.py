"""Speed against the anchors: the transformer's overhead, and where ``predict`` spends its time.

1. **ST overhead** (the paper: the ST-CNN is 6% slower than the CNN; target ≤ 10%): for each
   canvas, the ST-CNN (affine, the zoo's architecture) against the same CNN without the ST
   reading the same canvas (the zoo's ``*-cnn`` baseline), at batch 1 and 256, forward
   (inference) and forward+backward (training). Also the ST alone (localisation net, grid,
   sampler), and the ST-CNN over its own classifier on the crop. The two models of a pair are
   timed interleaved, so a busy machine slows both alike; each figure is the median of rounds.
   On the CPU with one torch thread (the default, as the app serves) the clock is the process's
   CPU time, which leaves out the time spent waiting for a core on a shared machine. Freed memory
   is kept for the next step, as ``stn train`` keeps it (:mod:`stn.memory`; ``--page-faults`` to
   time with glibc's defaults, under which whichever model runs first pays fresh pages).
   Also batch 1 as the app serves it (``--part served``): ``predict`` eager and through the frozen
   TorchScript copy the app uses on the CPU (``STClassifier.trace_for_inference``).
2. **predict end to end**: decode, pre-processing, inference, the baseline CNN's reading and the
   figures the app draws (:mod:`stn.viz`), per image, for real upload-style images; so we know
   where time goes.
3. **GPU** (when there is one): batch-256 inference images/s and the same ratios.

    python bench/overhead.py                # all parts, 1 torch thread (as the app serves)
    python bench/overhead.py --quick        # fewer rounds
    python bench/overhead.py --part st      # only the overhead table
    python bench/overhead.py --part served  # batch-1 predict, eager and TorchScript-frozen
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from stn.localization import light_options
from stn.memory import keep_freed_memory
from stn.model import ModelConfig, STClassifier
from stn.train import cpu_name

CANVASES = {"r": (28, 28), "rts": (42, 42), "wild": (56, 56)}
# paper: the zoo's localisation CNN; light: ``--loc-net light``; fc: ``--localization fc`` (the paper's ST-FCN net,
# two 32-unit hidden layers on the flattened canvas)
LOC_NETS = ("paper", "light", "fc")


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}; torch {torch.__version__}"
    return f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads; torch {torch.__version__}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- 1. ST overhead


def _canvas(spec: str) -> tuple[str, tuple[int, int], int]:
    """``"r"`` or ``"r:20"`` (the transformer's output 20×20 instead of 28×28) → (dataset, canvas, crop side)."""
    dataset, _, crop = spec.partition(":")
    if dataset not in CANVASES:
        raise SystemExit(f"--datasets: unknown canvas {dataset!r}; choose from {', '.join(CANVASES)} (NAME or NAME:CROP)")
    return dataset, CANVASES[dataset], int(crop) if crop else 28


def _label(spec: str) -> str:
    _, (h, w), crop = _canvas(spec)
    return f"{spec.partition(':')[0]} {h}×{w}" + (f" → {crop}×{crop}" if crop != 28 else "")


def _models(spec: str, device: torch.device, loc_net: str = "paper") -> dict[str, torch.nn.Module]:
    dataset, size, crop = _canvas(spec)
    torch.manual_seed(0)
    if loc_net not in LOC_NETS:
        raise SystemExit(f"--loc-nets: unknown localisation net {loc_net!r}; choose from {', '.join(LOC_NETS)}")
    loc_options = light_options((1, *size)) if loc_net == "light" else {}
    st = STClassifier(ModelConfig(dataset=dataset, input_size=size, transform="affine", loc_options=loc_options,
                                  localization="fc" if loc_net == "fc" else "cnn", crop_size=(crop, crop))).to(device)
    cnn = STClassifier(ModelConfig(dataset=dataset, input_size=size, transform=None)).to(device)
    return {"st-cnn": st, "cnn": cnn, "st": st.st, "loc": st.st.localization, "cls-on-crop": st.classifier}


def _step(model: torch.nn.Module, x: torch.Tensor, backward: bool) -> None:
    if backward:
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        out.float().square().mean().backward()
    else:
        with torch.inference_mode():
            model(x)


def _time_pair(models: dict[str, torch.nn.Module], inputs: dict[str, torch.Tensor], backward: bool, iters: int, rounds: int,
               device: torch.device) -> dict[str, float]:
    """Median seconds per call of each model, measured round-robin (A, B, C, A, B, C, ...)."""
    for m in models.values():
        m.train(backward)
        for _ in range(max(2, iters // 5)):  # warm-up (allocator, oneDNN kernels, cuDNN autotune)
            _step(m, inputs[_input_key(m, models)], backward)
            m.zero_grad(set_to_none=True)
    # On the CPU, the process's CPU time: on a shared machine it leaves out the time spent waiting
    # for a core (with one torch thread, CPU time is the work done). On a GPU, wall time.
    clock = time.perf_counter if device.type == "cuda" or torch.get_num_threads() > 1 else time.process_time
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for k, m in models.items():
            x = inputs[_input_key(m, models)]
            _sync(device)
            t0 = clock()
            for _ in range(iters):
                _step(m, x, backward)
            _sync(device)
            times[k].append((clock() - t0) / iters)
            m.zero_grad(set_to_none=True)
    return {k: statistics.median(v) for k, v in times.items()}


def _input_key(m: torch.nn.Module, models: dict[str, torch.nn.Module]) -> str:
    return "crop" if m is models.get("cls-on-crop") else "canvas"


def st_overhead(args: argparse.Namespace, device: torch.device) -> list[dict]:
    rows = []
    for dataset, loc_net in [(d, n) for d in args.datasets for n in args.loc_nets]:
        models = _models(dataset, device, loc_net)
        for batch in args.batches:
            inputs = {
                "canvas": torch.rand(batch, 1, *_canvas(dataset)[1], device=device),
                # channels-last, as the ST-CNN hands its crops to the classifier (STClassifier.forward_all)
                "crop": torch.rand(batch, 1, _canvas(dataset)[2], _canvas(dataset)[2], device=device).contiguous(memory_format=torch.channels_last),
            }
            for backward in (False, True):
                iters = max(1, int(args.budget / (batch if device.type == "cpu" else 8)))
                t = _time_pair(models, inputs, backward, iters, args.rounds, device)
                rows.append({
                    "canvas": _label(dataset), "loc_net": loc_net,
                    "batch": batch, "pass": "fwd+bwd" if backward else "fwd",
                    **{f"{k}_ms": 1000 * v for k, v in t.items()},
                    "overhead": t["st-cnn"] / t["cnn"] - 1,
                    "st_share": t["st"] / t["st-cnn"], "loc_share_of_st": t["loc"] / t["st"],
                    "vs_cls_on_crop": t["st-cnn"] / t["cls-on-crop"] - 1,
                    "st_cnn_img_s": batch / t["st-cnn"], "cnn_img_s": batch / t["cnn"],
                })
                print(_st_row(rows[-1]), file=sys.stderr, flush=True)
    return rows


def _st_row(r: dict) -> str:
    return (f"| {r['canvas']} | {r['loc_net']} | {r['batch']} | {r['pass']} | {r['cnn_ms']:.3f} | {r['st-cnn_ms']:.3f} | "
            f"{100 * r['overhead']:+.1f}% | {r['st_ms']:.3f} | {100 * r['st_share']:.0f}% | {100 * r['loc_share_of_st']:.0f}% | {r['cls-on-crop_ms']:.3f} | "
            f"{100 * r['vs_cls_on_crop']:+.1f}% | {r['st_cnn_img_s']:,.0f} |")


def st_table(rows: list[dict]) -> str:
    head = ("| canvas | loc net | batch | pass | CNN ms | ST-CNN ms | ST-CNN vs CNN | ST alone ms | ST share of ST-CNN | loc net share of ST "
            "| classifier on crop ms | ST-CNN vs its classifier | ST-CNN img/s |\n|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    return head + "\n" + "\n".join(_st_row(r) for r in rows)


def served_batch1(args: argparse.Namespace) -> list[dict]:
    """Batch 1 as the app serves it: ``STClassifier.predict``, eager and through the frozen TorchScript
    copy (``trace_for_inference``), the ST-CNN against the CNN on the same canvas. CPU time per call."""
    rows = []
    for dataset, loc_net in [(d, n) for d in args.datasets for n in args.loc_nets]:
        models = _models(dataset, torch.device("cpu"), loc_net)
        pair = {"st-cnn": models["st-cnn"].eval(), "cnn": models["cnn"].eval()}
        x = torch.rand(1, 1, *_canvas(dataset)[1])
        iters = max(20, int(args.budget / 2))
        row: dict = {"canvas": _label(dataset), "loc_net": loc_net}
        for mode in ("eager", "traced"):
            for m in pair.values():
                if mode == "traced" and not m.trace_for_inference():
                    row["traced_failed"] = True
                for _ in range(20):
                    m.predict(x)
            times: dict[str, list[float]] = {k: [] for k in pair}
            for _ in range(args.rounds):
                for k, m in pair.items():
                    t0 = time.process_time()
                    for _ in range(iters):
                        m.predict(x)
                    times[k].append((time.process_time() - t0) / iters)
            for k, v in times.items():
                row[f"{k}_{mode}_ms"] = 1000 * statistics.median(v)
            row[f"overhead_{mode}"] = row[f"st-cnn_{mode}_ms"] / row[f"cnn_{mode}_ms"] - 1
        rows.append(row)
    return rows


def served_table(rows: list[dict]) -> str:
    lines = [("| canvas | loc net | CNN eager ms | ST-CNN eager ms | ST-CNN vs CNN, eager | CNN traced ms | ST-CNN traced ms "
              "| ST-CNN vs CNN, traced |"), "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['canvas']} | {r['loc_net']} | {r['cnn_eager_ms']:.3f} | {r['st-cnn_eager_ms']:.3f} | "
                     f"{100 * r['overhead_eager']:+.1f}% | {r['cnn_traced_ms']:.3f} | {r['st-cnn_traced_ms']:.3f} | "
                     f"{100 * r['overhead_traced']:+.1f}% |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- 2. predict end to end


def upload_images(n: int) -> list[tuple[str, bytes]]:
    """Upload-style files as bytes: sketches (RGBA), font digits on photographed paper (JPEG), MNIST on paper (PNG)."""
    out: list[tuple[str, bytes]] = []
    try:
        from stn.uploads import font_images, sketch_images

        for i, (img, _) in enumerate(sketch_images(n // 3, seed=1, root="bundled")):  # as the paper ones below
            buf = io.BytesIO()
            img.save(buf, "PNG")
            out.append((f"sketch{i}.png", buf.getvalue()))
        for i, (img, _) in enumerate(font_images(1, seed=1)):
            if i >= n // 3:
                break
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=90)
            out.append((f"font{i}.jpg", buf.getvalue()))
    except ImportError:
        pass
    from PIL import Image

    from stn.data import load_mnist

    x, _ = load_mnist("bundled", train=False)
    rng = np.random.default_rng(0)
    i = 0
    while len(out) < n:
        side = int(rng.integers(200, 600))
        d = Image.fromarray((255 - x[i, 0].numpy() * 255).astype(np.uint8)).resize((side // 2, side // 2), Image.Resampling.BICUBIC)
        page = Image.new("L", (side, side), 235)
        page.paste(d, (side // 4, side // 4))
        buf = io.BytesIO()
        page.convert("RGB").save(buf, "PNG")
        out.append((f"paper{i}.png", buf.getvalue()))
        i += 1
    return out


def predict_breakdown(args: argparse.Namespace) -> dict:
    import stn
    from stn import viz
    from stn.preprocess import open_image, prepare
    from stn.zoo import baseline_for, list_models

    names = list_models()
    if not names:
        return {"skipped": f"no models in {stn.zoo.models_dir()}"}
    name = args.model or (stn.DEFAULT_MODEL if stn.DEFAULT_MODEL in names else names[0])
    model = stn.load_model(name, device="cpu")
    base_name = baseline_for(name)
    base = stn.load_model(base_name, device="cpu") if base_name else None
    for m in (model, base):  # as the app reads one image on the CPU: through the frozen TorchScript copy
        if m is not None:
            m.trace_for_inference(batch=1)
    cfg = model.config
    images = upload_images(args.images)
    keys = ("decode", "preprocess", "inference", "baseline", "figures", "serialise")
    stages: dict[str, list[float]] = {k: [] for k in keys}  # wall ms
    cpu: dict[str, list[float]] = {k: [] for k in keys}  # CPU ms of this process (robust on a busy machine)
    refused = 0
    import orjson

    def clock() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    for rep in range(args.repeat + 1):  # the first pass warms up and is not counted
        for fname, data in images:
            marks = [clock()]
            try:
                img = open_image(data, fname)
            except stn.ImageError:
                refused += rep == 0
                continue
            marks.append(clock())
            # the decoded picture: prepare() would decode the bytes again (the app decodes once)
            prep = prepare(img, tuple(cfg.input_size), float(cfg.digit_size), name=fname)
            marks.append(clock())
            pred = model.predict(prep.tensor)
            marks.append(clock())
            if base is not None:
                base.predict(prep.tensor)
            marks.append(clock())
            params = [p[0].tolist() for p in pred.params]
            # what the app's predict draws: the grid figure, the reading panel (its crops as inline
            # PNGs, the class bars), θ as HTML
            fig = viz.grid_figure(prep.tensor[0, 0].numpy(), cfg.transform, params, tuple(cfg.crop_size))
            probs, order = pred.probs[0], pred.probs[0].argsort(descending=True)[:5]
            top = {str(int(i)): float(probs[i]) for i in order}
            panel = viz.reading_html(next(iter(top)), top, [c[0, 0].numpy() for c in pred.crops])
            html = viz.theta_html(cfg.transform, params, tuple(cfg.input_size), cfg.transform_options)
            marks.append(clock())
            orjson.dumps(fig, option=orjson.OPT_SERIALIZE_NUMPY)  # what the app sends for the plot
            len(html) + len(panel)
            marks.append(clock())
            if rep:
                for i, k in enumerate(keys):
                    stages[k].append(1000 * (marks[i + 1][0] - marks[i][0]))
                    cpu[k].append(1000 * (marks[i + 1][1] - marks[i][1]))
    med = {k: statistics.median(v) if v else 0.0 for k, v in stages.items()}
    med_cpu = {k: statistics.median(v) if v else 0.0 for k, v in cpu.items()}
    total, total_cpu = sum(med.values()), sum(med_cpu.values())
    return {
        "model": name, "baseline": base_name, "images": len(images), "refused": refused, "repeat": args.repeat,
        "median_ms": med, "p95_ms": {k: float(np.percentile(v, 95)) if v else 0.0 for k, v in stages.items()},
        "median_cpu_ms": med_cpu, "total_ms": total, "total_cpu_ms": total_cpu,
        "end_to_end_over_inference": total / med["inference"] if med["inference"] else float("nan"),
        "end_to_end_over_inference_cpu": total_cpu / med_cpu["inference"] if med_cpu["inference"] else float("nan"),
    }


def predict_table(r: dict) -> str:
    if "skipped" in r:
        return f"(predict breakdown skipped: {r['skipped']})"
    names = {
        "decode": "decode the file (open_image)", "preprocess": "pre-process (ink map, crop, resize)",
        "inference": f"inference ({r['model']}, batch 1)", "baseline": f"baseline CNN reading ({r['baseline'] or 'none'})",
        "figures": "figures (grid_figure, reading_html with the crops' PNGs, theta_html)", "serialise": "serialise (figure JSON)",
    }
    lines = ["| stage | median ms | p95 ms | median CPU ms | share (CPU) |", "|---|---:|---:|---:|---:|"]
    for k, label in names.items():
        lines.append(f"| {label} | {r['median_ms'][k]:.2f} | {r['p95_ms'][k]:.2f} | {r['median_cpu_ms'][k]:.2f} | "
                     f"{100 * r['median_cpu_ms'][k] / r['total_cpu_ms']:.0f}% |")
    lines.append(f"| **end to end** | **{r['total_ms']:.2f}** | | **{r['total_cpu_ms']:.2f}** | 100% |")
    lines.append("")
    lines.append(f"end to end / inference alone: **{r['end_to_end_over_inference_cpu']:.1f}×** in CPU time "
                 f"({r['end_to_end_over_inference']:.1f}× in wall time); {r['images']} upload-style images, "
                 f"median of {r['repeat']} passes; {r['refused']} refused")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="ST-CNN overhead and predict breakdown")
    ap.add_argument("--part", choices=["st", "served", "predict", "all"], default="all")
    ap.add_argument("--datasets", default="r,rts,wild",
                    help="canvases for the overhead table; NAME:CROP for a transformer whose output is CROP×CROP (e.g. r:20)")
    ap.add_argument("--loc-nets", default="paper,light", help="localisation nets to time: paper (the zoo's), light (--loc-net light), fc (--localization fc)")
    ap.add_argument("--batches", default="1,256")
    ap.add_argument("--rounds", type=int, default=5, help="timing rounds per model (median)")
    ap.add_argument("--budget", type=float, default=512, help="images per timing round (sets iterations)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1, as app.py serves; 0 = torch's choice, which spins and stalls on shared cores)")
    ap.add_argument("--images", type=int, default=30, help="upload-style images for the predict breakdown")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: both when a GPU is present)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--page-faults", action="store_true", help="leave glibc's malloc as it is (freed batches go back to the OS)")
    args = ap.parse_args(argv)
    kept = not args.page_faults and keep_freed_memory()
    args.datasets = args.datasets.split(",")
    args.loc_nets = args.loc_nets.split(",")
    args.batches = [int(b) for b in args.batches.split(",")]
    if args.quick:
        args.rounds, args.budget, args.images, args.repeat = 3, 256, 12, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device(args.device)] if args.device else [torch.device("cpu")] + (
        [torch.device("cuda")] if torch.cuda.is_available() else [])
    out: dict = {"date": _dt.datetime.now().isoformat(timespec="minutes"), "runs": []}
    out["freed_memory_kept"] = kept
    text = [f"# bench/overhead.py, {out['date']}" + (" (freed memory kept, stn.memory)" if kept else "")]
    for dev in devices:
        if args.part in ("st", "all"):
            rows = st_overhead(args, dev)
            out["runs"].append({"device": dev.type, "machine": machine(dev), "st": rows})
            text += ["", f"## ST overhead on {machine(dev)}", "", st_table(rows)]
    if args.part in ("served", "all"):
        rows = served_batch1(args)
        out["served"] = rows
        text += ["", f"## batch 1 as the app serves it (predict), CPU: {machine(torch.device('cpu'))}", "", served_table(rows)]
    if args.part in ("predict", "all"):
        r = predict_breakdown(args)
        out["predict"] = r
        text += ["", f"## predict end to end, CPU: {machine(torch.device('cpu'))}", "", predict_table(r)]
    if not torch.cuda.is_available():
        text += ["", "(no GPU on this machine: the GPU rows are not measured)"]
    print("\n".join(text))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
