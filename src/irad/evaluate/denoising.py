"""How well a diffusion purifier denoises: PSNR against the clean image at each ``t``.

For each ``t``: the noisy input ``x_t`` (what purification starts from), the one-shot estimate
``x̂_0`` (Tweedie, one UNet call) and the full DiffPure output (the reverse chain), each against
the clean image. A purifier worth using gains many dB over ``x_t``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from irad.data import iterate_batches
from irad.evaluate.cost import synchronize
from irad.evaluate.quality import psnr
from irad.evaluate.random_defense import wilson_interval


@torch.no_grad()
def denoising_quality(
    model: Any,
    dataset: Any,
    steps: Sequence[int] = (20, 100),
    *,
    reverse_steps: dict[int, int] | None = None,
    batch_size: int = 100,
    seed: int = 0,
    progress: bool = True,
    classifier: Any = None,
) -> dict[str, Any]:
    """Mean PSNR (dB) of noisy / one-shot / purified images against the clean ones, per ``t``.

    Args:
        model: a :class:`irad.models.diffusion.DiffusionModel`.
        dataset: clean images in [0, 1] (an :mod:`irad.data` data set).
        steps: the ``t`` values.
        reverse_steps: reverse-chain length per ``t`` (default ``t``).
        seed: seeds the noise; the same images and seed give the same figures.
        classifier: if given, also the accuracy (%) of ``classifier`` on the clean images and
            on the DiffPure outputs (DiffPure's SA, one draw) and its 95 % Wilson interval.

    Returns:
        ``{"n", "seed", "rows": [{"t", "reverse_steps", "psnr_noisy", "psnr_one_shot",
        "psnr_purified", "ms_per_image"}]}``.
    """
    from irad.defenses.diffpure import DiffPure

    device = next(model.parameters()).device
    rows = []
    for t in steps:
        purifier = DiffPure(
            model,
            t,
            reverse_steps=(reverse_steps or {}).get(t),
            seed=seed,
            checkpointing=False,
        )
        noise_gen = torch.Generator().manual_seed(seed)
        sums = {"psnr_noisy": 0.0, "psnr_one_shot": 0.0, "psnr_purified": 0.0}
        correct = {"clean": 0, "purified": 0}
        seconds, n = 0.0, 0
        batches = iterate_batches(dataset, batch_size)
        for x, y in tqdm(batches, desc=f"t={t}", unit="batch", disable=not progress):
            x = x.to(device)
            noise = torch.randn(x.shape, generator=noise_gen).to(device)
            x_t = model.diffuse(x * 2 - 1, t, noise)
            one_shot = (model.predict_x0(x_t, t).clamp(-1, 1) + 1) / 2
            synchronize(device)
            started = time.perf_counter()
            purified = purifier(x)
            synchronize(device)
            seconds += time.perf_counter() - started
            sums["psnr_noisy"] += float(psnr(x, ((x_t + 1) / 2).clamp(0, 1)).sum())
            sums["psnr_one_shot"] += float(psnr(x, one_shot).sum())
            sums["psnr_purified"] += float(psnr(x, purified).sum())
            if classifier is not None:
                correct["clean"] += int((classifier(x).argmax(1) == y.to(device)).sum())
                correct["purified"] += int((classifier(purified).argmax(1) == y.to(device)).sum())
            n += x.shape[0]
        rows.append(
            {
                "t": t,
                "reverse_steps": purifier.reverse_steps,
                **{k: v / n for k, v in sums.items()},
                "ms_per_image": 1000 * seconds / n,
            }
        )
        if classifier is not None:
            rows[-1]["accuracy_clean"] = 100 * correct["clean"] / n
            rows[-1]["sa"] = 100 * correct["purified"] / n
            rows[-1]["sa_ci95"] = [round(v, 2) for v in wilson_interval(correct["purified"], n)]
    return {"n": len(dataset), "seed": seed, "rows": rows}


def format_denoising_table(result: dict[str, Any]) -> str:
    """Markdown table of :func:`denoising_quality`'s rows."""
    with_sa = all("sa" in r for r in result["rows"])
    head = (
        "| t | reverse steps | PSNR x_t (noisy) | PSNR one-shot x̂_0 | PSNR DiffPure | ms / image |"
    )
    lines = [head + (" accuracy clean | SA (DiffPure) | 95 % CI |" if with_sa else "")]
    lines.append("|---:" * (9 if with_sa else 6) + "|")
    for r in result["rows"]:
        line = (
            f"| {r['t']} | {r['reverse_steps']} | {r['psnr_noisy']:.2f} | "
            f"{r['psnr_one_shot']:.2f} | {r['psnr_purified']:.2f} | {r['ms_per_image']:.1f} |"
        )
        if with_sa:
            lo, hi = r["sa_ci95"]
            line += f" {r['accuracy_clean']:.1f} | {r['sa']:.1f} | [{lo:.1f}, {hi:.1f}] |"
        lines.append(line)
    return "\n".join(lines)


def run_denoising_quality(
    model: str,
    dataset: Any,
    steps: Sequence[int] = (20, 100),
    *,
    reverse_steps: int | None = None,
    classifier: str | None = None,
    batch_size: int = 100,
    seed: int = 0,
    progress: bool = True,
    json_path: str | Path | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Load the diffusion model (and classifier) onto ``device``, run
    :func:`denoising_quality`, and write the record (result, settings, environment) to
    ``json_path`` atomically when given. The noise is drawn on the CPU, so the record is the
    same on any device up to floating point."""
    from irad.models import load_classifier
    from irad.models.diffusion import DiffusionModel
    from irad.utils.env import environment_info, resolve_device
    from irad.utils.io import atomic_write_json

    where = resolve_device(device)
    diffusion = DiffusionModel.from_pretrained(model).to(where)
    result = denoising_quality(
        diffusion,
        dataset,
        steps,
        reverse_steps={t: min(t, reverse_steps) for t in steps} if reverse_steps else None,
        batch_size=batch_size,
        seed=seed,
        progress=progress,
        classifier=None if classifier is None else load_classifier(classifier).eval().to(where),
    )
    record = {
        "command": "diffusion-quality",
        "model": model,
        "model_config": diffusion.config.to_dict(),
        "classifier": classifier,
        "dataset": getattr(dataset, "description", None),
        **result,
        "environment": environment_info(str(where)),
    }
    if json_path is not None:
        atomic_write_json(json_path, record)
    return record
