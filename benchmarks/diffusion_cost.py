"""Cost of diffusion purification on this machine: ms per image and peak memory of an attack step.

Interleaves the defenses round by round in one process (the machine is shared and noisy, so
compare ratios measured side by side), and reports the median ms per image over the rounds with
its range, and the ratio IRAD+DiffPure (t=20) / DiffPure (t=100) (paper, Table 5: 27.70 / 132.8
= 0.21). Then, each in a fresh subprocess, the peak resident memory of one adaptive attack step
(forward and backward through DiffPure + classifier) on a batch of 32 at t = 100, with and
without gradient checkpointing over the reverse chain.

    python benchmarks/diffusion_cost.py --diffusion cifar10 --batch 100 --rounds 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def _build(name: str, diffusion: str, irad: str):
    from irad.defenses import build_defense

    if name == "irad":
        return build_defense("irad", checkpoint=irad)
    if name.startswith("irad+diffpure"):
        t = int(name.split("=")[1])
        return build_defense("irad+diffpure", t=t, diffusion=diffusion, irad=irad, seed=0)
    t = int(name.split("=")[1])
    return build_defense("diffpure", model=diffusion, t=t, seed=0)


def timing(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    names = ["diffpure:t=100", "diffpure:t=20", "irad+diffpure:t=20", "irad"]
    defenses = {n: _build(n, args.diffusion, args.irad).eval() for n in names}
    x = torch.rand(args.batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {n: [] for n in names}
    with torch.no_grad():
        for d in defenses.values():  # warm-up
            d(x[:2])
        for _ in range(args.rounds):
            for n, d in defenses.items():
                started = time.perf_counter()
                d(x)
                times[n].append(1000 * (time.perf_counter() - started) / args.batch)
    rows = {
        n: {"median": statistics.median(v), "min": min(v), "max": max(v)} for n, v in times.items()
    }
    ratios = [
        a / b for a, b in zip(times["irad+diffpure:t=20"], times["diffpure:t=100"], strict=True)
    ]
    return {
        "ms_per_image": rows,
        "ratio_irad_diffpure20_over_diffpure100": {
            "median": statistics.median(ratios),
            "min": min(ratios),
            "max": max(ratios),
            "paper": round(27.70 / 132.8, 3),
        },
    }


def attack_step_memory(diffusion: str, checkpointing: bool, t: int, batch: int) -> dict:
    """Peak RSS (MiB) of one forward+backward through DiffPure(t) + classifier, fresh process."""
    import torch

    from irad.defenses.diffpure import DiffPure
    from irad.models import load_classifier

    torch.set_num_threads(2)
    purifier = DiffPure(diffusion, t, seed=0, checkpointing=checkpointing)
    classifier = load_classifier("cifar10").eval()
    x = torch.rand(batch, 3, 32, 32)
    with torch.no_grad():
        classifier(purifier(x[:2]))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    xi = x.clone().requires_grad_(True)
    started = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(
        classifier(purifier(xi)), torch.zeros(batch, dtype=torch.long)
    )
    loss.backward()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "checkpointing": checkpointing,
        "t": t,
        "batch": batch,
        "baseline_mib": round(base, 1),
        "peak_mib": round(peak, 1),
        "attack_step_extra_mib": round(peak - base, 1),
        "attack_step_seconds": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diffusion", default="cifar10", help="diffusion checkpoint or name")
    parser.add_argument("--irad", default="cifar10", help="IRAD checkpoint or name")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-batch", type=int, default=32)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--_memory", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._memory:  # the subprocess
        diffusion, flag, t = args._memory
        print(json.dumps(attack_step_memory(diffusion, flag == "1", int(t), args.memory_batch)))
        return
    result = timing(args)
    print(json.dumps(result, indent=2), flush=True)  # the timings survive a failed memory run
    result["attack_step_memory"] = []
    for flag in ("1", "0"):
        cmd = [sys.executable, __file__, "--_memory", args.diffusion, flag, "100"]
        out = subprocess.run(
            [*cmd, "--memory-batch", str(args.memory_batch)], capture_output=True, text=True
        )
        if out.returncode == 0:
            result["attack_step_memory"].append(json.loads(out.stdout.strip().splitlines()[-1]))
        else:  # e.g. SIGKILL from the kernel's out-of-memory killer
            result["attack_step_memory"].append(
                {
                    "checkpointing": flag == "1",
                    "t": 100,
                    "batch": args.memory_batch,
                    "failed": f"exit code {out.returncode}"
                    + (" (killed: out of memory)" if out.returncode == -9 else ""),
                    "memory_total_mib": round(
                        os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
                    ),
                }
            )
    result["settings"] = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    from irad.utils.env import environment_info

    result["environment"] = environment_info("cpu")
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        from irad.utils.io import atomic_write_text

        atomic_write_text(args.json, text + "\n")


if __name__ == "__main__":
    main()
