"""Copy trained checkpoints into the package (``src/irad/weights``) with their provenance.

The package ships two checkpoints, both trained by this project on CIFAR-10 (see
``src/irad/weights/README.md`` for the commands that made them):

* ``classifier-cifar10``: the demo's classifier (``load_classifier("cifar10")``);
* ``irad-cifar10``: the IRAD defense, ``cpu`` preset (``IRAD.from_pretrained("cifar10")``;
  ``ImplicitReconstruction.from_pretrained("cifar10")`` takes its representation).

Each JSON config gains a ``provenance`` entry (command, data, date, test figures) so that a
checkpoint found anywhere says where it came from. Usage::

    python scripts/bundle_weights.py --classifier runs/resnet20/model \\
        --classifier-command "irad train-classifier ..." --classifier-accuracy 83.36 \\
        --irad runs/irad-cpu/model --irad-command "irad train-samplenet ..."
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
from pathlib import Path

from irad.utils.checkpoint import checkpoint_paths
from irad.utils.io import atomic_write_json, sha256_file

DEST = Path(__file__).resolve().parents[1] / "src" / "irad" / "weights"


def bundle(source: str, name: str, provenance: dict[str, object]) -> Path:
    """Copy ``source`` (a checkpoint prefix) to ``DEST/name.*`` and record ``provenance``."""
    weights, config = checkpoint_paths(source)
    if not weights.is_file() or not config.is_file():
        raise SystemExit(f"{source}: expected {weights} and {config}")
    out_w, out_c = checkpoint_paths(DEST / name)
    DEST.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, out_w)
    cfg = json.loads(config.read_text())
    cfg["provenance"] = {
        **provenance,
        "source_checkpoint": str(weights),
        "sha256": sha256_file(out_w),
        "bundled_on": dt.date.today().isoformat(),
    }
    atomic_write_json(out_c, cfg)
    print(f"{out_w} ({out_w.stat().st_size / 2**20:.2f} MiB), sha256 {cfg['provenance']['sha256']}")
    return out_w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classifier", help="prefix of the classifier checkpoint to ship")
    ap.add_argument("--classifier-command", default="", help="the command that trained it")
    ap.add_argument("--classifier-accuracy", type=float, help="its CIFAR-10 test accuracy, %%")
    ap.add_argument("--irad", help="prefix of the IRAD checkpoint to ship")
    ap.add_argument("--irad-command", default="", help="the commands that trained it")
    ap.add_argument("--data", default="CIFAR-10 training set (../shared/data/cifar10/train.npz)")
    args = ap.parse_args()
    if args.classifier:
        bundle(
            args.classifier,
            "classifier-cifar10",
            {
                "trained_by": "irad (this project)",
                "command": args.classifier_command,
                "data": args.data,
                "test_accuracy_percent": args.classifier_accuracy,
            },
        )
    if args.irad:
        bundle(
            args.irad,
            "irad-cifar10",
            {"trained_by": "irad (this project)", "command": args.irad_command, "data": args.data},
        )


if __name__ == "__main__":
    main()
