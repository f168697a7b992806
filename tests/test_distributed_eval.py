"""Evaluation and pair generation on several processes (``torchrun``): the same figures, image for
image, as one process; sharding, merging and resuming.

The 2-process test runs a real ``torchrun`` with Gloo on CPU, on the tiny template task of
``test_evaluate`` (a linear classifier on 8x8 images); it is marked ``slow`` (about 12 s on a busy
2-core machine, nearly all of it two processes importing torch): ``pytest -m slow -k processes``.
The in-process tests (sharding, merging, a lone shard resumed by one process) run by default.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from irad.defenses import Identity
from irad.errors import IradError
from irad.evaluate import EvaluationResult, evaluate_defenses
from irad.evaluate.adversarial import AdversarialSource
from irad.evaluate.backend import AttackBackend
from irad.evaluate.images import EvalImages
from irad.evaluate.shards import Shards, merge_shards, shard_indices
from irad.evaluate.specs import AttackSpec
from irad.train.distributed import DistributedContext, DistributedError, local_device

sys.path.insert(0, str(Path(__file__).parent))
from test_evaluate import Noise, make_classifier, make_data

FAST = {"batch_size": 8, "cost_repeats": 0, "progress": False, "threads": 1}
ATTACKS = ["fgsm", "pgd:steps=3"]


# -- sharding and merging -----------------------------------------------------------------------
@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("n_batches", [0, 1, 2, 5, 6, 13])
def test_sharding_covers_every_batch_exactly_once(world: int, n_batches: int) -> None:
    shares = [shard_indices(n_batches, rank, world) for rank in range(world)]
    flat = sorted(i for share in shares for i in share)
    assert flat == list(range(n_batches))  # every batch, none twice
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1  # balanced within one batch
    for rank, share in enumerate(shares):
        assert all(Shards(rank, world).owns(i) for i in share)


@pytest.mark.parametrize("n,batch_size,world", [(1, 4, 2), (7, 3, 2), (24, 8, 3), (25, 8, 4)])
def test_sharding_covers_every_image_exactly_once(n: int, batch_size: int, world: int) -> None:
    images = EvalImages(make_data(n))
    ranges = images.ranges(batch_size)
    seen: list[int] = []
    for rank in range(world):
        for index in Shards(rank, world).indices(len(ranges)):
            start, stop = ranges[index]
            x, _ = images.batch(index, batch_size)
            assert x.shape[0] == stop - start
            seen += range(start, stop)
    assert sorted(seen) == list(range(n))


def test_merge_of_partial_shards() -> None:
    assert merge_shards([{0: "a", 2: "c"}, {1: "b"}], 3) == ["a", "b", "c"]
    assert merge_shards([{1: "b"}, {}, {0: "a"}], 2) == ["a", "b"]  # an idle process
    with pytest.raises(DistributedError, match=r"1 batch\(es\) missing: 2") as missing:
        merge_shards([{0: "a"}, {1: "b"}], 3)
    assert isinstance(missing.value, IradError) and "rerun it to resume" in str(missing.value)
    with pytest.raises(DistributedError, match=r"delivered twice: 1 \(ranks 0 and 1\)"):
        merge_shards([{0: "a", 1: "b"}, {1: "b"}], 2)
    with pytest.raises(DistributedError, match="outside the run's 2 batches: 5"):
        merge_shards([{0: "a", 1: "b", 5: "x"}], 2)


def test_bad_shards_and_devices_are_named() -> None:
    with pytest.raises(IradError, match="rank 2 is not in a job of 2"):
        Shards(2, 2)
    assert local_device(torch.device("cuda"), DistributedContext(1, 1, 2)) == torch.device(
        "cuda", 1
    )
    assert local_device(torch.device("cuda", 0), DistributedContext(1, 1, 2)).index == 0
    ctx = DistributedContext()
    assert ctx.all_gather_object({"a": 1}) == [{"a": 1}] and ctx.broadcast_object(3) == 3
    assert ctx.on_main(lambda: 5) == 5


def test_a_batch_made_alone_equals_the_same_batch_made_after_the_others() -> None:
    """Seeds come from the image range: batch 1 computed first (as rank 1 would) gives the very
    images that a single process makes after batch 0."""
    x, y = make_data(16)
    images, clf = EvalImages((x, y)), make_classifier()
    spec = AttackSpec.parse("pgd:steps=3")  # random start: the seed matters

    def source() -> AdversarialSource:
        return AdversarialSource(
            spec,
            clf,
            {"threat": "oblivious"},
            images,
            base_seed=0,
            batch_size=8,
            device=torch.device("cpu"),
            backend=AttackBackend.default(),
            cache_dir=None,
            use_cache=False,
            code={},
            stats={"attack_batches": 0},
        )

    alone = source()
    together = source()
    first = together(0, 0, 8, *images.batch(0, 8))
    assert not torch.equal(first, images.batch(0, 8)[0])
    assert alone.seeds == together.seeds
    assert torch.equal(
        alone(1, 8, 16, *images.batch(1, 8)), together(1, 8, 16, *images.batch(1, 8))
    )


def test_a_lone_shard_writes_its_batches_and_a_later_run_merges_them(tmp_path: Path) -> None:
    """A shard whose partners are gone stops at the first merge, naming the missing batches;
    what it finished is in the run folder, and a run with another number of processes (here
    one) takes it over instead of recomputing it."""
    data, clf = make_data(), make_classifier()
    out = tmp_path / "run"
    defenses = {"none": Identity(), "noise": Noise()}
    with pytest.raises(DistributedError, match=r"batch\(es\) missing: 0, 2"):
        evaluate_defenses(
            defenses, clf, data, ATTACKS, "oblivious", out_dir=out, shards=Shards(1, 2), **FAST
        )
    merged = evaluate_defenses(
        defenses, clf, data, ATTACKS, "oblivious", out_dir=out, cache_dir=tmp_path, **FAST
    )
    assert merged.timing["partials_reused"] == 2  # batch 1 of both defenses on clean images
    fresh = evaluate_defenses(defenses, clf, data, ATTACKS, "oblivious", cache_dir=tmp_path, **FAST)
    assert _per_image(merged) == _per_image(fresh)


def _per_image(result: EvaluationResult) -> dict[str, object]:
    """Everything per image of a result: correctness and predictions, clean and attacked."""
    out: dict[str, object] = {"labels": result.labels}
    for label, d in result.defenses.items():
        out[f"{label}/clean"] = (d.clean_per_image, d.clean_predicted)
        out[f"{label}/worst"] = d.worst_case_per_image
        for name, a in d.attacks.items():
            out[f"{label}/{name}"] = (a.per_image, a.predicted, a.seeds, a.cache_key)
    return out


# -- a real torchrun ---------------------------------------------------------------------------
SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_evaluate import Noise, make_classifier, make_data
from irad.defenses import Identity
from irad.evaluate import evaluate_defenses
from irad.train.pairs import PairConfig, generate_pairs

out = Path({out!r})
data, clf = make_data(), make_classifier()
result = evaluate_defenses(
    {{"none": Identity(), "noise": Noise()}}, clf, data, {attacks!r}, "oblivious",
    out_dir=out / "eval", cache_dir=out / "cache", draws=2, **{fast!r})
assert result.environment["processes"]["world_size"] == 2
x, y = make_data(10)
images = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
generate_pairs(clf, images, y, out / "pairs", PairConfig(steps=2, chunk=3, batch_size=2),
               progress=False)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _torchrun(script: Path, timeout: float = 240) -> tuple[int, str]:
    """Run ``script`` on 2 processes; the whole process group is killed on a timeout, so no
    worker outlives the test."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_port", str(_free_port()), str(script)]
    job = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = job.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        output, _ = job.communicate()
        return -1, f"timed out after {timeout} s\n{output}"
    return job.returncode, output


