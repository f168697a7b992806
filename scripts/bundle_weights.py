"""Copy trained checkpoints into the package (``src/irad/weights``) with their provenance.

The package ships these checkpoints, both trained by this project on CIFAR-10 (see
``src/irad/weights/README.md`` for the commands that made them):

* ``classifier-cifar10``: the demo's classifier (``load_classifier("cifar10")``);
* ``irad-cifar10``: the IRAD defense, ``cpu`` preset (``IRAD.from_pretrained("cifar10")``;
  ``ImplicitReconstruction.from_pretrained("cifar10")`` takes its representation);
* ``diffusion-cifar10``: the score model of DiffPure and IRAD+DiffPure, ``cpu`` preset, stored
  in float16 (``DiffusionModel.from_pretrained("cifar10")``, ``build_defense("diffpure")``);
* ``sparse-coding-cifar10``: STL's convolutional dictionary, ``cpu`` preset
  (``build_defense("stl")``);
* ``nrp-cifar10``: the NRP purifier, ``cpu`` preset (``build_defense("nrp")``).

Each JSON config gains a ``provenance`` entry (command, data, date, test figures) so that a
checkpoint found anywhere says where it came from: in the checkpoint's ``metadata`` (or at the
top level of a checkpoint written before irad put metadata there). It records
``source_sha256`` (the run's weights file) and ``tensors_sha256``
(:func:`irad.checkpoint.tensors_sha256`: names, dtypes, shapes and values), which the copy keeps
whatever its file header holds. The copy is written with :func:`irad.checkpoint.save_state`, so
its weights name the JSON they belong to. Usage::

    python scripts/bundle_weights.py --classifier runs/resnet20/model \\
        --classifier-command "irad train-classifier ..." --classifier-accuracy 83.36 \\
        --irad runs/irad-cpu/model --irad-command "irad train-samplenet ..."
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from irad.checkpoint import checkpoint_paths, load_state, save_state, tensors_sha256
from irad.utils.io import sha256_file

DEST = Path(__file__).resolve().parents[1] / "src" / "irad" / "weights"


def bundle(
    source: str | Path,
    name: str,
    provenance: dict[str, object],
    dest: Path = DEST,
    *,
    half: bool = False,
) -> Path:
    """Copy the checkpoint ``source`` (a prefix) to ``dest/name.*`` and record ``provenance``;
    ``half`` stores floating-point tensors in float16 (they load into float32 modules)."""
    tensors, config = load_state(source)  # refuses a torn or unreadable pair
    if half:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
        provenance = {**provenance, "stored_as": "float16 (loaded into float32)"}
    weights, _ = checkpoint_paths(source)
    record = {
        **provenance,
        "source_checkpoint": str(weights),
        "source_sha256": sha256_file(weights),
        "tensors_sha256": tensors_sha256(tensors),
        "bundled_on": dt.date.today().isoformat(),
    }
    if isinstance(config.get("metadata"), dict):
        config["metadata"]["provenance"] = record
    else:  # a flat config from before the config/metadata layout
        config["provenance"] = record
    out = save_state(dest / name, tensors, config)
    print(
        f"{out} ({out.stat().st_size / 2**20:.2f} MiB), tensors sha256 {record['tensors_sha256']}"
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classifier", help="prefix of the classifier checkpoint to ship")
    ap.add_argument("--classifier-command", default="", help="the command that trained it")
    ap.add_argument("--classifier-accuracy", type=float, help="its CIFAR-10 test accuracy, %%")
    ap.add_argument("--irad", help="prefix of the IRAD checkpoint to ship")
    ap.add_argument("--irad-command", default="", help="the commands that trained it")
    ap.add_argument("--diffusion", help="prefix of the diffusion checkpoint to ship (float16)")
    ap.add_argument("--diffusion-command", default="", help="the command that trained it")
    ap.add_argument("--stl", help="prefix of the STL dictionary to ship (irad train-stl)")
    ap.add_argument("--stl-command", default="", help="the command that trained it")
    ap.add_argument("--nrp", help="prefix of the NRP purifier to ship (irad train-nrp)")
    ap.add_argument("--nrp-command", default="", help="the command that trained it")
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
    if args.diffusion:
        bundle(
            args.diffusion,
            "diffusion-cifar10",
            {
                "trained_by": "irad (this project)",
                "command": args.diffusion_command,
                "data": args.data,
            },
            half=True,
        )
    for source, name, command in (
        (args.stl, "sparse-coding-cifar10", args.stl_command),
        (args.nrp, "nrp-cifar10", args.nrp_command),
    ):
        if source:
            provenance = {"trained_by": "irad (this project)", "command": command}
            bundle(source, name, {**provenance, "data": args.data})


if __name__ == "__main__":
    main()
