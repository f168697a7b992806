"""``irad reproduce all`` as data: every stage is one ``irad`` command, in dependency order.

:func:`build_stages` lists the commands that made the shipped weights and the measured tables
(``src/irad/weights/README.md``, ``docs/results.md``): adversarial pairs, stage 1 (and the five
Table-7 task runs), stage 2 (and Table 15's bilinear SampleNet), the diffusion purifier, STL and
NRP, then the ``irad reproduce tableN`` evaluations, the diffusion measurements and the analysis
(Tables 18-19, Figs. 5-6). Every evaluation reads the pipeline's own training outputs. The
runner is :mod:`irad.evaluate.pipeline_runner`; the page, :mod:`irad.evaluate.results_page`.

Example:
    >>> stages = build_stages("r56.th", "results/all", surrogate="r20.th")
    >>> stages[0].command
    'irad prepare-pairs -w r20.th --out results/all/pairs/train --n 50000 --steps 10 --eps 8 --alpha 2 --seed 0'
    >>> [s.name for s in stages][-2:], stages[-1].needs
    (['case', 'analysis'], ('irad', 'case'))
"""  # noqa: E501

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from irad.errors import ConfigError

#: Options that say how a command runs, not what it computes: left out of a stage's identity,
#: so that changing them never reruns a finished stage.
RUNTIME_OPTIONS = ("--threads", "--device")

#: The stage-1 tasks of Table 7 (its rows read ``RUNS/t7-<task>``).
TABLE7_TASKS = ("pgd-denoising", "gaussian-denoising", "clean2clean", "super-resolution",
                "inpainting")  # fmt: skip


@dataclass(frozen=True)
class Figure:
    """A figure a stage writes (``source``), its file name in the figures folder, its caption."""

    source: str
    name: str
    caption: str


@dataclass(frozen=True)
class Stage:
    """One ``irad`` command of the pipeline.

    Attributes:
        name: unique; also the name of its log file and of its page section, if it has one.
        argv: the arguments after ``irad``.
        output: the file that exists once the command has finished; the ``stage.json`` marker
            lies beside it.
        run_dir: the training run folder, for commands resumable with ``--resume``.
        section: the page section the stage feeds (``None``: none).
        report: the file that becomes the section (markdown, or a JSON record).
        needs: the stages whose outputs it reads (all earlier in the list).
        figures: figures copied to the figures folder.
    """

    name: str
    argv: tuple[str, ...]
    output: str
    run_dir: str | None = None
    section: str | None = None
    report: str | None = None
    needs: tuple[str, ...] = ()
    figures: tuple[Figure, ...] = ()

    @property
    def command(self) -> str:
        """The command line a user can copy."""
        return "irad " + shlex.join(self.argv)

    @property
    def marker(self) -> Path:
        """``stage.json`` beside the output: the identity of the run that made it."""
        return Path(self.output).parent / "stage.json"

    def identity(self) -> dict[str, object]:
        """What makes two runs of this stage the same: its name and its arguments without
        :data:`RUNTIME_OPTIONS` (and their values)."""
        kept: list[str] = []
        skip = False
        for arg in self.argv:
            if skip:
                skip = False
            elif arg in RUNTIME_OPTIONS:
                skip = True
            else:
                kept.append(arg)
        return {"stage": self.name, "argv": kept}


@dataclass(frozen=True)
class Sizes:
    """How much each command does in one mode: each command's size options.

    ``table_options`` maps a table (or ``"*"``, every table) to options of its
    ``irad reproduce`` command.
    """

    pairs: tuple[str, ...]
    eval_pairs: tuple[str, ...]
    inr: tuple[str, ...]
    samplenet: tuple[str, ...]
    task_runs: tuple[str, ...]
    diffusion: tuple[str, ...]
    stl: tuple[str, ...]
    nrp: tuple[str, ...]
    tables: tuple[str, ...]
    table_options: tuple[tuple[str, tuple[str, ...]], ...]
    analysis_n: int


_PGD10 = ("--steps", "10", "--eps", "8", "--alpha", "2")
_ALL_TABLES = ("table1", "table2", "table3", "table4", "table5", "table7", "table8", "table10",
               "table13", "table15")  # fmt: skip

