"""Speed of IRAD's fast path against the per-query reference path (issue 12).

An official-layout IRAD with random weights at the paper's sizes (EDSR 16 × 64, decoder and
SampleNet MLPs 256 × 4, SampleNet with its own encoder fed x in [0, 1] and shifts in normalised
units, as ``irad convert-official`` builds it), with a SampleNet whose shifts average about
0.2 pixels, on 32 × 32 images. The machine is shared, so everything that is compared is measured
side by side in one process, round by round:

* **speed**: the reference path (``fast=False``: LIIF's per-query algorithm, two encoders) and
  the fast path (``fast=True``) in float32, and the fast path under bfloat16 autocast
  (``precision="bfloat16"``), at each batch size: ms per image (median and range over rounds),
  the ratio reference / fast per round (median and range), the largest output difference, and
  the rate in GFLOP/s (useful multiply-adds counted analytically, × 2, over wall time) against a
  2048³ float32 matmul timed in the same process between rounds;
* **memory**: peak resident memory of one 224 × 224 image, each path in a fresh subprocess
  (``resource.getrusage`` maxrss: the process total and its increase over the same model after
  an 8 × 8 warm-up);
* **training**: stage-1 and stage-2 steps of the ``cpu`` preset (stage 1: batch 128, 256 random
  query pixels per image, L1; stage 2: batch 32 pairs, bundled classifier, chunks recomputed in
  the backward pass) on the reference and the fast path, images per second.

Run it niced, with the thread count the comparison is about::

    nice -n 19 python benchmarks/irad_speed.py --threads 2 --batches 16,100 --rounds 5
    nice -n 19 python benchmarks/irad_speed.py --only memory
    nice -n 19 python benchmarks/irad_speed.py --only training --train-steps 3

``--json FILE`` also writes every figure. The load average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

PAPER = {"n_resblocks": 16, "n_feats": 64, "hidden": (256, 256, 256, 256)}


def build_official(seed: int = 0, layout: str = "official") -> Any:
    """Official-layout IRAD (own SampleNet encoder, unit input, normalised shifts), random;
    ``layout="shared"``: irad's default layout instead (SampleNet reads the representation's
    features, one encoder per image, shifts in pixels)."""
    import torch

    from irad.defenses import IRAD
    from irad.models.edsr import EDSRConfig
    from irad.models.liif import ImplicitConfig, ImplicitRepresentation
    from irad.models.samplenet import SampleNet, SampleNetConfig

    torch.manual_seed(seed)
    enc = EDSRConfig(PAPER["n_resblocks"], PAPER["n_feats"])
    rep = ImplicitRepresentation(ImplicitConfig(enc, PAPER["hidden"]))
    if layout == "official":
        net = SampleNet(enc.n_feats, SampleNetConfig.official(PAPER["hidden"]), encoder=enc)
        net.encoder.load_state_dict(rep.encoder.state_dict())  # the release's frozen copy
    else:
        net = SampleNet(enc.n_feats, SampleNetConfig(hidden=PAPER["hidden"]))
    with torch.no_grad():  # shifts of about 0.2 px on 32 x 32 (1 px is 1/16 normalised)
        net.imnet.last.weight.normal_(0, 0.06 if layout == "official" else 0.6)
    model = IRAD(rep, net, preset=None)
    model.preset = layout
    return model.eval()


def macs_per_image(h: int, w: int, path: str, layout: str = "official") -> float:
    """Useful multiply-adds of one h × w image through IRAD (the paper's sizes)."""
    c, hidden = PAPER["n_feats"], PAPER["hidden"]
    encoder = 3 * c * 9 + (2 * PAPER["n_resblocks"] + 1) * c * c * 9
    tail = sum(a * b for a, b in itertools.pairwise(hidden))
    first_feat = 9 * c * hidden[0]

    def per_pair(out: int, with_feat: bool) -> int:
        return (first_feat if with_feat else 0) + 4 * hidden[0] + tail + hidden[-1] * out

    pixels = h * w
    if path == "reference":  # the whole MLP per (query, neighbour) pair, four per query
        mlps = 4 * pixels * (per_pair(3, True) + per_pair(2, True))
    else:  # first layer once per pixel; SampleNet's grid skips three terms off the border
        border = h + w - 1
        mlps = 2 * pixels * first_feat + 4 * pixels * per_pair(3, False)
        mlps += (pixels + 3 * border) * per_pair(2, False)
    encoders = 2 if layout == "official" else 1
    return float(encoders * encoder * pixels + mlps)


def matmul_gflops(n: int = 2048, reps: int = 3) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def speed(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    model = build_official(layout=args.layout)
    results: dict[str, Any] = {"layout": args.layout}
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model(torch.rand(2, 3, 32, 32, generator=gen))  # warm-up
        shift = float(model.shifts(torch.rand(4, 3, 32, 32, generator=gen)).abs().mean())
    results["mean_abs_shift_px"] = shift
    print(f"layout {args.layout}, mean |shift| {shift:.2f} px")
    modes = {"reference": (False, "float32"), "fast": (True, "float32")}
    if not args.no_bf16:
        modes["fast_bf16"] = (True, "bfloat16")
    for batch in args.batches:
        x = torch.rand(batch, 3, 32, 32, generator=gen)
        times: dict[str, list[float]] = {m: [] for m in modes}
        encoders: list[float] = []  # the fast path's encoder passes alone: its floor
        matmul: list[float] = []
        diffs: dict[str, float] = {}
        with torch.no_grad():
            for r in range(args.rounds):
                outs = {}
                for name, (fast, precision) in modes.items():
                    model.fast, model.precision = fast, precision
                    started = time.perf_counter()
                    outs[name] = model(x)
                    times[name].append(time.perf_counter() - started)
                model.fast = True
                started = time.perf_counter()
                model._features(x)  # the fast path's encoder stage (both passes, if two)
                encoders.append(1000 * (time.perf_counter() - started) / batch)
                if r == 0:
                    for name in modes:
                        if name != "reference":
                            diffs[name] = float((outs[name] - outs["reference"]).abs().max())
                matmul.append(matmul_gflops())
        row: dict[str, Any] = {
            "matmul_gflops": _summary(matmul),
            "max_abs_diff": diffs,
            "fast_encoders_ms_per_image": _summary(encoders),
        }
        for name, path in (("reference", "reference"), ("fast", "fast"), ("fast_bf16", "fast")):
            if name not in times:
                continue
            per_img = [1000 * t / batch for t in times[name]]
            flops = macs_per_image(32, 32, path, args.layout) * 2 / 1e9
            row[name] = {
                "ms_per_image": _summary(per_img),
                "gflops": _summary([flops * 1000 / t for t in per_img]),
            }
        for name in modes:
            if name != "reference":
                ratios = [a / b for a, b in zip(times["reference"], times[name], strict=True)]
                row[f"ratio_reference_over_{name}"] = _summary(ratios)
        results[f"batch_{batch}"] = row
        _print_speed(batch, row)
    return results


def _print_speed(batch: int, row: dict[str, Any]) -> None:
    mm = row["matmul_gflops"]
    print(f"\nbatch {batch} (32 x 32):  fp32 matmul {mm['median']:.0f} GFLOP/s "
          f"(range {mm['min']:.0f}-{mm['max']:.0f})")  # fmt: skip
    for name in ("reference", "fast", "fast_bf16"):
        if name not in row:
            continue
        ms, gf = row[name]["ms_per_image"], row[name]["gflops"]
        share = 100 * gf["median"] / mm["median"]
        print(f"  {name:10s} {ms['median']:8.1f} ms/img (range {ms['min']:.1f}-{ms['max']:.1f})  "
              f"{gf['median']:6.1f} GFLOP/s = {share:3.0f} % of matmul")  # fmt: skip
    for key, value in row.items():
        if key.startswith("ratio_"):
            print(f"  {key}: median {value['median']:.2f} (range {value['min']:.2f}-"
                  f"{value['max']:.2f})")  # fmt: skip
    enc = row["fast_encoders_ms_per_image"]
    print(f"  the fast path's encoder passes alone: {enc['median']:.1f} ms/img")
    print(f"  max |output - reference|: {row['max_abs_diff']}")


# -- memory ------------------------------------------------------------------------------------


def memory_child(path: str, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    model = build_official()
    model.fast = path == "fast"
    kib = 1024
    with torch.no_grad():
        model(torch.rand(1, 3, 8, 8))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        model(torch.rand(1, 3, 224, 224))
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mib": after / kib, "increase_mib": (after - before) / kib,
                      "seconds": seconds}))  # fmt: skip


