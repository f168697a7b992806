"""``irad quality``: reconstruction quality of the implicit representation (Table 17)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

EPILOG = """\
Examples:

\b
  # Table 17 on the first 1000 stored pairs
  export IRAD_DATA=../shared/data/cifar10
  irad quality --recons runs/inr-cpu --pairs pairs/cifar10-r20 --n 1000
\b
  # the representation inside an IRAD checkpoint, results to JSON
  irad quality --recons runs/irad-cpu/model --pairs pairs/cifar10-r20 --json q.json
"""


def quality(
    recons: Annotated[
        str,
        typer.Option(
            "--recons",
            "-r",
            help="Implicit-representation checkpoint (folder, prefix, IRAD checkpoint, or a "
            "bundled name).",
        ),
    ],
    pairs: Annotated[Path, typer.Option("--pairs", "-p", help="Folder from `irad prepare-pairs`.")],
    n: Annotated[int | None, typer.Option("--n", min=1, help="Use the first N pairs.")] = 1000,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 100,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where named data sets live (default: $IRAD_DATA, else ~/.cache/irad)."),
    ] = None,
    radius: Annotated[
        float | None,
        typer.Option(help="Low-frequency disc radius in FFT bins (default: min(H, W) / 8)."),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for torch.")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the result and settings here.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """PSNR, SSIM, low/high-frequency FFT loss and (if available) LPIPS of clean vs adv and of
    clean vs RECONS(adv), in Table 17's layout."""
    import torch
    from tqdm.auto import tqdm

    from irad.defenses.implicit import ImplicitReconstruction
    from irad.evaluate.quality import format_quality_table, lpips_metric, quality_table
    from irad.train.pairs import PairDataset
    from irad.utils.env import environment_info
    from irad.utils.io import atomic_write_json

    if threads is not None:
        torch.set_num_threads(threads)
    model = ImplicitReconstruction.from_pretrained(recons, map_location=device).eval()
    data = PairDataset(pairs, data_dir=data_dir)
    total = len(data) if n is None else min(n, len(data))
    lpips_fn, lpips_status = lpips_metric(device)
    typer.echo(lpips_status, err=True)

    def batches():
        for s in tqdm(
            range(0, total, batch_size), desc="quality", unit="batch", disable=not progress
        ):
            clean, adv, _ = data.take(range(s, min(total, s + batch_size)))
            yield clean.to(device), adv.to(device)

    result = quality_table(batches(), model, lpips_fn=lpips_fn, radius=radius)
    typer.echo(f"{result['n']} pairs from {pairs}, reconstruction {model.source}")
    typer.echo(format_quality_table(result))
    if json_out is not None:
        atomic_write_json(
            json_out,
            {
                "command": "quality",
                "recons": model.config(),
                "pairs": str(pairs),
                "pairs_config": data.manifest.get("config"),
                "n": result["n"],
                "radius": radius,
                "lpips": lpips_status,
                **result,
                "environment": environment_info(device),
            },
        )


def register(app: typer.Typer) -> None:
    """Add ``quality`` to ``app``."""
    app.command("quality", epilog=EPILOG)(quality)
