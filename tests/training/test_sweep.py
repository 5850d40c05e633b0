"""The sweep summary table from job folders as Hydra leaves them: finished, finished without a metric, failed."""

import json

import yaml

from animatex_pp.training.sweep import write_summary


def _job(sweep, number, overrides, metrics=None):
    hydra = sweep / str(number) / ".hydra"
    hydra.mkdir(parents=True)
    (hydra / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (sweep / str(number) / "metrics.json").write_text(json.dumps(metrics))


def test_a_missing_metric_is_a_dash_and_a_job_without_metrics_failed(tmp_path):
    finished = {"final_loss": 0.5, "loss_animation": 0.6, "loss_ti2v": 0.4, "steps": 10, "samples_per_s": 2.0,
                "wall_time_s": 3.0}  # fmt: skip
    _job(tmp_path, 0, ["ablation=full"], finished)
    _job(tmp_path, 1, ["ablation=no_ti2v"], {name: value for name, value in finished.items() if name != "loss_ti2v"})
    _job(tmp_path, 2, ["ablation=no_ipi"])
    rows = write_summary(tmp_path)
    assert [row["job"] for row in rows] == ["0", "1", "2"]
    table = (tmp_path / "summary.md").read_text().splitlines()
    assert table[2] == "| 0 | `ablation=full` | 0.5 | 0.6 | 0.4 | 10 | 2 | 3 |"
    assert table[3] == "| 1 | `ablation=no_ti2v` | 0.5 | 0.6 | - | 10 | 2 | 3 |"
    assert table[4] == "| 2 | `ablation=no_ipi` | failed | failed | failed | failed | failed | failed |"
    csv_rows = (tmp_path / "summary.csv").read_text().splitlines()
    assert csv_rows[0] == "job,overrides,final_loss,loss_animation,loss_ti2v,steps,samples_per_s,wall_time_s"
    assert csv_rows[2] == "1,ablation=no_ti2v,0.5,0.6,,10,2.0,3.0"
