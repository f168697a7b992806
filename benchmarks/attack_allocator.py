"""What keeping freed memory (``irad.utils.env.keep_freed_memory``, which the command line calls)
does to an adaptive attack's steps: forward and backward passes of the bundled IRAD and the
bundled classifier on one batch, the image moved a little after each step as an attack would,
each setting in a fresh process (the allocator's thresholds are per process), alternated::

    python benchmarks/attack_allocator.py --steps 8 --rounds 2 --threads 2

Prints, per setting and round: ms per image and step (the first step apart: it allocates
everything), system time and minor page faults.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def child(keep: bool, steps: int, batch: int, threads: int) -> dict[str, object]:
    import torch
    from torch.nn import functional as F

    from irad.defenses import IRAD
    from irad.models import load_classifier
    from irad.utils.env import keep_freed_memory

    applied = keep_freed_memory() if keep else False
    torch.set_num_threads(threads)
    model = torch.nn.Sequential(IRAD.from_pretrained("cifar10"), load_classifier("cifar10"))
    model.eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    before = resource.getrusage(resource.RUSAGE_SELF)
    times = []
    for _ in range(steps):
        xg = x.clone().requires_grad_(True)
        start = time.perf_counter()
        F.cross_entropy(model(xg), y).backward()
        times.append((time.perf_counter() - start) * 1000 / batch)
        x = (x + 0.01 * xg.grad.sign()).clamp(0, 1)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "keep_freed_memory": applied,
        "first_step_ms_per_img": times[0],
        "later_steps_ms_per_img": sorted(times[1:])[len(times[1:]) // 2] if steps > 1 else None,
        "system_s": after.ru_stime - before.ru_stime,
        "minor_faults": after.ru_minflt - before.ru_minflt,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", choices=("default", "keep"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        out = child(args.child == "keep", args.steps, args.batch, args.threads)
        print(json.dumps(out))
        return
    for r in range(args.rounds):
        for setting in ("default", "keep"):
            cmd = [sys.executable, __file__, "--child", setting, "--steps", str(args.steps),
                   "--batch", str(args.batch), "--threads", str(args.threads)]  # fmt: skip
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            print(
                f"round {r + 1} {setting:8s} (applied: {res['keep_freed_memory']}): first step "
                f"{res['first_step_ms_per_img']:.1f} ms/img, median later step "
                f"{res['later_steps_ms_per_img']:.1f} ms/img, system {res['system_s']:.1f} s, "
                f"{res['minor_faults']:,} minor faults"
            )


if __name__ == "__main__":
    main()
