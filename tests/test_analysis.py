"""The paper's analysis (A.8-A.9): feature distance, decision paths, PCA, case figures, and the
``irad analysis`` / ``irad visualize`` commands on tiny models."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from irad.analysis import (
    block_similarity,
    case_study,
    classifier_decision_path,
    decision_path,
    feature_distance,
    find_irad,
    path_similarity,
    pca_2d,
    semantic_analysis,
)
from irad.analysis.figures import plot_case, plot_pca
from irad.analysis.run import class_images, defense_label, resolve_class
from irad.cli import app
from irad.data import ImageDataset
from irad.defenses import IRAD, DefenseChain, build_defense
from irad.errors import ConfigError, InputError, IradError
from irad.evaluate.plots import matplotlib_missing
from irad.models import Classifier, build_classifier, save_classifier
from irad.models.edsr import EDSRConfig
from irad.models.liif import ImplicitConfig, ImplicitRepresentation
from irad.models.samplenet import SampleNetConfig

RUNNER = CliRunner()
needs_mpl = pytest.mark.skipif(matplotlib_missing() is not None, reason="matplotlib missing")


@pytest.fixture(scope="module")
def clf() -> Classifier:
    torch.manual_seed(0)
    return build_classifier("resnet20").eval()


@pytest.fixture(scope="module")
def tiny_irad() -> IRAD:
    torch.manual_seed(0)
    rep = ImplicitRepresentation(ImplicitConfig(EDSRConfig(n_resblocks=1, n_feats=4), (8, 8)))
    irad = IRAD(rep, preset=None, samplenet_config=SampleNetConfig(hidden=(8, 8)), chunk_size=256)
    with torch.no_grad():
        irad.samplenet.imnet.last.weight.normal_(0, 0.1)
    return irad.eval()


# -- feature distance (Table 18) ------------------------------------------------------------------
def test_feature_distance_known_cases():
    clean = torch.tensor([[0.0, 0.0], [2.0, 0.0]])  # centre (1, 0)
    assert feature_distance(clean, torch.tensor([[1.0, 0.0]])).item() == 0.0
    assert feature_distance(clean, torch.tensor([[4.0, 4.0]])).item() == pytest.approx(5.0)
    # identical inputs: each point's distance to a one-point centre is 0
    x = torch.randn(1, 7)
    assert feature_distance(x, x).item() == 0.0
    # l2: unit rows first, so a rescaled copy is at distance 0
    assert feature_distance(x, 3 * x, normalize="l2").item() == pytest.approx(0.0, abs=1e-6)


def test_feature_distance_refuses_bad_input():
    with pytest.raises(InputError, match="feature sizes differ"):
        feature_distance(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(InputError, match=r"\(N, D\)"):
        feature_distance(torch.zeros(3), torch.zeros(2, 3))
    with pytest.raises(IradError, match="normalize"):
        feature_distance(torch.zeros(2, 3), torch.zeros(2, 3), normalize="z")


# -- decision path (Table 19) ---------------------------------------------------------------------
def test_decision_path_identical_inputs_have_similarity_one():
    acts = [torch.rand(3, 4, 5, 5), torch.rand(3, 8, 2, 2)]
    p = decision_path(acts)
    assert p.shape == (3, 12)
    assert torch.allclose(path_similarity(p, p), torch.ones(3))


def test_decision_path_weighs_blocks_equally_and_is_shift_invariant():
    a = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])]
    b = [torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])]  # second block orthogonal
    # mean over blocks of the per-block cosine: (1 + 0) / 2, whatever the blocks' scales
    assert path_similarity(decision_path(a), decision_path(b)).item() == pytest.approx(0.5)
    b_scaled = [b[0] * 100, b[1] * 0.01]
    assert path_similarity(decision_path(a), decision_path(b_scaled)).item() == pytest.approx(0.5)
    # channel means ignore where in the map the activation sits
    m = torch.zeros(1, 2, 4, 4)
    m[0, 0, 1, 1] = 1.0
    rolled = m.roll(1, dims=3)
    sim = path_similarity(decision_path([m]), decision_path([rolled]))
    assert sim.item() == pytest.approx(1.0)


def test_block_similarity_averages_to_path_similarity():
    acts_a = [torch.rand(4, 3, 2, 2), torch.rand(4, 5, 1, 1), torch.rand(4, 2)]
    acts_b = [a + 0.3 * torch.rand_like(a) for a in acts_a]
    pa, pb = decision_path(acts_a), decision_path(acts_b)
    per_block = block_similarity(pa, pb, [3, 5, 2])
    assert per_block.shape == (4, 3)
    assert torch.allclose(per_block.mean(dim=1), path_similarity(pa, pb), atol=1e-6)
    assert torch.allclose(block_similarity(pa, pa, [3, 5, 2]), torch.ones(4, 3))
    with pytest.raises(InputError, match="do not split"):
        block_similarity(pa, pb, [3, 5])


def test_path_similarity_refuses_mismatched_shapes():
    with pytest.raises(InputError, match="differ in shape"):
        path_similarity(torch.ones(2, 3), torch.ones(3, 3))
    with pytest.raises(InputError, match="at least one block"):
        decision_path([])


# -- the models layer's helpers -------------------------------------------------------------------
def test_classifier_features_are_the_heads_input(clf):
    x = torch.rand(2, 3, 32, 32)
    feats = clf.features(x)
    assert feats.shape == (2, 64)
    assert torch.allclose(clf.head()(feats), clf(x), atol=1e-5)
    assert len(clf.blocks()) == 9  # ResNet-20: 3 stages of 3 blocks
    logits, path = classifier_decision_path(clf, x)
    assert path.shape == (2, 16 * 3 + 32 * 3 + 64 * 3)
    assert torch.allclose(logits, clf(x))


def test_classifier_activations_refuse_foreign_modules(clf):
    with pytest.raises(ConfigError, match="did not run"):
        clf.activations(torch.rand(1, 3, 32, 32), [nn.Linear(2, 2)])
    flat = Classifier(nn.Sequential(nn.Flatten(), nn.ReLU()), num_classes=None)
    with pytest.raises(ConfigError, match=r"no nn\.Linear head"):
        flat.features(torch.rand(1, 3, 2, 2))
    with pytest.raises(ConfigError, match="blocks"):
        flat.blocks()


# -- semantic analysis and PCA --------------------------------------------------------------------
def test_semantic_analysis_identity_defense_matches_adv(clf):
    torch.manual_seed(1)
    x = torch.rand(6, 3, 32, 32)
    adv = (x + 0.03 * torch.randn_like(x)).clamp(0, 1)
    res = semantic_analysis(
        clf, x, adv, {"Id(Adv)": build_defense("none"), "same": lambda t: t}, torch.zeros(6).long()
    )
    rows = {r["set"]: r for r in res.rows()}
    assert list(rows) == ["Clean", "Adv", "Id(Adv)", "same"]
    assert rows["Clean"]["similarity"] == pytest.approx(1.0)
    assert rows["Id(Adv)"]["distance"] == pytest.approx(rows["Adv"]["distance"], rel=1e-5)
    assert rows["Adv"]["similarity"] < 1.0
    assert res.block_sizes == [16] * 3 + [32] * 3 + [64] * 3
    assert len(rows["Adv"]["block_similarity"]) == 9
    assert rows["Clean"]["last_block_similarity"] == pytest.approx(1.0)
    assert json.loads(json.dumps(res.to_dict()))["rows"][0]["n"] == 6
    pca = res.pca()
    assert set(pca) == set(rows) and pca["Clean"].shape == (6, 2)


def test_pca_2d_is_deterministic_and_refuses_1d():
    feats = {"a": torch.randn(5, 4), "b": torch.randn(3, 4)}
    one, two = pca_2d(feats), pca_2d(feats)
    assert one["b"].shape == (3, 2) and torch.equal(one["a"], two["a"])
    with pytest.raises(InputError, match="at least 2"):
        pca_2d({"a": torch.randn(4, 1)})


# -- case figures ----------------------------------------------------------------------------------
def test_find_irad_in_chains(tiny_irad):
    jpeg = build_defense("bit-depth", bits=5)
    assert find_irad(tiny_irad) == (None, tiny_irad)
    before, found = find_irad(DefenseChain(jpeg, tiny_irad))
    assert found is tiny_irad and before is jpeg
    assert find_irad(jpeg) == (None, None)


@needs_mpl
def test_case_study_and_figures(tmp_path, clf, tiny_irad):
    x = torch.rand(3, 32, 32)
    adv = (x + 8 / 255 * torch.sign(torch.randn_like(x))).clamp(0, 1)
    case = case_study(clf, x, 2, adv, tiny_irad, classes=[f"c{k}" for k in range(10)], index=5)
    assert [p.title for p in case.panels][:2] == ["clean", "adversarial"]
    assert case.shifts is not None and case.shifts.shape == (32, 32, 2)
    assert case.diff_adv.max() <= 8 / 255 + 1e-6
    assert any("SampleNet shift" in line for line in case.summary())
    paths = plot_case(case, tmp_path / "case")
    assert [p.suffix for p in paths] == [".png", ".svg"] and all(p.stat().st_size for p in paths)
    assert case_study(clf, x, 2, adv, "median").shifts is None  # no SampleNet, no arrows
    res = semantic_analysis(clf, x[None], adv[None], {}, torch.tensor([2]))
    assert [p.name for p in plot_pca(res, tmp_path / "pca")] == ["pca.png", "pca.svg"]


def test_case_study_refuses_batches(clf):
    with pytest.raises(InputError, match="one image"):
        case_study(clf, torch.rand(2, 3, 8, 8), 0, torch.rand(2, 3, 8, 8), "none")


# -- the run helpers and the commands ------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory, clf, tiny_irad):
    root = tmp_path_factory.mktemp("analysis")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (8, 32, 32, 3), generator=g, dtype=torch.uint8)
    y = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    data = ImageDataset(x, y, ["cat", "dog"], "tiny")
    npz = data.save_npz(root / "tiny.npz")
    clf2 = build_classifier("resnet20", num_classes=2)
    torch.manual_seed(0)
    save_classifier(clf2, root / "clf")
    tiny_irad.save_pretrained(root / "irad")
    return {"root": root, "npz": npz, "clf": root / "clf", "irad": root / "irad", "data": data}


def test_class_selection(tiny_files):
    data = tiny_files["data"]
    assert resolve_class(data, "dog") == 1 and resolve_class(data, "0") == 0
    with pytest.raises(ConfigError, match="unknown class"):
        resolve_class(data, "horse")
    x, y, rows = class_images(data, 1, 3)
    assert rows == [1, 3, 5] and y.tolist() == [1, 1, 1] and x.shape == (3, 3, 32, 32)
    with pytest.raises(IradError, match="more than the 4"):
        class_images(data, 1, 5)
    assert defense_label("recons") == "RECONS(Adv)"
    assert defense_label("irad>jpeg") == "irad>jpeg(Adv)"


@needs_mpl
def test_cli_analysis_and_visualize_write_files(tiny_files):
    root, irad_dir = tiny_files["root"], tiny_files["irad"]
    common = ["-w", str(tiny_files["clf"]), "-d", str(tiny_files["npz"]), "--attack",
              "pgd:steps=1", "--threads", "1"]  # fmt: skip
    out = root / "an"
    result = RUNNER.invoke(
        app,
        ["analysis", *common, "--class", "dog", "--n", "3", "--out", str(out),
         "--defense", f"recons:checkpoint={irad_dir}", "--defense", f"irad:checkpoint={irad_dir}"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "IRAD(Adv)" in result.output and "RECONS(Adv)" in result.output
    record = json.loads((out / "result.json").read_text())
    assert [r["set"] for r in record["rows"]] == ["Clean", "Adv", "RECONS(Adv)", "IRAD(Adv)"]
    assert record["settings"]["class_name"] == "dog" and record["settings"]["n"] == 3
    assert (out / "table.md").is_file() and (out / "fig5-pca.png").stat().st_size > 0
    assert (out / "path-by-block.svg").stat().st_size > 0
    vis = root / "vis"
    result = RUNNER.invoke(
        app,
        ["visualize", *common, "--index", "2", "--out", str(vis),
         "--defense", f"bit-depth:bits=5>irad:checkpoint={irad_dir}"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "SampleNet shift" in result.output
    for suffix in (".png", ".svg", ".txt"):
        assert (vis / f"case-2{suffix}").stat().st_size > 0


def test_cli_visualize_refuses_bad_index(tiny_files):
    result = RUNNER.invoke(
        app,
        ["visualize", "-w", str(tiny_files["clf"]), "-d", str(tiny_files["npz"]),
         "--index", "99", "--out", str(tiny_files["root"] / "bad")],
    )  # fmt: skip
    assert result.exit_code != 0
    assert isinstance(result.exception, IradError)
