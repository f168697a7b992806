"""What bfloat16 autocast changes on the bundled (trained) weights, on real test images.

For IRAD and its DISCO-style reconstruction (``cifar10`` weights): the largest and the mean
absolute output change against float32, the predictions of the bundled classifier that change,
and CPU-ms per image of both precisions (one pass each, after a warm-up)::

    IRAD_DATA=../shared/data/cifar10 python benchmarks/bfloat16_trained.py --n 500 --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch

from irad.data import load_dataset
from irad.defenses import IRAD, ImplicitReconstruction
from irad.models import load_classifier


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500, help="first N CIFAR-10 test images")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, _ = load_dataset("cifar10", "test").subset(args.n).tensors()
    clf = load_classifier("cifar10").eval()
    for name, model in (
        ("IRAD", IRAD.from_pretrained("cifar10")),
        ("RECONS", ImplicitReconstruction.from_pretrained("cifar10")),
    ):
        model.eval()
        outs, ms = {}, {}
        for precision in ("float32", "bfloat16"):
            model.precision = precision
            with torch.no_grad():
                model(x[: args.batch])  # warm-up
                start = time.process_time()
                outs[precision] = torch.cat([model(b) for b in x.split(args.batch)])
                ms[precision] = 1e3 * (time.process_time() - start) / len(x)
        diff = (outs["bfloat16"] - outs["float32"]).abs()
        with torch.no_grad():
            changed = (clf(outs["bfloat16"]).argmax(1) != clf(outs["float32"]).argmax(1)).sum()
        print(
            f"{name}: max |bf16 - fp32| {float(diff.max()):.2e}, mean {float(diff.mean()):.2e}, "
            f"predictions changed {int(changed)} of {len(x)}; CPU-ms per image fp32 "
            f"{ms['float32']:.1f}, bf16 {ms['bfloat16']:.1f}"
        )


if __name__ == "__main__":
    main()