#: The CPU protocol: the commands of ``docs/results.md`` and ``src/irad/weights/README.md``.
CPU = Sizes(
    pairs=("--n", "50000", *_PGD10),
    eval_pairs=("--split", "test", "--n", "1000", *_PGD10),
    inr=("--preset", "cpu"),
    samplenet=("--preset", "cpu"),
    task_runs=("--preset", "cpu", "--epochs", "4", "--max-steps-per-epoch", "25"),
    diffusion=("--preset", "cpu", "--epochs", "5"),
    stl=("--preset", "cpu"),
    nrp=("--preset", "cpu"),
    tables=_ALL_TABLES,
    # Table 3 as measured (BPDA on the first 200 images); every other table: the protocol's n
    table_options=(("table3", ("--n", "200")),),
    analysis_n=100,
)

#: The paper's sizes, for GPUs: PGD-100 pairs over the whole training set, the ``paper``
#: presets with their own schedules, every test image (``irad reproduce --protocol paper``).
PAPER = Sizes(
    pairs=("--steps", "100", "--eps", "8", "--alpha", "2"),
    eval_pairs=("--split", "test", "--n", "1000", "--steps", "100", "--eps", "8", "--alpha", "2"),
    inr=("--preset", "paper"),
    samplenet=("--preset", "paper"),
    task_runs=("--preset", "paper"),
    diffusion=("--preset", "paper"),
    stl=("--preset", "paper"),
    nrp=("--preset", "paper"),
    tables=_ALL_TABLES,
    table_options=(("*", ("--protocol", "paper")),),
    analysis_n=100,
)

_TINY_RUN = ("--epochs", "1", "--max-steps-per-epoch", "2", "--eval-n", "8")
#: A smoke test of every command: a few minutes on one CPU thread.
QUICK = Sizes(
    pairs=("--n", "64", "--steps", "2", "--eps", "8", "--alpha", "2"),
    eval_pairs=("--split", "test", "--n", "16", "--steps", "2", "--eps", "8", "--alpha", "2"),
    inr=("--preset", "cpu", "--train-n", "64", "--batch-size", "16", *_TINY_RUN),
    samplenet=("--preset", "cpu", "--train-n", "64", "--batch-size", "8", *_TINY_RUN),
    task_runs=("--preset", "cpu", "--train-n", "64", "--batch-size", "16", *_TINY_RUN),
    diffusion=("--preset", "tiny", "--batch-size", "8", *_TINY_RUN),
    stl=("--preset", "tiny", "--train-n", "64", *_TINY_RUN),
    nrp=("--preset", "tiny", "--train-n", "64", *_TINY_RUN),
    # every table, on 4 images (Table 4 in front of the one classifier); of the diffusion
    # measurements one of each command (diffusion-quality at t = 20, one convergence run)
    tables=_ALL_TABLES,
    table_options=(("*", ("--n", "4")),),
    analysis_n=4,
)

# The trained weights each table's rows read: irad reproduce's flag and the stages making them.
_WEIGHTS_OF_TABLE = {
    "table1": (),
    "table2": ("irad", "stl", "nrp", "diffusion-export"),
    "table3": ("stl", "nrp", "diffusion-export"),
    "table4": ("irad",),
    "table5": ("irad", "stl", "nrp"),
    "table7": ("runs",),
    "table8": ("irad",),
    "table10": ("irad",),
    "table13": ("irad",),
    "table15": ("irad", "runs"),
}
_RUNS_OF_TABLE = {"table7": tuple(f"t7-{t}" for t in TABLE7_TASKS), "table15": ("t15-bilinear",)}


