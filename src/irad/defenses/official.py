"""Import the authors' released IRAD checkpoints (tsingqguo/irad, built on yinboc/liif).

The official release ships two PyTorch pickles:

* ``Reconstruction.pt``: LIIF's save format ``{'model': {'name': 'liif', 'args': {...},
  'sd': state_dict}}`` (other top-level entries such as ``'optimizer'`` and ``'epoch'`` are
  ignored). ``args`` holds ``encoder_spec`` (``edsr-baseline`` with ``no_upsampling: True``),
  ``imnet_spec`` (``mlp`` with ``out_dim: 3`` and ``hidden_list``) and optionally LIIF's
  ``local_ensemble`` / ``feat_unfold`` / ``cell_decode`` flags (all must be on: it is the only
  LIIF variant the paper uses and the only one irad implements).
* ``SampleNet.pt``: the state_dict of their ``SampleNetMLP`` -- ``encoder.*`` (a copy of the
  reconstruction's EDSR) and ``imnet.layers.*`` (an MLP with a 2-D output) -- either bare or
  wrapped as ``{'model': state_dict}`` (the form their evaluation code reads).

Both are read with :func:`irad.checkpoint.read_torch_file` (``torch.load(...,
weights_only=True)`` on torch >= 2.6); a file that needs arbitrary unpickling (a whole pickled
module, custom classes) is refused with a :class:`~irad.errors.CheckpointError` that says so --
irad never falls back to unsafe loading.
Every size is inferred from the tensors and cross-checked against ``args``; a missing or
unexpected parameter, a wrong shape or an unsupported LIIF option is named in the error.

The result is an ordinary :class:`~irad.defenses.irad.IRAD` in the official *compatibility
mode* (:meth:`~irad.models.samplenet.SampleNetConfig.official`), which reproduces their
conventions exactly: LIIF's normalised (row, col) pixel-centre coordinates in [-1, 1]
(``make_coord``), SampleNet's output added to them as is (normalised units), the
representation's encoder fed ``(x - 0.5) / 0.5`` and SampleNet's own encoder copy fed ``x`` in
[0, 1]. It saves and loads like any irad checkpoint (safetensors + JSON), with the source files'
sha256 recorded under ``metadata.converted_from``.

Example:
    >>> from irad.defenses.official import convert_official
    >>> rep = convert_official("Reconstruction.pt", "SampleNet.pt", "out")  # doctest: +SKIP
    >>> irad = IRAD.from_pretrained("out")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from irad.checkpoint import load_into, read_torch_file
from irad.defenses.irad import IRAD
from irad.defenses.reconstruction import ImplicitReconstruction
from irad.errors import CheckpointError
from irad.models.edsr import EDSRConfig
from irad.models.liif import DEFAULT_CHUNK_SIZE, ImplicitConfig, ImplicitRepresentation
from irad.models.samplenet import SampleNet, SampleNetConfig
from irad.utils.io import sha256_file

#: Preset name recorded in converted checkpoints.
OFFICIAL_PRESET = "official"

# LIIF's two EDSR factories (models/edsr.py of yinboc/liif) build the same network; only their
# defaults differ, and res_scale is the one default that the weights cannot tell.
_EDSR_RES_SCALE: dict[str, float] = {"edsr-baseline": 1.0, "edsr": 0.1}
_EDSR_ARGS = {"n_resblocks", "n_feats", "res_scale", "scale", "no_upsampling", "rgb_range"}
_LIIF_ARGS = {"encoder_spec", "imnet_spec", "local_ensemble", "feat_unfold", "cell_decode"}
_LIIF_FLAGS = ("local_ensemble", "feat_unfold", "cell_decode")
_MLP_ARGS = {"out_dim", "hidden_list", "in_dim"}
# LIIF's EDSR keeps two fixed 1x1 "MeanShift" convolutions that its forward never calls.
_UNUSED_ENCODER_KEYS = (
    "sub_mean.weight",
    "sub_mean.bias",
    "add_mean.weight",
    "add_mean.bias",
)


# How someone who trusts a file that holds more than tensors re-saves it, with the official code.
_RESAVE = {
    "Reconstruction.pt": (
        "torch.save({'model': {'name': 'liif', 'args': args, 'sd': model.state_dict()}}, "
        "'Reconstruction.pt')"
    ),
    "SampleNet.pt": "torch.save(samplenet.state_dict(), 'SampleNet.pt')",
}


def _read(path: str | os.PathLike[str], what: str) -> Any:
    return read_torch_file(path, what, resave=_RESAVE[what])


# --------------------------------------------------------------------------------------------
# state-dict layout checks
# --------------------------------------------------------------------------------------------


def _as_state_dict(obj: Any, source: str, what: str) -> dict[str, Tensor]:
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{source}: {what} must be a non-empty dict of tensors")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(
            f"{source}: {what} must map parameter names to tensors; these entries do not: "
            f"{_head(bad)}"
        )
    out: dict[str, Tensor] = {}
    for k, v in obj.items():
        if not v.is_floating_point():
            raise CheckpointError(f"{source}: parameter {k} has dtype {v.dtype}, expected float")
        out[k] = v.detach().to(torch.float32)
    # DataParallel saves every name with a "module." prefix; it is not part of the layout.
    if all(k.startswith("module.") for k in out):
        out = {k[len("module.") :]: v for k, v in out.items()}
    return out


def _head(items: list[str], n: int = 6) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def _match(module: nn.Module, tensors: dict[str, Tensor], source: str, what: str) -> None:
    """Load ``tensors`` into ``module``, naming every missing/unexpected key and wrong shape."""
    load_into(module, tensors, f"{source} ({what})", hint="it does not have the official layout")


def _split(tensors: dict[str, Tensor], source: str, what: str) -> dict[str, dict[str, Tensor]]:
    """Group names under ``encoder.`` / ``imnet.``; anything else is an unexpected name."""
    parts: dict[str, dict[str, Tensor]] = {"encoder": {}, "imnet": {}}
    stray = []
    for k, v in tensors.items():
        head, _, rest = k.partition(".")
        if head in parts and rest:
            parts[head][rest] = v
        else:
            stray.append(k)
    if stray:
        raise CheckpointError(
            f"{source}: {what} has unexpected parameter names {_head(sorted(stray))} (expected "
            "only encoder.* and imnet.layers.*)"
        )
    for name, sub in parts.items():
        if not sub:
            raise CheckpointError(f"{source}: {what} has no {name}.* parameters")
    return parts


def _infer_edsr(enc: dict[str, Tensor], source: str, res_scale: float) -> EDSRConfig:
    """EDSR sizes from its tensors: blocks = ``body.<i>.body.0.weight`` count, C from the head."""
    head = enc.get("head.0.weight")
    if head is None or head.ndim != 4:
        raise CheckpointError(f"{source}: encoder.head.0.weight is missing or not a conv weight")
    blocks = {
        int(m.group(1))
        for k in enc
        if (m := re.fullmatch(r"body\.(\d+)\.body\.0\.weight", k)) is not None
    }
    n = len(blocks)
    if blocks != set(range(n)):
        raise CheckpointError(
            f"{source}: the encoder's residual blocks are not numbered 0..{n - 1} "
            f"(found {sorted(blocks)})"
        )
    return EDSRConfig(
        n_resblocks=n,
        n_feats=int(head.shape[0]),
        res_scale=float(res_scale),
        in_channels=int(head.shape[1]),
    )


def _infer_mlp(imnet: dict[str, Tensor], source: str) -> tuple[int, int, tuple[int, ...]]:
    """``(in_dim, out_dim, hidden)`` of LIIF's MLP from ``layers.<2k>.weight``."""
    idx = sorted(int(m.group(1)) for k in imnet if (m := re.fullmatch(r"layers\.(\d+)\.weight", k)))
    if not idx or idx != list(range(0, 2 * len(idx), 2)):
        raise CheckpointError(
            f"{source}: imnet linear layers must be numbered layers.0, layers.2, ... "
            f"(Linear/ReLU alternating), found layers {idx}"
        )
    weights = [imnet[f"layers.{i}.weight"] for i in idx]
    if any(w.ndim != 2 for w in weights):
        raise CheckpointError(f"{source}: imnet layer weights must be 2-D (Linear layers)")
    hidden = tuple(int(w.shape[0]) for w in weights[:-1])
    return int(weights[0].shape[1]), int(weights[-1].shape[0]), hidden


