"""Resumable stages of work: what a folder was made with, and whether it is finished.

The precompute cache, the evaluation runner and the demo each fill a folder over minutes or hours, and each must
tell, when run again, whether that folder is finished with the same settings (reuse it), started with the same
settings (continue it: each keeps its finished shards, clips or checkpoints) or made with other settings (refuse
it, or start it afresh). One marker file records that: the settings, their fingerprint, `done`, and the stage's
result once done. It is written atomically, so a kill leaves the previous marker.

Settings are any JSON-able mapping; paths and other objects are compared by their `str`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from animatex_pp.io.files import atomic_output

STAGE_FORMAT = "animatex_pp.stage/1"
Status = Literal["fresh", "resumed", "done"]


def canonical(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings as JSON would give them back (tuples as lists, paths as strings), so saved and current compare."""
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def fingerprint(settings: Mapping[str, Any]) -> str:
    """A short digest of the settings, stable across processes and key orders."""
    return hashlib.sha256(json.dumps(canonical(settings), sort_keys=True).encode()).hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    """The hex SHA-256 of a file's bytes: how settings name an input file (metadata, weights) by content."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def differences(
    saved: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "", saved_as: str = "before"
) -> list[str]:
    """Dotted keys whose values differ between two nested settings, each with both values ("KEY: OLD `saved_as`,
    NEW now")."""
    found = []
    for key in sorted(set(saved) | set(current)):
        name = f"{prefix}{key}"
        old, new = saved.get(key), current.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            found += differences(old, new, f"{name}.", saved_as)
        elif old != new:
            found.append(f"{name}: {old!r} {saved_as}, {new!r} now")
    return found


@dataclasses.dataclass(frozen=True)
class Stage:
    """A stage as `open_stage` found it: `fresh` (nothing of it yet), `resumed` (started with these settings, not
    finished: continue it) or `done` (finished with these settings; `result` is what it returned)."""

    marker: Path
    settings: dict[str, Any]
    status: Status
    result: dict[str, Any] | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.settings)

    def finish(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """Record the stage as done with `result`, and return the result."""
        result = canonical(result)
        _write(self.marker, {"format": STAGE_FORMAT, "fingerprint": self.fingerprint, "settings": self.settings,
                             "done": True, "result": result})  # fmt: skip
        return result


def read_marker(marker: Path) -> dict[str, Any] | None:
    """A stage marker's content, or None when there is none; a damaged one is a ValueError that says what to do."""
    if not marker.is_file():
        return None
    try:
        saved = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{marker} could not be read ({error}): delete it to redo that stage") from None
    if saved.get("format") != STAGE_FORMAT:
        raise ValueError(f"{marker} is not a stage record of this version of animatex_pp: delete it to redo the stage")
    return saved


def open_stage(
    marker: str | Path,
    settings: Mapping[str, Any],
    *,
    on_change: Literal["restart", "refuse"],
    folder: str | Path | None = None,
    what: str = "this folder",
) -> Stage:
    """Find out how far the stage recorded in `marker` got with these settings, and mark it started.

    A marker of other settings is refused (`on_change="refuse"`: a ValueError naming the settings that differ,
    for a folder the user named) or the stage starts afresh (`"restart"`: `folder`, the stage's output, is deleted
    first so that nothing made with other settings is mixed in).
    """
    marker = Path(marker)
    settings = canonical(settings)
    saved = read_marker(marker)
    if saved is not None and saved["fingerprint"] == fingerprint(settings):
        if saved.get("done"):
            return Stage(marker, settings, "done", saved.get("result"))
        return Stage(marker, settings, "resumed")
    if saved is not None and on_change == "refuse":
        changed = "; ".join(differences(saved.get("settings", {}), settings)) or "the format"
        raise ValueError(f"{what} holds work made with other settings ({changed}): use another folder, or delete "
                         f"{marker} and what it describes to start again")  # fmt: skip
    if folder is not None and Path(folder).exists():
        shutil.rmtree(folder)
    _write(marker, {"format": STAGE_FORMAT, "fingerprint": fingerprint(settings), "settings": settings,
                    "done": False})  # fmt: skip
    return Stage(marker, settings, "fresh")


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