def build_stages(
    weights: str,
    out: str | Path,
    *,
    quick: bool = False,
    protocol: str = "cpu",
    seed: int = 0,
    threads: int | None = None,
    surrogate: str | None = None,
    model: str | None = None,
    device: str | None = None,
) -> list[Stage]:
    """The stages of ``irad reproduce all``, in the order they run.

    Args:
        weights: the victim classifier (``-w`` of every evaluation).
        out: the pipeline's folder: ``pairs/``, ``runs/``, ``tables/``, ``diffusion/``,
            ``case/``, ``analysis/`` (and the runner's ``logs/`` and ``pipeline.json``).
        quick: tiny sizes (:data:`QUICK`), a smoke test; its tables use ``OUT/cache``.
        protocol: ``cpu`` (:data:`CPU`) or ``paper`` (:data:`PAPER`, for GPUs).
        seed: ``--seed`` of every command.
        threads, device: ``--threads`` / ``--device`` of every command that has them.
        surrogate: the classifier the pairs are crafted on and SampleNet trains through
            (default: the victim); ``model``: the victim's architecture (``-m``).
    """
    if protocol not in ("cpu", "paper"):
        raise ConfigError(f"`reproduce all` runs protocol cpu or paper, got {protocol!r}")
    sizes = QUICK if quick else PAPER if protocol == "paper" else CPU
    b = _Builder(Path(out), seed, threads, device)
    surrogate = surrogate or weights
    b.training(sizes, surrogate)
    victims = [("", weights)]  # Table 4: the same IRAD in front of each classifier at hand
    if surrogate != weights:
        victims.append(("-surrogate", surrogate))
    if "cifar10" not in (weights, surrogate):
        victims.append(("-bundled", "cifar10"))
    cache = Path(out) / "cache" if quick else None
    for table in sizes.tables:
        for suffix, victim in victims if table == "table4" else victims[:1]:
            arch = model if victim == weights else None
            b.table(table, table + suffix, victim, arch, sizes, cache)
    b.stl_adaptive(weights, model, 4 if quick else 50)
    b.diffusion_measures(weights, quick, protocol)
    b.analysis(weights, model, sizes.analysis_n)
    return b.stages