@pytest.mark.slow  # about 12 s here, most of it two Python processes importing torch
def test_two_processes_give_the_result_of_one_image_for_image(tmp_path: Path) -> None:
    """torchrun, 2 Gloo processes: evaluation and pair generation equal one process's, a
    crashed shard resumes alone, with any number of processes."""
    from irad.train.pairs import PairConfig, generate_pairs

    two, one = tmp_path / "two", tmp_path / "one"
    script = tmp_path / "job.py"
    script.write_text(
        SCRIPT.format(tests=str(Path(__file__).parent), out=str(two), attacks=ATTACKS, fast=FAST)
    )
    code, output = _torchrun(script)
    assert code == 0, output[-3000:]

    # evaluation: the 1-process run, then every per-image figure, seed and image compared
    data, clf = make_data(), make_classifier()
    defenses = {"none": Identity(), "noise": Noise()}
    settings = {"draws": 2, **FAST}
    single = evaluate_defenses(
        defenses, clf, data, ATTACKS, "oblivious", out_dir=one / "eval",
        cache_dir=one / "cache", **settings,
    )  # fmt: skip
    merged = EvaluationResult.from_json(two / "eval" / "result.json")
    assert _per_image(merged) == _per_image(single)
    assert merged.timing["attack_batches"] == single.timing["attack_batches"] == 2 * 3
    pgd = sorted((one / "cache").rglob("batch_*.safetensors"))
    assert len(pgd) == 6
    for path in pgd:  # the adversarial images themselves, batch by batch
        twin = two / "cache" / path.relative_to(one / "cache")
        assert torch.equal(load_file(path)["x_adv"], load_file(twin)["x_adv"])
    assert (two / "eval" / "per_image.csv").read_text() == (
        one / "eval" / "per_image.csv"
    ).read_text()

    # a crashed shard: rank 1's attacked batch 1 never finished; a 1-process rerun redoes it alone
    lost = [p for p in (two / "eval" / "partials").glob("*pgd*/batch_00001.json")]
    assert len(lost) == 2  # both defenses
    for path in lost:
        path.unlink()
    resumed = evaluate_defenses(
        defenses, clf, data, ATTACKS, "oblivious", out_dir=two / "eval",
        cache_dir=two / "cache", **settings,
    )  # fmt: skip
    assert resumed.timing["partials_reused"] == 2 * (1 + 2) * 3 - 2
    assert resumed.timing["attack_batches"] == 0  # its images are in the cache
    assert _per_image(resumed) == _per_image(single)

    # pairs: the same chunks as one process, and the same manifest totals
    x, y = make_data(10)
    images = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    generate_pairs(
        clf, images, y, one / "pairs", PairConfig(steps=2, chunk=3, batch_size=2), progress=False
    )
    manifests = [json.loads((d / "pairs" / "manifest.json").read_text()) for d in (one, two)]
    assert manifests[0]["status"] == manifests[1]["status"] == "complete"
    assert manifests[0]["totals"] == manifests[1]["totals"]
    assert manifests[0]["run_key"] == manifests[1]["run_key"]
    chunks = sorted((one / "pairs" / "chunks").glob("*.safetensors"))
    assert len(chunks) == 4
    for path in chunks:
        twin = two / "pairs" / "chunks" / path.name
        assert torch.equal(load_file(path)["adv"], load_file(twin)["adv"])
        assert torch.equal(load_file(path)["indices"], load_file(twin)["indices"])
