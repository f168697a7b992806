"""A run folder holds one evaluation: what it is (``run.json``), and a refusal to mix another in.

``evaluate`` into a folder that holds another configuration would replace its results; a
rerun of the same configuration resumes it. :func:`claim_run_folder` tells the two apart by
comparing the run's identity (its settings, attacks, defenses, classifier and data) with the
one recorded there, and refuses a different one unless ``overwrite=True`` (``--overwrite``),
naming the settings that differ. Hold :class:`irad.utils.lock.RunLock` on the folder around it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from irad.errors import ConfigError
from irad.utils.io import atomic_write_json

RUN_RECORD = "run.json"
RUN_SCHEMA = "irad.evaluation-run/1"
#: Settings that change no figure of the result but its timing: a run may resume with them changed.
RESUMABLE_CHANGES = frozenset({"threads"})


class RunFolderConflict(ConfigError):
    """The run folder holds an evaluation with other settings."""


def run_identity(
    config: Mapping[str, Any],
    attacks: Sequence[str],
    defenses: Mapping[str, str],
    classifier: str,
    data: Mapping[str, Any],
) -> dict[str, Any]:
    """What makes an evaluation this one, as flat ``{setting: value}``.

    Args:
        config: ``EvaluationConfig.to_dict()``.
        attacks: the attack labels.
        defenses: ``{label: fingerprint}``.
        classifier: the classifier's fingerprint.
        data: ``{"fingerprint": ..., "n": ...}`` of the evaluation images.
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update({f"{key}.{k}": _plain(v) for k, v in value.items()})
        else:
            flat[key] = _plain(value)
    flat["attacks"] = list(attacks)
    flat["defenses"] = sorted(defenses)
    flat.update({f"defense[{label}]": fp for label, fp in defenses.items()})
    flat["classifier"] = classifier
    flat["data"] = data.get("fingerprint")
    flat["data.n"] = data.get("n")
    return flat


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def identity_of_result(record: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`run_identity` of a saved ``result.json`` (a folder written before ``run.json``)."""
    defenses = record.get("defenses", {})
    return run_identity(
        record.get("config", {}),
        [a.get("label", "") for a in record.get("attacks", [])],
        {label: d.get("fingerprint", "") for label, d in defenses.items()},
        record.get("classifier", {}).get("fingerprint", ""),
        record.get("dataset", {}),
    )


def recorded_identity(folder: Path) -> dict[str, Any] | None:
    """The identity of the evaluation held in ``folder`` (None: none there)."""
    for name, read in ((RUN_RECORD, _from_run), ("result.json", identity_of_result)):
        path = folder / name
        if not path.is_file():
            continue
        try:
            return read(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError, AttributeError) as err:
            raise RunFolderConflict(
                f"{path} cannot be read ({err}): the run folder {folder} is damaged or holds "
                "something else; choose another folder or pass overwrite=True (--overwrite)"
            ) from err
    return None


def _from_run(record: Mapping[str, Any]) -> dict[str, Any]:
    if record.get("schema") != RUN_SCHEMA or not isinstance(record.get("identity"), dict):
        raise ValueError(f"not an irad run record (schema {record.get('schema')!r})")
    return dict(record["identity"])


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``setting: old -> new`` for each setting that differs (resumable ones left out)."""
    out = []
    for key in sorted(set(old) | set(new), key=lambda k: (k.startswith("defense["), k)):
        if key in RESUMABLE_CHANGES or old.get(key) == new.get(key):
            continue
        if key.startswith("defense[") and key in old and key in new:
            out.append(f"{key}: its weights or settings changed")
        else:
            out.append(f"{key}: {old.get(key, '(none)')!r} -> {new.get(key, '(none)')!r}")
    return out


def claim_run_folder(folder: str | Path, identity: Mapping[str, Any], *, overwrite: bool) -> None:
    """Record ``identity`` in ``folder``, refusing another evaluation's folder.

    Raises:
        RunFolderConflict: ``folder`` holds an evaluation with other settings and not
            ``overwrite``; the message names every differing setting.
    """
    folder = Path(folder)
    old = recorded_identity(folder) if not overwrite else None
    if old is not None:
        changed = differences(old, identity)
        if changed:
            raise RunFolderConflict(
                f"the run folder {folder} holds an evaluation with other settings "
                f"({'; '.join(changed)}); evaluating into it would replace its results. Rerun "
                "with the original settings to resume it, choose another folder (--out), or "
                "pass overwrite=True (--overwrite) to replace it"
            )
    atomic_write_json(folder / RUN_RECORD, {"schema": RUN_SCHEMA, "identity": dict(identity)})
