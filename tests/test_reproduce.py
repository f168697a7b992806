"""The paper's tables as data: every row builds, and a run puts the paper's figures beside ours."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from irad.errors import ConfigError
from irad.evaluate import AttackSpec, EvaluationConfig
from irad.evaluate.reproduce import get_table, run_table, table_names
from irad.models.classifier import Classifier


def make_task(n: int = 8, size: int = 16) -> tuple[Classifier, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    patterns = torch.rand(3, 3, size, size, generator=g) - 0.5
    y = torch.arange(n) % 3
    x = (0.5 + 0.2 * patterns[y] + 0.02 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)
    linear = nn.Linear(3 * size * size, 3)
    with torch.no_grad():
        linear.weight.copy_(patterns.flatten(1))
        linear.bias.copy_(-(patterns.flatten(1) * 0.5).sum(1))
    return Classifier(nn.Sequential(nn.Flatten(), linear), num_classes=3, name="template"), (x, y)


def _tiny_learned_baselines(tmp_path) -> dict[str, str]:
    """Tiny stand-ins for the {stl} and {nrp} checkpoints (irad train-stl / train-nrp)."""
    from irad.models.nrp import Purifier, PurifierConfig
    from irad.models.sparse_coding import ConvSparseCoder, SparseCodingConfig

    ConvSparseCoder(SparseCodingConfig.from_preset("tiny")).save_pretrained(tmp_path / "stl")
    Purifier(PurifierConfig.from_preset("tiny")).save_pretrained(tmp_path / "nrp")
    return {"stl": str(tmp_path / "stl"), "nrp": str(tmp_path / "nrp")}


@pytest.mark.parametrize("name", table_names())
def test_every_row_of_every_table_builds_a_defense(name: str, tmp_path) -> None:
    from irad.defenses import IRAD
    from irad.models.edsr import EDSRConfig
    from irad.models.liif import ImplicitConfig, ImplicitRepresentation
    from irad.models.samplenet import SampleNetConfig
    from irad.train.tasks import task_names

    # tiny stand-ins for the {irad} checkpoint and Table 7's {runs}/t7-<task> runs
    rep = ImplicitRepresentation(ImplicitConfig(EDSRConfig(1, 4), (8,), skip="bilinear"))
    irad = IRAD(rep, preset=None, samplenet_config=SampleNetConfig(hidden=(8,)))
    irad.save_pretrained(tmp_path / "irad")
    for task in task_names():
        irad.reconstruction().save(tmp_path / f"t7-{task}" / "model")
    irad.save(tmp_path / "t15-bilinear" / "model")
    spec = get_table(name)
    defenses = spec.build_defenses(
        {"irad": str(tmp_path / "irad"), "runs": str(tmp_path), **_tiny_learned_baselines(tmp_path)}
    )
    assert list(defenses) == [row.label for row in spec.rows]
    x = torch.rand(2, 3, 32, 32)
    for defense in defenses.values():
        out = defense(x)
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


def test_run_table_writes_our_figures_beside_the_papers(tmp_path) -> None:
    classifier, data = make_task()
    config = EvaluationConfig(n=8, batch_size=8, cost_batch_size=4, cost_repeats=1, threads=1)
    result, text = run_table(
        "table3", classifier, data, config=config, out_dir=tmp_path, progress=False,
        variables=_tiny_learned_baselines(tmp_path / "weights"),
    )  # fmt: skip
    spec = get_table("table3")
    assert result.config.threat == "bpda"
    assert (tmp_path / "comparison.md").read_text() == text
    for row in spec.rows:
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {row.label}"))
        sa = result.sa(row.label).percent
        assert f"{sa:.2f}" in line
        if row.paper is not None:
            assert line.endswith(f"{row.paper.sa:.2f} | {row.paper.ra:.2f} | {row.paper.avg:.2f} |")
    # without a defense, BPDA is plain PGD on the classifier: it may only lower accuracy
    assert result.ra("w.o. defense", "bpda-pgd").correct <= result.sa("w.o. defense").correct


def test_unknown_table_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown table 'table99'"):
        get_table("table99")


def _tiny_irad(tmp_path) -> str:
    from irad.defenses import IRAD
    from irad.models.edsr import EDSRConfig
    from irad.models.liif import ImplicitConfig, ImplicitRepresentation
    from irad.models.samplenet import SampleNetConfig

    rep = ImplicitRepresentation(ImplicitConfig(EDSRConfig(1, 4), (8,), skip="bilinear"))
    irad = IRAD(rep, preset=None, samplenet_config=SampleNetConfig(hidden=(8,)))
    irad.save_pretrained(tmp_path / "irad")
    return str(tmp_path / "irad")


def test_table10_puts_ten_attacks_beside_the_paper_with_the_worst_case(tmp_path) -> None:
    from irad.evaluate import paper
    from irad.evaluate.reproduce import TABLE10_ATTACKS

    classifier, data = make_task()
    config = EvaluationConfig(n=8, batch_size=8, cost_repeats=0, threads=1)
    result, text = run_table(
        "table10", classifier, data, config=config, out_dir=tmp_path / "out", progress=False,
        variables={"irad": _tiny_irad(tmp_path)},
    )  # fmt: skip
    assert [a.label for a in result.attacks] == [
        AttackSpec.parse(a.spec).label for a in TABLE10_ATTACKS
    ]
    lines = text.splitlines()
    for attack in TABLE10_ATTACKS:
        row = next(ln for ln in lines if ln.startswith(f"| {attack.name} |"))
        ours = result.ra("IRAD (ours)", AttackSpec.parse(attack.spec).label).percent
        assert f"{ours:.2f} [" in row  # with its interval
        assert row.endswith(f"| {paper.TABLE10[attack.key]['irad']:.2f} |")
        assert attack.source and f"`{AttackSpec.parse(attack.spec).label}`" in text
    avg = next(ln for ln in lines if ln.startswith("| Avg."))
    assert avg.endswith("| 88.88 |") and "74.55" in avg
    worst = next(ln for ln in lines if ln.startswith("| **Worst case**"))
    assert f"**{result.ra('IRAD (ours)').percent:.2f}**" in worst
    assert "Hardest attack for IRAD (ours)" in text and "paper: MI-FGSM (82.51 %)" in text
    assert (tmp_path / "out" / "comparison.md").read_text().startswith(text[:200])
    pytest.importorskip("matplotlib")
    assert (tmp_path / "out" / "fig4.png").is_file() and (tmp_path / "out" / "fig4.svg").is_file()


def test_table13_gives_sa_ra_avg_per_attack_and_the_worst_case(tmp_path) -> None:
    from irad.evaluate import paper

    classifier, data = make_task()
    config = EvaluationConfig(n=8, batch_size=8, cost_repeats=0, threads=1)
    result, text = run_table(
        "table13", classifier, data, config=config, progress=False,
        variables={"irad": _tiny_irad(tmp_path)},
    )  # fmt: skip
    lines = text.splitlines()
    for label, key in (
        ("No defense", "none"),
        ("DISCO-style (ours)", "disco"),
        ("IRAD (ours)", "irad"),
    ):
        for name, attack in (("VMI-FGSM", "vmifgsm"), ("VNI-FGSM", "vnifgsm"), ("Admix", "admix")):
            row = next(ln for ln in lines if ln.startswith(f"| {label} | {name} |"))
            p = paper.TABLE13[key][attack]
            assert row.endswith(f"| {p.sa:.2f} | {p.ra:.2f} | {p.avg:.2f} |")
        worst = next(ln for ln in lines if ln.startswith(f"| {label} | **worst case** |"))
        assert f"| {result.ra(label).percent:.2f} [" in worst
    assert "torchattacks' defaults" in text and "DiffPure (t = 100)" in text


def test_rows_without_trained_weights_are_skipped_not_fatal(tmp_path) -> None:
    import pytest

    from irad.errors import MissingWeights
    from irad.evaluate.reproduce import get_table

    spec = get_table("table2")
    missing = {"stl": str(tmp_path / "no-stl"), "nrp": str(tmp_path / "no-nrp")}
    with pytest.raises(MissingWeights, match="irad train-"):
        spec.build_defenses(missing)
    skipped: dict[str, str] = {}
    with pytest.warns(UserWarning, match="not run"):
        built = spec.build_defenses(missing, skipped)
    assert set(skipped) == {"NRP (ours, cpu preset)", "STL (ours, cpu preset)"}
    assert set(built) == {r.label for r in spec.rows} - set(skipped)
    assert all("irad train-" in reason for reason in skipped.values())
