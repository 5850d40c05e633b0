"""Stage records: reuse a finished stage, continue an interrupted one, refuse or restart one of other settings."""

import json
from pathlib import Path

import pytest

from animatex_pp.io.stages import differences, fingerprint, open_stage, read_marker


def test_a_stage_goes_fresh_then_resumed_then_done(tmp_path):
    marker = tmp_path / "stage.json"
    settings = {"steps": 3, "path": Path("/data"), "buckets": ((64, 64),)}
    assert open_stage(marker, settings, on_change="refuse").status == "fresh"
    assert read_marker(marker)["done"] is False
    # an interrupted run (no finish) is continued by the next one with the same settings
    stage = open_stage(marker, settings, on_change="refuse")
    assert stage.status == "resumed"
    assert stage.finish({"loss": 0.5, "where": Path("/out")}) == {"loss": 0.5, "where": "/out"}
    done = open_stage(marker, {"buckets": [[64, 64]], "path": "/data", "steps": 3}, on_change="refuse")
    assert done.status == "done" and done.result == {"loss": 0.5, "where": "/out"}


def test_other_settings_are_refused_naming_them_or_start_afresh(tmp_path):
    marker = tmp_path / "stage.json"
    open_stage(marker, {"model": {"lr": 1e-3, "width": 128}}, on_change="refuse").finish({})
    with pytest.raises(ValueError, match=r"other settings \(model.lr: 0.001 before, 0.002 now\)"):
        open_stage(marker, {"model": {"lr": 2e-3, "width": 128}}, on_change="refuse", what="the folder")
    assert read_marker(marker)["done"] is True  # a refusal changes nothing

    output = tmp_path / "output"
    output.mkdir()
    (output / "stale").write_text("made with other settings")
    stage = open_stage(marker, {"model": {"lr": 2e-3}}, on_change="restart", folder=output)
    assert stage.status == "fresh" and not output.exists()


def test_fingerprints_ignore_key_order_and_differences_name_nested_keys():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": (1, 2), "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert differences({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 4}) == [
        "a.c: 2 before, 3 now", "d: None before, 4 now"]  # fmt: skip


def test_a_damaged_marker_says_to_delete_it(tmp_path):
    marker = tmp_path / "stage.json"
    marker.write_text("{not json")
    with pytest.raises(ValueError, match="delete it"):
        open_stage(marker, {}, on_change="refuse")
    marker.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a stage record"):
        read_marker(marker)