def memory(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    print("\npeak memory, one 224 x 224 image (fresh process each, ru_maxrss):")
    for path in ("reference", "fast"):
        cmd = [sys.executable, __file__, "--memory-child", path, "--threads", str(args.threads)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        out[path] = row
        print(f"  {path:10s} peak {row['peak_mib']:6.0f} MiB, increase over the warmed-up model "
              f"{row['increase_mib']:6.0f} MiB, {row['seconds']:.1f} s")  # fmt: skip
    return out


# -- training ----------------------------------------------------------------------------------


def training(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from irad.data import ImageDataset
    from irad.defenses import IRAD
    from irad.models import load_classifier
    from irad.models.implicit_presets import get_preset
    from irad.models.liif import ImplicitRepresentation
    from irad.train.inr import ImplicitRepresentationObjective
    from irad.train.samplenet import SampleNetObjective
    from irad.train.tasks import build_task

    preset = get_preset("cpu")
    gen = torch.Generator().manual_seed(0)
    out: dict[str, Any] = {}

    def pair(batch: int) -> tuple[Any, Any]:
        clean = torch.rand(batch, 3, 32, 32, generator=gen)
        noise = (torch.rand(batch, 3, 32, 32, generator=gen) - 0.5) * 16 / 255
        return clean, (clean + noise).clamp(0, 1)

    # stage 1: the representation, L1 on random query pixels of the PGD-denoising task
    torch.manual_seed(0)
    b1 = preset.inr.batch_size
    rep = ImplicitRepresentation(preset.representation_config())
    data = ImageDataset(torch.zeros(b1, 32, 32, 3, dtype=torch.uint8), torch.zeros(b1).long())
    obj1 = ImplicitRepresentationObjective(
        rep, data, "clean2clean", batch_size=b1, sample_q=preset.inr_sample_q
    )
    clean, adv = pair(b1)
    task = build_task("pgd-denoising", sample_q=preset.inr_sample_q)(clean, adv, generator=gen)
    batch1 = (task.inputs, task.coords, task.cells, task.targets)
    opt1 = torch.optim.Adam(rep.parameters(), lr=1e-4, betas=(0.0, 0.9))

    def step1(fast: bool) -> None:
        obj1.fast = fast
        loss, _ = obj1.loss(batch1)
        opt1.zero_grad()
        loss.backward()
        opt1.step()

    # stage 2: SampleNet through the frozen representation and the bundled classifier
    b2 = 32  # the cpu preset's stage-2 batch
    irad = IRAD.from_representation(ImplicitRepresentation(preset.representation_config()))
    with torch.no_grad():
        irad.samplenet.imnet.last.weight.normal_(0, 0.01)

    class _Pairs:  # the objective only needs the number of pairs here
        def __len__(self) -> int:
            return b2

    obj2 = SampleNetObjective(irad, load_classifier("cifar10"), _Pairs(), batch_size=b2)  # type: ignore[arg-type]
    clean, adv = pair(b2)
    batch2 = (clean, adv, torch.randint(0, 10, (b2,), generator=gen))
    opt2 = torch.optim.Adam(irad.samplenet.imnet.parameters(), lr=2e-4, betas=(0.0, 0.9))

    def step2(fast: bool) -> None:
        irad.fast = fast
        loss, _ = obj2.loss(batch2)
        opt2.zero_grad()
        loss.backward()
        opt2.step()

    print(f"\ntraining throughput, preset cpu ({args.train_steps} steps each, interleaved):")
    for name, step, images in (("stage1", step1, b1), ("stage2", step2, 2 * b2)):
        step(False)
        step(True)  # warm-up
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.train_steps):
            for fast in (False, True):
                started = time.perf_counter()
                step(fast)
                times[fast].append(time.perf_counter() - started)
        ratios = [a / b for a, b in zip(times[False], times[True], strict=True)]
        row = {
            "images_per_step": images,
            "reference_images_per_s": _summary([images / t for t in times[False]]),
            "fast_images_per_s": _summary([images / t for t in times[True]]),
            "ratio_fast_over_reference": _summary(ratios),
        }
        out[name] = row
        ref, fast, ratio = (row[k]["median"] for k in list(row)[1:])
        print(f"  {name}: reference {ref:.1f} img/s, fast {fast:.1f} img/s, throughput ratio "
              f"median {ratio:.2f} (range {row['ratio_fast_over_reference']['min']:.2f}-"
              f"{row['ratio_fast_over_reference']['max']:.2f})")  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--layout",
        choices=("official", "shared"),
        default="official",
        help="official: SampleNet's own encoder (two encoder passes); shared: irad's default",
    )
    parser.add_argument("--batches", default="16,100", help="comma-separated batch sizes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--only", choices=("speed", "memory", "training"), action="append")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bfloat16 timing")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--memory-child", choices=("reference", "fast"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.threads)
        return
    import torch

    from irad.utils.env import cpu_features

    torch.set_num_threads(args.threads)
    args.batches = [int(b) for b in args.batches.split(",")]
    sections = args.only or ["speed", "memory", "training"]
    report: dict[str, Any] = {
        "threads": args.threads,
        "layout": args.layout,
        "torch": torch.__version__,
        "load_average_start": os.getloadavg(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "cpu_features": cpu_features(),
    }
    print(f"torch {torch.__version__}, {args.threads} threads, CPU features "
          f"{' '.join(report['cpu_features']) or 'none'}, load average "
          f"{report['load_average_start'][0]:.2f} (1 min)")  # fmt: skip
    for name in sections:
        report[name] = {"speed": speed, "memory": memory, "training": training}[name](args)
    report["load_average_end"] = os.getloadavg()
    print(f"\nload average at the end: {report['load_average_end'][0]:.2f} (1 min)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
