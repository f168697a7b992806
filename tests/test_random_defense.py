"""Scoring random defenses: re-drawn seeds, worst case, intervals, the convergence study."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from irad.defenses import Identity, build_defense
from irad.evaluate.random_defense import (
    convergence_study,
    eot_pgd_iterates,
    redrawn,
    score_under_redraws,
    summarize_draws,
    wilson_interval,
)


def _classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)).eval()


def test_wilson_interval_known_cases() -> None:
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(40.38, abs=0.01) and high == pytest.approx(59.62, abs=0.01)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(0, 20)[1] == pytest.approx(
        16.1, abs=0.1
    )
    assert wilson_interval(20, 20)[1] == 100.0


def test_summary_worst_case_is_all_draws_correct() -> None:
    correct = torch.tensor([[1, 1, 0, 1], [1, 0, 0, 1], [1, 1, 0, 1]], dtype=torch.bool)
    s = summarize_draws(correct)
    assert s["per_draw"] == [75.0, 50.0, 75.0]
    assert s["mean"] == pytest.approx(66.67, abs=0.01)
    assert s["worst_case"] == 50.0  # images 0 and 3 survive every draw
    assert s["draws"] == 3 and s["n"] == 4


def test_redraws_are_reproducible_and_independent() -> None:
    defense = build_defense("randomization", p=1.0)  # draws from the global RNG
    clf = _classifier()
    x, y = torch.rand(16, 3, 8, 8), torch.randint(0, 4, (16,))
    a = score_under_redraws(defense, clf, x, y, seeds=(1, 2, 3))
    b = score_under_redraws(defense, clf, x, y, seeds=(1, 2, 3))
    assert torch.equal(a, b)
    state = torch.random.get_rng_state()
    with redrawn(defense, 5):
        torch.rand(3)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched
    # a deterministic defense gives identical draws
    same = score_under_redraws(Identity(), clf, x, y, seeds=(1, 2))
    assert torch.equal(same[0], same[1])
    assert summarize_draws(same)["std"] == 0.0


def test_pgd_iterates_stay_in_the_ball_and_prefixes_agree() -> None:
    clf = _classifier()
    x, y = torch.rand(4, 3, 8, 8), torch.randint(0, 4, (4,))
    long = eot_pgd_iterates(
        clf, x, y, steps=6, keep=(3,), generator=torch.Generator().manual_seed(0)
    )
    short = eot_pgd_iterates(clf, x, y, steps=3, generator=torch.Generator().manual_seed(0))
    assert set(long) == {3, 6}
    assert torch.equal(long[3], short[3])
    assert float((long[6] - x).abs().max()) <= 8 / 255 + 1e-6
    assert float(long[6].min()) >= 0 and float(long[6].max()) <= 1


def test_convergence_study_on_a_tiny_random_defense() -> None:
    clf = _classifier()
    x = torch.rand(12, 3, 8, 8)
    with torch.no_grad():
        y = clf(x).argmax(1)  # all correct without attack
    study = convergence_study(
        build_defense("randomization", p=1.0),
        clf,
        x,
        y,
        steps=(2, 4),
        eot=(1, 2),
        fixed_eot=2,
        fixed_steps=4,
        score_seeds=(1, 2, 3),
    )
    pairs = {(p.steps, p.eot) for p in study.points}
    assert pairs == {(2, 2), (4, 2), (4, 1)}
    for p in study.points:
        assert p.ra["worst_case"] <= p.ra["mean"] + 1e-9
    assert study.sa["n"] == 12
    assert "PGD steps" in study.to_markdown()
    assert set(study.levelled_off()) == {"steps", "eot"}
    single = convergence_study(
        Identity(), clf, x, y, steps=(2,), eot=(1,), fixed_eot=1, fixed_steps=2, score_seeds=(1,)
    )
    assert single.levelled_off() == {"steps": None, "eot": None}
    assert "not tested (one point)" in single.to_markdown()


def test_redrawn_restores_a_seeded_defense_generator() -> None:
    pytest.importorskip("diffusers")
    from irad.defenses.diffpure import DiffPure
    from irad.models.diffusion import DiffusionConfig, DiffusionModel

    purifier = DiffPure(DiffusionModel(DiffusionConfig.from_preset("tiny")), t=3, seed=4)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        expected = DiffPure(purifier.model, t=3, seed=4)(x)
        with redrawn(purifier, 99):
            inside = purifier(x)
        after = purifier(x)
    assert not torch.equal(inside, expected)
    assert torch.equal(after, expected) and purifier.seed == 4


def test_convergence_study_resumes_from_its_run_folder(tmp_path) -> None:
    clf = _classifier()
    x = torch.rand(6, 3, 8, 8)
    with torch.no_grad():
        y = clf(x).argmax(1)
    kwargs = dict(steps=(2,), eot=(1,), fixed_eot=1, fixed_steps=2, score_seeds=(1, 2))
    first = convergence_study(Identity(), clf, x, y, run_dir=tmp_path, **kwargs)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    calls = []
    second = convergence_study(
        Identity(), clf, x, y, run_dir=tmp_path, progress=calls.append, **kwargs
    )
    assert [p.ra for p in second.points] == [p.ra for p in first.points]
    assert second.points[0].seconds == first.points[0].seconds  # read back, not re-run


def test_run_convergence_writes_its_record_on_the_chosen_device(tmp_path) -> None:
    from irad.errors import IradError
    from irad.evaluate.random_defense import run_convergence

    clf = _classifier()
    x = torch.rand(4, 3, 8, 8)
    with torch.no_grad():
        y = clf(x).argmax(1)
    kwargs = dict(steps=(2,), eot=(1,), fixed_eot=1, fixed_steps=2, score_seeds=(1,))
    study, text = run_convergence(Identity(), clf, x, y, tmp_path, device="cpu", **kwargs)
    record = (tmp_path / "convergence.json").read_text()
    assert '"device": "cpu"' in record and "PGD steps" in text and study.n == 4
    with pytest.raises(IradError, match="cuda:999"):
        run_convergence(Identity(), clf, x, y, tmp_path / "b", device="cuda:999", **kwargs)