def _strip_unused(enc: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    dropped = [k for k in _UNUSED_ENCODER_KEYS if k in enc]
    return {k: v for k, v in enc.items() if k not in _UNUSED_ENCODER_KEYS}, dropped


# --------------------------------------------------------------------------------------------
# the two files
# --------------------------------------------------------------------------------------------


@dataclass
class OfficialReconstruction:
    """A parsed ``Reconstruction.pt``: the representation, its config and what was dropped."""

    representation: ImplicitRepresentation
    args: dict[str, Any]
    encoder_name: str
    dropped: list[str] = field(default_factory=list)

    @property
    def config(self) -> ImplicitConfig:
        return self.representation.config


def _spec(obj: Any, source: str, what: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(obj, Mapping) or "name" not in obj:
        raise CheckpointError(f"{source}: {what} must be a dict with 'name' and 'args'")
    args = obj.get("args") or {}
    if not isinstance(args, Mapping):
        raise CheckpointError(f"{source}: {what}['args'] must be a dict, got {type(args)}")
    return str(obj["name"]), dict(args)


def _check_keys(given: Mapping[str, Any], allowed: set[str], source: str, what: str) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise CheckpointError(
            f"{source}: unsupported {what} {unknown} (irad knows {sorted(allowed)}); this "
            "checkpoint is not the LIIF variant the official IRAD release uses"
        )


def _check_size(args: Mapping[str, Any], key: str, inferred: Any, source: str) -> None:
    if key in args and args[key] is not None and args[key] != inferred:
        raise CheckpointError(
            f"{source}: args say {key}={args[key]!r} but the weights have {inferred!r}"
        )


def parse_reconstruction(obj: Any, source: str = "Reconstruction.pt") -> OfficialReconstruction:
    """Turn the loaded ``Reconstruction.pt`` object into an :class:`ImplicitRepresentation`.

    Raises:
        CheckpointError: anything that is not LIIF + EDSR(no upsampling) + MLP with all three
            LIIF options on, or whose tensors do not match that layout.
    """
    if not isinstance(obj, Mapping) or "model" not in obj:
        hint = ""
        if isinstance(obj, Mapping) and any(str(k).startswith("imnet.") for k in obj):
            hint = " (this looks like a bare state_dict, e.g. SampleNet.pt)"
        raise CheckpointError(
            f"{source}: expected LIIF's save format {{'model': {{'name', 'args', 'sd'}}}}{hint}"
        )
    model = obj["model"]
    if not isinstance(model, Mapping) or not {"name", "args", "sd"} <= set(model):
        keys = sorted(model) if isinstance(model, Mapping) else type(model).__name__
        raise CheckpointError(
            f"{source}: obj['model'] must be a dict with 'name', 'args' and 'sd', got {keys}"
        )
    name, args = _spec(model, source, "obj['model']")
    if name != "liif":
        raise CheckpointError(
            f"{source}: model {name!r} is not supported; only LIIF ('liif') checkpoints can be "
            "imported"
        )
    _check_keys(args, _LIIF_ARGS, source, "LIIF arguments")
    off = [f for f in _LIIF_FLAGS if args.get(f, True) is not True]
    if off:
        raise CheckpointError(
            f"{source}: LIIF option(s) {off} are off; irad implements LIIF with local ensemble, "
            "feature unfolding and cell decoding all on (the official IRAD setting)"
        )
    enc_name, enc_args = _spec(args.get("encoder_spec"), source, "args['encoder_spec']")
    if enc_name not in _EDSR_RES_SCALE:
        raise CheckpointError(
            f"{source}: encoder {enc_name!r} is not supported; irad imports "
            f"{sorted(_EDSR_RES_SCALE)} encoders"
        )
    _check_keys(enc_args, _EDSR_ARGS, source, f"{enc_name} arguments")
    if enc_args.get("no_upsampling") is not True:
        raise CheckpointError(
            f"{source}: the encoder must be built with no_upsampling=True (LIIF's feature "
            "encoder); this one has an upsampling tail"
        )
    if args.get("imnet_spec") is None:
        raise CheckpointError(f"{source}: LIIF without an imnet (MLP decoder) is not supported")
    mlp_name, mlp_args = _spec(args["imnet_spec"], source, "args['imnet_spec']")
    if mlp_name != "mlp":
        raise CheckpointError(f"{source}: decoder {mlp_name!r} is not supported, expected 'mlp'")
    _check_keys(mlp_args, _MLP_ARGS, source, "MLP arguments")

    sd = _as_state_dict(model["sd"], source, "obj['model']['sd']")
    parts = _split(sd, source, "the LIIF state_dict")
    enc, dropped = _strip_unused(parts["encoder"])
    res_scale = enc_args.get("res_scale", _EDSR_RES_SCALE[enc_name])
    enc_cfg = _infer_edsr(enc, source, res_scale)
    if enc_cfg.in_channels != 3:
        raise CheckpointError(f"{source}: the encoder reads {enc_cfg.in_channels} channels, not 3")
    _check_size(enc_args, "n_resblocks", enc_cfg.n_resblocks, source)
    _check_size(enc_args, "n_feats", enc_cfg.n_feats, source)
    in_dim, out_dim, hidden = _infer_mlp(parts["imnet"], source)
    if out_dim != 3:
        raise CheckpointError(f"{source}: the decoder MLP outputs {out_dim} values, expected 3")
    _check_size(mlp_args, "out_dim", out_dim, source)
    _check_size(mlp_args, "in_dim", in_dim, source)
    if "hidden_list" in mlp_args and tuple(mlp_args["hidden_list"]) != hidden:
        raise CheckpointError(
            f"{source}: args say hidden_list={list(mlp_args['hidden_list'])} but the weights "
            f"have {list(hidden)}"
        )
    expected_in = 9 * enc_cfg.n_feats + 4
    if in_dim != expected_in:
        raise CheckpointError(
            f"{source}: the decoder MLP reads {in_dim} values, expected 9 x {enc_cfg.n_feats} "
            f"(unfolded features) + 2 (coordinate) + 2 (cell) = {expected_in}"
        )
    rep = ImplicitRepresentation(ImplicitConfig(enc_cfg, hidden))
    tensors = {f"encoder.{k}": v for k, v in enc.items()}
    tensors.update({f"imnet.{k}": v for k, v in parts["imnet"].items()})
    _match(rep, tensors, source, "the LIIF state_dict")
    return OfficialReconstruction(rep, args, enc_name, [f"encoder.{k}" for k in dropped])


def parse_samplenet(
    obj: Any,
    representation: ImplicitRepresentation,
    source: str = "SampleNet.pt",
) -> SampleNet:
    """Turn the loaded ``SampleNet.pt`` object into a :class:`SampleNet` in official mode.

    ``representation`` is the imported reconstruction: the official SampleNet builds its encoder
    from the same LIIF spec, so its sizes (and ``res_scale``) must agree.
    """
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        inner = obj["model"]
        if isinstance(inner, Mapping) and {"name", "sd"} <= set(inner):
            raise CheckpointError(
                f"{source}: this is a LIIF model spec (a Reconstruction.pt?), not SampleNet's "
                "state_dict; pass it as the reconstruction"
            )
        obj = inner  # {'model': state_dict}, as the official evaluation code reads it
    sd = _as_state_dict(obj, source, "SampleNet's state_dict")
    parts = _split(sd, source, "SampleNet's state_dict")
    enc, _ = _strip_unused(parts["encoder"])
    rep_enc = representation.config.encoder
    enc_cfg = _infer_edsr(enc, source, rep_enc.res_scale)
    if (enc_cfg.n_resblocks, enc_cfg.n_feats, enc_cfg.in_channels) != (
        rep_enc.n_resblocks,
        rep_enc.n_feats,
        rep_enc.in_channels,
    ):
        raise CheckpointError(
            f"{source}: SampleNet's encoder has {enc_cfg.n_resblocks} blocks x "
            f"{enc_cfg.n_feats} channels but the reconstruction's has {rep_enc.n_resblocks} x "
            f"{rep_enc.n_feats}; the official SampleNet copies the reconstruction's encoder, so "
            "these two files do not belong together"
        )
    in_dim, out_dim, hidden = _infer_mlp(parts["imnet"], source)
    if out_dim != 2:
        raise CheckpointError(
            f"{source}: SampleNet's MLP outputs {out_dim} values, expected 2 (a shift)"
        )
    if in_dim != 9 * enc_cfg.n_feats + 4:
        raise CheckpointError(
            f"{source}: SampleNet's MLP reads {in_dim} values, expected "
            f"9 x {enc_cfg.n_feats} + 4 = {9 * enc_cfg.n_feats + 4}"
        )
    net = SampleNet(enc_cfg.n_feats, SampleNetConfig.official(hidden), encoder=enc_cfg)
    tensors = {f"encoder.{k}": v for k, v in enc.items()}
    tensors.update({f"imnet.{k}": v for k, v in parts["imnet"].items()})
    _match(net, tensors, source, "SampleNet's state_dict")
    return net


# --------------------------------------------------------------------------------------------
# public entry points
# --------------------------------------------------------------------------------------------


def _import(
    reconstruction: str | os.PathLike[str],
    samplenet: str | os.PathLike[str] | None,
    chunk_size: int | None,
) -> tuple[IRAD | ImplicitReconstruction, OfficialReconstruction]:
    parsed = parse_reconstruction(_read(reconstruction, "Reconstruction.pt"), str(reconstruction))
    chunk = chunk_size or DEFAULT_CHUNK_SIZE
    defense: IRAD | ImplicitReconstruction
    if samplenet is None:
        defense = ImplicitReconstruction(parsed.representation, preset=None, chunk_size=chunk)
    else:
        net = parse_samplenet(
            _read(samplenet, "SampleNet.pt"), parsed.representation, str(samplenet)
        )
        defense = IRAD(parsed.representation, net, preset=None, chunk_size=chunk)
    defense.preset = OFFICIAL_PRESET
    return defense.eval(), parsed


def load_official_reconstruction(
    reconstruction: str | os.PathLike[str], *, chunk_size: int | None = None
) -> ImplicitReconstruction:
    """The DISCO-style defense (no SampleNet) from an official/LIIF ``Reconstruction.pt``.

    Also reads yinboc/liif's own ``edsr-baseline-liif.pth`` checkpoints (same format).

    Shape:
        - The returned defense maps ``(B, 3, H, W)`` in [0, 1] to the same shape.
    """
    defense, _ = _import(reconstruction, None, chunk_size)
    assert isinstance(defense, ImplicitReconstruction)
    return defense


def load_official(
    reconstruction: str | os.PathLike[str],
    samplenet: str | os.PathLike[str],
    *,
    chunk_size: int | None = None,
) -> IRAD:
    """IRAD in the official compatibility mode from ``Reconstruction.pt`` + ``SampleNet.pt``.

    Shape:
        - The returned defense maps ``(B, 3, H, W)`` in [0, 1] to the same shape.

    Example:
        >>> irad = load_official("Reconstruction.pt", "SampleNet.pt")  # doctest: +SKIP
        >>> irad.samplenet.config == SampleNetConfig.official()  # doctest: +SKIP
        True
    """
    defense, _ = _import(reconstruction, samplenet, chunk_size)
    assert isinstance(defense, IRAD)
    return defense


@dataclass
class ConversionReport:
    """What :func:`convert_official` wrote and found."""

    path: Path
    kind: str
    config: dict[str, Any]
    provenance: dict[str, Any]

    def summary(self) -> str:
        """A few lines for the terminal: what was written and the sizes found."""
        rep = self.config["representation"]
        enc = rep["encoder"]
        lines = [
            f"wrote {self.kind} checkpoint {self.path}",
            f"  encoder EDSR {enc['n_resblocks']} blocks x {enc['n_feats']} ch "
            f"(res_scale {enc['res_scale']:g}), decoder MLP {rep['decoder_hidden']}",
        ]
        if "samplenet" in self.config:
            sn = self.config["samplenet"]
            same = self.provenance.get("samplenet_encoder_equals_reconstruction_encoder")
            lines.append(
                f"  SampleNet MLP {sn['hidden']}, own encoder fed x in [0, 1], shifts in "
                "normalised [-1, 1] units (official mode); its encoder copy is "
                f"{'identical to' if same else 'different from'} the reconstruction's"
            )
        if self.provenance.get("dropped"):
            lines.append(f"  dropped unused LIIF buffers: {', '.join(self.provenance['dropped'])}")
        return "\n".join(lines)


def convert_official(
    reconstruction: str | os.PathLike[str],
    samplenet: str | os.PathLike[str] | None,
    out: str | os.PathLike[str],
    *,
    chunk_size: int | None = None,
) -> ConversionReport:
    """Convert the official checkpoints into an irad checkpoint folder ``out``.

    With ``samplenet`` the result is an IRAD checkpoint (``IRAD.from_pretrained(out)``);
    without, the representation alone (``ImplicitReconstruction.from_pretrained(out)``, the
    DISCO-style defense). Writes ``out/model.safetensors`` + ``out/model.json`` (what
    ``save_pretrained(out)`` writes), whose ``metadata`` records both source files' path and
    sha256, LIIF's ``args`` and the conventions.
    """
    defense, parsed = _import(reconstruction, samplenet, chunk_size)
    sources: dict[str, Any] = {
        "reconstruction": {"path": str(reconstruction), "sha256": _sha256(reconstruction)}
    }
    provenance: dict[str, Any] = {"converted_from": sources}
    provenance["liif_args"] = _jsonable(parsed.args)
    provenance["dropped"] = parsed.dropped
    provenance["conventions"] = (
        "official (tsingqguo/irad): make_coord pixel centres in [-1, 1], (row, col); "
        "SampleNet output added in those units; representation encoder fed (x - 0.5) / 0.5; "
        "SampleNet encoder fed x in [0, 1]"
    )
    kind = "DISCO-style reconstruction (no SampleNet)"
    if isinstance(defense, IRAD):
        kind = "IRAD"
        assert samplenet is not None
        sources["samplenet"] = {"path": str(samplenet), "sha256": _sha256(samplenet)}
        rep_enc = defense.representation.encoder.state_dict()
        sn_enc = defense.samplenet.encoder.state_dict()
        provenance["samplenet_encoder_equals_reconstruction_encoder"] = all(
            torch.equal(rep_enc[k], sn_enc[k]) for k in rep_enc
        )
    path = defense.save_pretrained(out, metadata=provenance)
    defense.source = str(path.with_suffix(""))
    return ConversionReport(path, kind, defense.checkpoint_config(), provenance)


def _sha256(path: str | os.PathLike[str]) -> str:
    return sha256_file(Path(path).expanduser())


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return repr(obj)


__all__ = [
    "OFFICIAL_PRESET",
    "ConversionReport",
    "OfficialReconstruction",
    "convert_official",
    "load_official",
    "load_official_reconstruction",
    "parse_reconstruction",
    "parse_samplenet",
]