class _Builder:
    """Collects the stages; knows each command's flags (``irad <command> --help``)."""

    def __init__(self, root: Path, seed: int, threads: int | None, device: str | None) -> None:
        self.root, self.seed, self.threads, self.device = root, seed, threads, device
        self.stages: list[Stage] = []
        self.runs = root / "runs"
        self.pairs, self.eval_pairs = root / "pairs" / "train", root / "pairs" / "test"
        self.irad = self.runs / "irad" / "model"
        self.diffusion = self.runs / "diffusion-ema" / "model"
        self.weights = {
            "irad": ("--irad-weights", str(self.irad)),
            "stl": ("--stl-weights", str(self.runs / "stl")),
            "nrp": ("--nrp-weights", str(self.runs / "nrp")),
            "runs": ("--runs", str(self.runs)),
            "diffusion-export": ("--diffusion-weights", str(self.diffusion)),
        }

    def add(
        self,
        name: str,
        argv: tuple[str, ...],
        output: Path,
        *,
        run_dir: Path | None = None,
        report: Path | None = None,
        needs: tuple[str, ...] = (),
        figures: tuple[Figure, ...] = (),
        device: bool = True,
    ) -> None:
        """Append a stage: ``--seed`` / ``--threads`` for every command but export-diffusion,
        ``--device`` where the command has it (``device``)."""
        if argv[0] != "export-diffusion":
            argv += ("--seed", str(self.seed))
            argv += ("--threads", str(self.threads)) if self.threads is not None else ()
        argv += ("--device", self.device) if device and self.device is not None else ()
        folder = None if run_dir is None else str(run_dir)
        section, source = (None, None) if report is None else (name, str(report))
        stage = Stage(name, argv, str(output), folder, section, source, needs, figures)
        self.stages.append(stage)

    def train(self, name: str, argv: tuple[str, ...], run: Path, needs: tuple[str, ...]) -> None:
        """A training command: done when ``run/model.safetensors`` exists; resumable."""
        argv += ("--out", str(run))
        self.add(name, argv, run / "model.safetensors", run_dir=run, needs=needs)

    def training(self, sizes: Sizes, surrogate: str) -> None:
        """Pairs, stage 1 (+ Table 7's runs), stage 2 (+ Table 15's), diffusion, STL, NRP."""
        for name, folder, size in (
            ("pairs", self.pairs, sizes.pairs),
            ("eval-pairs", self.eval_pairs, sizes.eval_pairs),
        ):
            argv = ("prepare-pairs", "-w", surrogate, "--out", str(folder), *size)
            self.add(name, argv, folder / "manifest.json")
        pairs = ("--pairs", str(self.pairs), "--eval-pairs", str(self.eval_pairs))
        both = ("pairs", "eval-pairs")
        inr = self.runs / "inr"
        self.train("inr", ("train-inr", *pairs, *sizes.inr), inr, both)
        for task in TABLE7_TASKS:
            argv = ("train-inr", *pairs, "--task", task, *sizes.task_runs)
            self.train(f"t7-{task}", argv, self.runs / f"t7-{task}", both)
        stage2 = ("train-samplenet", "--representation", str(inr), *pairs, "-w", surrogate,
                  *sizes.samplenet)  # fmt: skip
        self.train("irad", stage2, self.irad.parent, (*both, "inr"))
        bilinear = (*stage2, "--render", "bilinear")
        self.train("t15-bilinear", bilinear, self.runs / "t15-bilinear", (*both, "inr"))
        diffusion = self.runs / "diffusion"
        self.train("diffusion", ("train-diffusion", *sizes.diffusion), diffusion, ())
        export = ("export-diffusion", "--run", str(diffusion), "--out", str(self.diffusion))
        self.add("diffusion-export", export, self.diffusion.with_suffix(".safetensors"),
                 needs=("diffusion",), device=False)  # fmt: skip
        self.train("stl", ("train-stl", *sizes.stl), self.runs / "stl", ())
        self.train("nrp", ("train-nrp", "-w", surrogate, *sizes.nrp), self.runs / "nrp", ())

    def table(
        self,
        table: str,
        name: str,
        victim: str,
        model: str | None,
        sizes: Sizes,
        cache: Path | None,
    ) -> None:
        """``irad reproduce TABLE`` on the pipeline's weights; its comparison.md: a section."""
        folder = self.root / "tables" / name
        options = dict(sizes.table_options)
        argv = ("reproduce", table, "-w", victim, *(("-m", model) if model else ()))
        argv += ("--out", str(folder))
        for key in _WEIGHTS_OF_TABLE[table]:
            argv += self.weights[key]
        argv += options.get("*", ()) + options.get(table, ())
        argv += ("--cache-dir", str(cache)) if cache is not None else ()
        needs = tuple(k for k in _WEIGHTS_OF_TABLE[table] if k != "runs")
        needs += _RUNS_OF_TABLE.get(table, ())
        figures: tuple[Figure, ...] = ()
        if table == "table10":  # Fig. 4
            caption = "Fig. 4 in our protocol: RA per attack, ours beside the paper's"
            figures = (Figure(str(folder / "fig4.png"), "fig4.png", caption),)
        report = folder / "comparison.md"
        self.add(name, argv, report, report=report, needs=needs, figures=figures)

    def stl_adaptive(self, weights: str, model: str | None, n: int) -> None:
        """STL under the adaptive threat, PGD-10 on the first ``n`` images: its 40 FISTA
        iterations make adaptive AutoAttack (Table 5's attack) take hours per 100 images."""
        folder = self.root / "tables" / "stl-adaptive"
        argv = ("evaluate", "-w", weights, *(("-m", model) if model else ()))
        argv += ("--defense", f"stl:checkpoint={self.runs / 'stl'}", "--attack", "pgd:steps=10")
        argv += ("--threat", "adaptive", "--n", str(n), "--out", str(folder))
        self.add("stl-adaptive", argv, folder / "table.md", report=folder / "table.md",
                 needs=("stl",))  # fmt: skip

    def diffusion_measures(self, weights: str, quick: bool, protocol: str) -> None:
        """``irad diffusion-quality`` and ``irad convergence`` on the pipeline's purifier."""
        for name, t, steps, n in _quality_runs(quick, protocol):
            record = self.root / "diffusion" / name / "quality.json"
            argv = ("diffusion-quality", "--model", str(self.diffusion), "--t", str(t))
            argv += ("--reverse-steps", str(steps)) if steps else ()
            argv += ("--n", str(n), "--classifier", weights, "--json", str(record))
            argv += ("--batch-size", str(n)) if quick else ()
            self.add(name, argv, record, report=record, needs=("diffusion-export",))
        for name, template, size, figure in _convergence_runs(quick, protocol):
            folder = self.root / "diffusion" / name
            needs = ("diffusion-export", "irad") if "{irad}" in template else ("diffusion-export",)
            spec = template.format(diffusion=self.diffusion, irad=self.irad)
            argv = ("convergence", "--defense", spec, "--classifier", weights, *size)
            argv += ("--out", str(folder))
            figures = () if figure is None else (Figure(str(folder / "convergence.png"), *figure),)
            self.add(name, argv, folder / "convergence.json", report=folder / "convergence.md",
                     needs=needs, figures=figures)  # fmt: skip

    def analysis(self, weights: str, model: str | None, n: int) -> None:
        """Fig. 6 (``irad visualize``), then Tables 18-19 and Fig. 5 (``irad analysis``)."""
        w = ("-w", weights, *(("-m", model) if model else ()))
        irad = f"irad:checkpoint={self.irad}"
        case = self.root / "case"
        caption = (
            "Fig. 6 in our protocol: test image 0, defense irad, attack pgd:steps=10 (oblivious)"
        )
        figure = Figure(str(case / "case-0.png"), "fig6-case.png", caption)
        argv = ("visualize", *w, "--index", "0", "--defense", irad, "--out", str(case))
        self.add("case", argv, case / "case-0.txt", needs=("irad",), figures=(figure,))
        folder = self.root / "analysis"
        argv = ("analysis", *w, "--class", "0", "--n", str(n))
        argv += ("--defense", f"recons:checkpoint={self.irad}", "--defense", irad)
        figures = (
            Figure(str(folder / "fig5-pca.png"), "fig5-pca.png",
                   "Fig. 5 in our protocol: PCA of the penultimate features of the four sets"),
            Figure(str(folder / "path-by-block.png"), "fig-path-by-block.png",
                   "Decision-path similarity with the clean images, block by block"),
        )  # fmt: skip
        result = folder / "result.json"
        self.add("analysis", (*argv, "--out", str(folder)), result, report=result,
                 needs=("irad", "case"), figures=figures)  # fmt: skip


