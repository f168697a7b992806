"""APGD with and without its active set (``irad.attacks.ActiveSetAPGD``) through the bundled
IRAD and the bundled classifier: the adaptive attack of ``irad demo``, on the first CIFAR-10
test images, with the same seed, in one process, alternated::

    IRAD_DATA=../shared/data/cifar10 python benchmarks/active_set_apgd.py --n 100 --steps 20
    IRAD_DATA=../shared/data/cifar10 python benchmarks/active_set_apgd.py --eps 1  # some survive

Prints, per setting and round: wall time, forward-backward passes per image, robust accuracy,
and whether the images fooled are the same (they must be, for a deterministic model, up to
rounding differences between batch sizes) and how many fooled images' perturbations differ (the
active set keeps the first fooling iterate).
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100, help="first N test images (one batch)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eps", type=float, default=8.0, help="in /255 (smaller: some survive)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=os.environ.get("IRAD_DATA"))
    args = ap.parse_args()

    import torch

    from irad.attacks import ActiveSetAPGD
    from irad.attacks.base import LogitsChecked
    from irad.data import load_dataset
    from irad.defenses import IRAD
    from irad.models import load_classifier
    from irad.utils.env import environment_info, keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(args.threads)
    classifier = load_classifier("cifar10")
    model = torch.nn.Sequential(IRAD.from_pretrained("cifar10"), classifier)
    model.eval().requires_grad_(False)
    surface = LogitsChecked(model, 10)
    data = load_dataset("cifar10", "test", args.data_dir)
    x = torch.stack([data[i][0] for i in range(args.n)])
    y = torch.tensor([int(data[i][1]) for i in range(args.n)])
    env = environment_info()
    features = ",".join(env.get("cpu_features") or [])
    print(f"{env['processor']} ({features}), {args.threads} threads, torch {torch.__version__}")
    print(
        f"first {args.n} test images, APGD-CE {args.steps} steps, eps {args.eps:g}/255, "
        f"seed {args.seed}"
    )

    results: dict[bool, torch.Tensor] = {}
    print("| active set | round | wall (s) | passes / image | RA (%) |")
    print("|---|---:|---:|---:|---:|")
    for r in range(args.rounds):
        for prune in (False, True):
            attack = ActiveSetAPGD(
                surface, eps=args.eps / 255, steps=args.steps, seed=args.seed, prune=prune
            )
            start = time.perf_counter()
            x_adv = attack(x, y)
            wall = time.perf_counter() - start
            with torch.no_grad():
                correct = model(x_adv).argmax(1) == y
            results[prune] = x_adv
            ra = 100.0 * float(correct.float().mean())
            passes = attack.image_passes / args.n
            print(f"| {'on' if prune else 'off'} | {r} | {wall:.1f} | {passes:.2f} | {ra:.1f} |")
    with torch.no_grad():
        fooled = {p: model(results[p]).argmax(1) != y for p in results}
    same = torch.equal(fooled[False], fooled[True])
    differ = int((results[False] != results[True]).flatten(1).any(1)[fooled[False]].sum())
    print(
        f"same images fooled: {same} ({int(fooled[False].sum())} of {args.n}); "
        f"fooled images with another (earlier) iterate: {differ}"
    )


if __name__ == "__main__":
    main()
