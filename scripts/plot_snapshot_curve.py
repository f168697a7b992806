"""SA and RA against training steps, from `irad evaluate` runs on a training run's snapshots.

A run trained with ``--snapshot-steps N`` keeps its model every N steps in
``RUN/snapshots/step-NNNNNN``; evaluate them (one command, every snapshot a ``--defense``, so the
oblivious adversarial images are made once) and plot::

    irad train-samplenet ... --out runs/irad --snapshot-steps 130
    irad evaluate -w victim.th --attack autoattack --threat oblivious --n 1000 \\
        $(for s in runs/irad/snapshots/step-*.safetensors; do
            echo --defense irad:checkpoint=${s%.safetensors}; done) --out results/irad-steps
    python scripts/plot_snapshot_curve.py results/irad-steps/result.json --out docs/figures/steps

Each defense's step is read from ``step-N`` in its checkpoint path; ``--start LABEL=SA,RA``
adds the step-0 point measured elsewhere (for IRAD: its DISCO-style reconstruction, which is
what an untrained, zero-shift SampleNet returns). Writes ``OUT.csv``, ``OUT.png`` and ``OUT.svg``
and prints the table in Markdown.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

STEP = re.compile(r"step-0*(\d+)")


def points(results: list[Path], attack: str) -> list[tuple[int, float, float, tuple[float, float]]]:
    """(step, SA, RA, RA's 95 % interval) per snapshot defense in the given result files; the
    step is the last ``step-N`` in the defense's checkpoint path."""
    found = []
    for path in results:
        record = json.loads(path.read_text())
        for label, d in record["defenses"].items():
            steps = STEP.findall(str(d.get("config", {}).get("checkpoint", label)))
            if not steps or attack not in d["attacks"]:
                continue
            ra = d["attacks"][attack]["ra"]
            found.append((int(steps[-1]), d["sa"]["percent"], ra["percent"], tuple(ra["ci95"])))
    if not found:
        raise SystemExit(f"no defense with 'step-N' in its checkpoint and attack {attack!r} found")
    return sorted(found)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", type=Path, help="result.json files of irad evaluate")
    ap.add_argument("--attack", default="autoattack", help="the attack whose RA to plot")
    ap.add_argument("--start", help="step-0 point, 'LABEL=SA,RA'")
    ap.add_argument("--title", default="RA against training steps (oblivious)")
    ap.add_argument("--out", type=Path, required=True, help="output prefix")
    args = ap.parse_args()
    rows = points(args.results, args.attack)
    start = None
    if args.start:
        label, _, values = args.start.partition("=")
        try:
            sa, ra = (float(v) for v in values.split(","))
        except ValueError:
            ap.error(f"--start must be 'LABEL=SA,RA' (e.g. 'DISCO=90.4,63.9'), got {args.start!r}")
        start = (label, sa, ra)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    lines = ["step,sa,ra,ra_low,ra_high"]
    lines += [f"{s},{sa},{ra},{lo:.2f},{hi:.2f}" for s, sa, ra, (lo, hi) in rows]
    args.out.with_suffix(".csv").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r[0] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(steps, [r[1] for r in rows], "o-", label="SA")
    ax.plot(steps, [r[2] for r in rows], "s-", label=f"RA ({args.attack})")
    ax.fill_between(steps, [r[3][0] for r in rows], [r[3][1] for r in rows], color="C1", alpha=0.2)
    if start is not None:
        ax.plot([0], [start[1]], "o", color="C0", mfc="none")
        ax.plot([0], [start[2]], "s", color="C1", mfc="none", label=f"step 0: {start[0]}")
    ax.set_xlabel("training step")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(args.title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    for ext in (".png", ".svg"):
        fig.savefig(args.out.with_suffix(ext), dpi=120)

    print(f"| step | SA | RA ({args.attack}) [95 % interval] |\n|---:|---:|---:|")
    if start is not None:
        print(f"| 0 ({start[0]}) | {start[1]:.1f} | {start[2]:.1f} |")
    for s, sa, ra, (lo, hi) in rows:
        print(f"| {s} | {sa:.1f} | {ra:.1f} [{lo:.1f}, {hi:.1f}] |")


if __name__ == "__main__":
    main()