def _quality_runs(quick: bool, protocol: str) -> list[tuple[str, int, int | None, int]]:
    """``irad diffusion-quality`` runs: (name, t, reverse steps or None for t, images)."""
    if quick:
        return [("quality-t20", 20, 2, 4)]
    if protocol == "paper":  # DiffPure's full reverse chains on every test image
        return [("quality-t20", 20, None, 10000), ("quality-t100", 100, None, 10000)]
    return [("quality-t20", 20, 4, 1000), ("quality-t100", 100, 20, 1000)]


_EOT_PGD10 = ("--steps", "10", "--eot", "4", "--fixed-eot", "4", "--fixed-steps", "10")
_STUDY = ("--n", "16", "--fixed-eot", "4", "--fixed-steps", "10")
_DIFFPURE = "diffpure:t={t},model={{diffusion}}"
_IRAD_DIFFPURE = "irad+diffpure:t={t},diffusion={{diffusion}},irad={{irad}}"


def _convergence_runs(
    quick: bool, protocol: str
) -> list[tuple[str, str, tuple[str, ...], tuple[str, str] | None]]:
    """``irad convergence`` runs as in ``docs/results.md``'s diffusion section: (name, defense
    spec with ``{diffusion}`` / ``{irad}``, size options, (figure name, caption) or None)."""
    if quick:
        spec = _IRAD_DIFFPURE.format(t=20) + ",reverse_steps=2"
        size = ("--n", "4", "--steps", "1", "--eot", "1", "--fixed-eot", "1", "--fixed-steps", "1")
        return [("t5-irad-diffpure20", spec, (*size, "--draws", "1", "--batch-size", "4"), None)]

    def chain(template: str, t: int, steps: int) -> str:  # the paper: the full reverse chain
        spec = template.format(t=t)
        return spec if protocol == "paper" else f"{spec},reverse_steps={steps}"

    rows = ("--n", "100" if protocol == "paper" else "64", *_EOT_PGD10)
    t16 = ("--n", "100" if protocol == "paper" else "32", *_EOT_PGD10)
    return [
        ("t5-diffpure20", chain(_DIFFPURE, 20, 4), rows, None),
        ("t5-irad-diffpure20", chain(_IRAD_DIFFPURE, 20, 4), rows, None),
        ("convergence-irad-diffpure20", chain(_IRAD_DIFFPURE, 20, 4),
         (*_STUDY, "--steps", "5,10,20", "--eot", "1,4,8"),
         ("convergence-irad-diffpure-t20.png",
          "RA against PGD steps and EOT samples, IRAD+DiffPure at t = 20")),
        ("convergence-diffpure100", chain(_DIFFPURE, 100, 20),
         (*_STUDY, "--steps", "5,10", "--eot", "1,4", "--batch-size", "16"),
         ("convergence-diffpure-t100.png",
          "RA against PGD steps and EOT samples, DiffPure at t = 100")),
        ("t16-diffpure40", chain(_DIFFPURE, 40, 8), t16, None),
        ("t16-irad-diffpure40", chain(_IRAD_DIFFPURE, 40, 8), t16, None),
    ]  # fmt: skip
