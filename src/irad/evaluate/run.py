"""One evaluation run: scoring defenses on clean and adversarial images, and running each
attack the way the threat model says.

:class:`EvaluationRun` holds what the steps of a run share (the classifier, the defenses, the
threat model, the adversarial sources, the partial results); :mod:`irad.evaluate.harness` calls
the steps in order and :mod:`irad.evaluate.diagnostics` adds gradients, cost and sanity checks. How
each threat is run is the threat model's business (:class:`irad.attacks.ThreatModel`):

* a threat that does not see the defense (``oblivious``): each attack runs once per batch on its
  surface (the classifier alone); the adversarial images are cached on disk and every defense
  is judged on those same images.
* a white-box threat (``bpda``, ``bpda-eot``, ``adaptive``): each attack runs per defense, adapted
  to it (``threat.adapt``), through ``threat.surface(defense, classifier, eot_samples=...)``;
  the images are cached too (keyed by the defense as well), so a rerun with more evaluation
  draws attacks nothing.

Then ``classifier(defense(x_adv))`` is scored. A random defense is scored with fresh randomness
(seeds the attack never used), ``draws`` times per image. Every (defense, attack, batch) result
is written atomically to ``out_dir/partials``; a crashed run resumes where it stopped.

Seeds (:data:`irad.evaluate.seeds.SEED_SCHEME`) are derived from the base seed and the *images*
a batch covers (``start``, ``stop``), not from the batch's position in a loop, and the attack
seed of every batch is recorded with the results, so any batch's adversarial images can be
rebuilt alone.

Under ``torchrun`` each process computes the batches :class:`~irad.evaluate.shards.Shards` gives
it (whole batches, so every seed is the one a single process would use) and the per-batch
results are exchanged after each step: every process then holds the whole result, identical to a
one-process run image for image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from irad.attacks.threat import ThreatModel
from irad.checks import check_logits
from irad.defenses.base import DefendedClassifier, Defense, Identity
from irad.errors import InputError
from irad.evaluate.adversarial import AdversarialSource
from irad.evaluate.backend import AttackBackend
from irad.evaluate.cache import PartialStore, attack_code_fingerprint, module_fingerprint
from irad.evaluate.config import EvaluationConfig
from irad.evaluate.images import EvalImages
from irad.evaluate.metrics import decode_bits, encode_bits
from irad.evaluate.seeds import derive_seed
from irad.evaluate.shards import Shards
from irad.evaluate.specs import AttackSpec, digest
from irad.utils.seed import seeded


@dataclass
class DefenseEntry:
    """One defense of the run, with its label and identity."""

    label: str
    module: Defense
    fingerprint: str
    draws: int
    #: Whether the attacks of this run see the defense (for the sanity checks); the identity
    #: is seen whatever the threat, since there is nothing to hide.
    white_box: bool

    @property
    def stochastic(self) -> bool:
        return bool(getattr(self.module, "stochastic", False))

    def identity(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "draws": self.draws}


@dataclass
class Scores:
    """Per-image outcome of one defense on one set of inputs: correctness and predicted labels,
    one row per draw."""

    correct: Tensor  # (draws, N) bool
    predicted: Tensor  # (draws, N) int64

    @classmethod
    def cat(cls, parts: Sequence[Scores]) -> Scores:
        """Batches joined along the images."""
        return cls(
            torch.cat([p.correct for p in parts], dim=1),
            torch.cat([p.predicted for p in parts], dim=1),
        )


@dataclass
class AttackRun:
    """Per-image results of one defense under one attack, and how they were made."""

    correct: Tensor  # (draws, N) bool
    predicted: Tensor  # (draws, N) int64: the label the defended classifier gave
    cache_key: str
    spec: AttackSpec  # as run
    eot_samples: int = 1
    adapted: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    seed_key: str = ""


#: A supplier of the inputs of one batch: ``(index, start, stop, x, y) -> images``.
Supply = Callable[[int, int, int, Tensor, Tensor], Tensor]


class EvaluationRun:
    """The state shared by the steps of one evaluation, and the steps.

    Args:
        config: the settings (the threat model is ``config.threat_model``).
        classifier, defenses: on ``device`` and in eval mode already.
        images: the evaluation images.
        backend: where attacks come from.
        cache_dir, use_cache: the adversarial-image cache.
        store: per-batch partial results of the run folder (None: in memory only).
        device: where everything runs.
        progress: show progress bars.
        shards: this process's share of the batches (default: all of them).
    """

    def __init__(
        self,
        config: EvaluationConfig,
        classifier: nn.Module,
        defenses: Mapping[str, Defense],
        images: EvalImages,
        *,
        backend: AttackBackend,
        cache_dir: Path | None,
        use_cache: bool,
        store: PartialStore | None,
        device: torch.device,
        progress: bool,
        shards: Shards | None = None,
    ) -> None:
        self.config = config
        self.shards = shards or Shards()
        self.threat: ThreatModel = config.threat_model
        self.classifier = classifier
        self.classifier_fp = module_fingerprint(classifier)
        self.images = images
        self.backend = backend
        self.cache_dir = cache_dir
        self.use_cache = use_cache
        self.store = store
        self.device = device
        self.progress = progress
        self.code = attack_code_fingerprint()
        self.entries = [
            DefenseEntry(
                label=label,
                module=module,
                fingerprint=module_fingerprint(module),
                draws=config.draws if getattr(module, "stochastic", False) else 1,
                white_box=self.threat.white_box or isinstance(module, Identity),
            )
            for label, module in defenses.items()
        ]
        self.surfaces: dict[str, nn.Module] = {}
        self.sources: dict[str, AdversarialSource] = {}
        self.stats: dict[str, int] = {
            "attack_batches": 0,
            "cached_batches": 0,
            "partials_reused": 0,
        }

    # -- scoring ----------------------------------------------------------------------------
    def score(
        self, entry: DefenseEntry, x: Tensor, y: Tensor, task_key: str, start: int, stop: int
    ) -> Scores:
        """Correctness and predictions ``(draws, B)`` of ``classifier(defense(x))``, fresh
        randomness per draw."""
        rows, labels = [], []
        for draw in range(entry.draws):
            seed = derive_seed(self.config.seed, "score", task_key, start, stop, draw)
            with seeded(seed, devices=[self.device]), torch.no_grad():
                purified = entry.module(x)
                if purified.shape != x.shape:
                    raise InputError(
                        f"defense {entry.label!r} returned shape {tuple(purified.shape)} for "
                        f"input {tuple(x.shape)}; a defense must keep the image shape"
                    )
                logits = check_logits(self.classifier(purified), x.shape[0])
            predicted = logits.argmax(dim=1)
            rows.append((predicted == y).cpu())
            labels.append(predicted.to("cpu", torch.int64))
        return Scores(torch.stack(rows), torch.stack(labels))

    def task(
        self,
        label: str,
        key: str,
        images: EvalImages,
        entries: Sequence[DefenseEntry],
        make_inputs: Supply | None,
        desc: str,
        seed_key: str,
    ) -> dict[str, Scores]:
        """Score ``entries`` on every batch; ``make_inputs`` gives the (adversarial) inputs.

        ``key`` keys the finished batches (it changes with the code); ``seed_key``, the same
        inputs less the code and the device, seeds a random defense's draws.

        Returns per-defense scores ``(draws, N)``. This process computes its own batches
        (:attr:`shards`); finished batches are read back from the partial store instead of
        being recomputed, and the batches of every process are merged in order.
        """
        bs = self.config.batch_size
        keys = {e.label: digest({"task": key, "defense": e.identity()}) for e in entries}
        task_keys = {e.label: digest({"task": seed_key, "defense": e.identity()}) for e in entries}
        ranges = images.ranges(bs)
        owned = self.shards.indices(len(ranges))
        mine: dict[int, dict[str, Scores]] = {}
        bar = tqdm(total=len(owned), desc=desc, leave=False, disable=not self.progress)
        for index in owned:
            start, stop = ranges[index]
            done: dict[str, Scores] = {}
            todo = []
            for e in entries:
                saved = None
                if self.store is not None:
                    saved = self.store.load(f"{e.label}-{label}", keys[e.label], index)
                if saved is not None and isinstance(saved.get("predicted"), list):
                    done[e.label] = Scores(
                        decode_bits(saved["bits"]),
                        torch.tensor(saved["predicted"], dtype=torch.int64),
                    )
                    self.stats["partials_reused"] += 1
                else:
                    todo.append(e)
            if todo:
                x, y = images.batch(index, bs)
                x, y = x.to(self.device), y.to(self.device)
                inputs = x if make_inputs is None else make_inputs(index, start, stop, x, y)
                for e in todo:
                    scores = self.score(e, inputs, y, task_keys[e.label], start, stop)
                    if self.store is not None:
                        self.store.save(
                            f"{e.label}-{label}",
                            keys[e.label],
                            index,
                            {
                                "defense": e.label,
                                "task": label,
                                "images": [start, stop],
                                "bits": encode_bits(scores.correct),
                                "predicted": scores.predicted.tolist(),
                            },
                        )
                    done[e.label] = scores
            mine[index] = done
            bar.update(1)
        bar.close()
        per_batch = self.shards.gather(mine, len(ranges), f"{desc} batch")
        return {e.label: Scores.cat([batch[e.label] for batch in per_batch]) for e in entries}

    def clean(self) -> dict[str, Scores]:
        """SA: per-defense scores on the clean images."""
        what = {
            "task": "clean",
            "classifier": self.classifier_fp,
            "data": self.images.fingerprint,
            "n": self.images.n,
            "seed": self.config.seed,
            "batch_size": self.config.batch_size,
        }
        key = digest({**what, "device": self.device.type, "code": self.code})
        return self.task(
            "clean", key, self.images, self.entries, None, "clean", seed_key=digest(what)
        )

    # -- attacks ----------------------------------------------------------------------------
    def adversarial(
        self, spec: AttackSpec, surface: nn.Module, surface_id: dict[str, Any], images: EvalImages
    ) -> AdversarialSource:
        """The per-batch source of ``spec``'s adversarial images on ``surface``."""
        source = AdversarialSource(
            spec,
            surface,
            surface_id,
            images,
            base_seed=self.config.seed,
            batch_size=self.config.batch_size,
            device=self.device,
            backend=self.backend,
            cache_dir=self.cache_dir,
            use_cache=self.use_cache,
            code=self.code,
            stats=self.stats,
        )
        self.sources.setdefault(source.key, source)
        return source

    def attack_config(self, cache_key: str) -> dict[str, Any] | None:
        """The full config of the attack that made ``cache_key``'s images."""
        source = self.sources.get(cache_key)
        return source.attack_config if source is not None else None

    @property
    def cache_problems(self) -> list[str]:
        """Cached batches that failed verification and were recomputed, one line each."""
        return [line for s in self.sources.values() for line in s.cache.problems]

    def surface_for(self, entry: DefenseEntry, eot: int) -> tuple[nn.Module, dict[str, Any]]:
        """The module the attack differentiates through on ``entry``, and its identity."""
        ident = {
            "threat": self.threat.name,
            "classifier": self.classifier_fp,
            "defense": entry.fingerprint,
            "eot_samples": eot,
        }
        key = f"{entry.label}|{eot}"
        if key not in self.surfaces:
            self.surfaces[key] = self.threat.surface(entry.module, self.classifier, eot_samples=eot)
        return self.surfaces[key], ident

    def run_attack(
        self,
        spec: AttackSpec,
        entries: Sequence[DefenseEntry],
        images: EvalImages | None = None,
        *,
        on_deployed_model: bool = False,
    ) -> dict[str, AttackRun]:
        """Per-image RA of ``entries`` under ``spec``, run as the threat model says.

        ``on_deployed_model``: a gradient-free attack that queries defense + classifier, whatever
        the threat (the sanity checks' black-box comparison).
        """
        images = images or self.images
        if not self.threat.white_box and not on_deployed_model:
            # The surface does not contain the defense: one attack serves every defense.
            surface = self.threat.surface(entries[0].module, self.classifier)
            ident = {"threat": self.threat.name, "classifier": self.classifier_fp}
            source = self.adversarial(spec, surface, ident, images)
            result = self.task(
                spec.label, source.key, images, entries, source, spec.label, source.seed_key
            )
            return {
                label: AttackRun(
                    scores.correct,
                    scores.predicted,
                    source.key,
                    spec,
                    seeds=source.seeds,
                    seed_key=source.seed_key,
                )
                for label, scores in result.items()
            }
        out: dict[str, AttackRun] = {}
        for entry in entries:
            run_spec, eot, adapted = spec, 1, {}
            if on_deployed_model:
                surface: nn.Module = DefendedClassifier(entry.module, self.classifier)
                ident = {
                    "threat": "deployed",
                    "classifier": self.classifier_fp,
                    "defense": entry.fingerprint,
                }
            else:
                plan = self.threat.adapt(
                    spec.name, spec.params, entry.module, eot_samples=self.config.eot_samples
                )
                run_spec = AttackSpec(spec.name, spec.eps, plan.params, spec.alias)
                eot, adapted = plan.eot_samples, plan.adapted
                surface, ident = self.surface_for(entry, eot)
            source = self.adversarial(run_spec, surface, ident, images)
            desc = f"{spec.label} | {entry.label}"
            result = self.task(
                spec.label, source.key, images, [entry], source, desc, source.seed_key
            )
            scores = result[entry.label]
            out[entry.label] = AttackRun(
                scores.correct,
                scores.predicted,
                source.key,
                run_spec,
                eot,
                adapted,
                source.seeds,
                source.seed_key,
            )
        return out
