"""A Hydra callback that writes one summary table for a whole sweep: overrides -> final metrics.

At the end of a multirun it reads each job's overrides (`.hydra/overrides.yaml`) and `metrics.json` from the sweep
folder and writes `summary.md` and `summary.csv` beside them. A job that failed has no metrics: its row says so; a
metric that a finished run does not have (the ti2v loss of a run without ti2v batches) is `-`.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from animatex_pp.io.files import atomic_output

COLUMNS = ("final_loss", "loss_animation", "loss_ti2v", "steps", "samples_per_s", "wall_time_s")


def summarize(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job folder of a sweep: its overrides and its metrics (empty when it wrote none)."""
    rows = []
    for overrides_file in sorted(sweep_dir.glob("*/.hydra/overrides.yaml")):
        job = overrides_file.parent.parent
        overrides = yaml.safe_load(overrides_file.read_text()) or []
        metrics_file = job / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        rows.append({"job": job.name, "overrides": " ".join(overrides), **metrics})
    return rows


def write_summary(sweep_dir: Path) -> list[dict[str, Any]]:
    rows = summarize(sweep_dir)
    header = ["job", "overrides", *COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row["job"]), f"`{row['overrides']}`"]
        if "final_loss" not in row:
            cells += ["failed"] * len(COLUMNS)
        else:  # a run may lack a column: no_ti2v has no ti2v loss
            cells += [f"{row[name]:.4g}" if isinstance(row.get(name), float) else str(row.get(name, "-"))
                      for name in COLUMNS]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    with atomic_output(sweep_dir / "summary.md") as temporary:
        temporary.write_text("\n".join(lines) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_output(sweep_dir / "summary.csv") as temporary:
        temporary.write_text(buffer.getvalue())
    return rows


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            rows = write_summary(sweep_dir)
            print(f"sweep summary of {len(rows)} runs: {sweep_dir / 'summary.md'}")
