"""Metadata: every bad row reported with its line and reason, usable rows kept, nothing usable refused."""

import json

import pytest

from animatex_pp.cli import main
from animatex_pp.data.metadata import load_metadata, read_metadata
from tests.helpers.clips import GOOD_ANIMATION, GOOD_TI2V


def test_bad_rows_are_reported_with_line_and_reason(clip_folder):
    report = read_metadata(clip_folder / "metadata.jsonl")
    assert len(report.clips_of("animation")) == GOOD_ANIMATION
    assert len(report.clips_of("ti2v")) == GOOD_TI2V
    assert [problem.line for problem in report.problems] == json.loads((clip_folder / "bad_lines.json").read_text())
    reasons = [problem.reason for problem in report.problems]
    assert "video file not found" in reasons[0]
    assert "unknown task 'dance'" in reasons[1]
    assert "not valid JSON" in reasons[2]
    assert "empty caption" in reasons[3]
    assert "has 27 frames but its video has 32" in reasons[4]
    assert "cannot be read" in reasons[5]
    first = report.clips[0]
    assert first.video == (clip_folder / "clips" / "dance_0.mp4").resolve()  # relative to the metadata file
    assert (first.info.height, first.info.width) == (96, 64)


def test_csv_metadata_reads_like_jsonl(clip_folder, tmp_path):
    rows = [json.loads(line) for line in (clip_folder / "metadata.jsonl").read_text().splitlines()[:2]]
    csv_path = clip_folder / "two.csv"
    csv_path.write_text(
        "video,task,caption,pose,reference,fps\n"
        + "\n".join(f"{row['video']},{row['task']},{row['caption']},{row['pose']},," for row in rows)
        + "\nclips/dance_1.mp4,animation,x,poses/short.npz,,\n"
    )
    report = read_metadata(csv_path)
    assert [clip.line for clip in report.clips] == [2, 3]
    assert [problem.line for problem in report.problems] == [4]
    assert report.clips[0].pose == (clip_folder / "poses" / "dance_0.npz").resolve()


def test_nothing_usable_is_refused_with_the_list(tmp_path):
    metadata = tmp_path / "bad.jsonl"
    metadata.write_text('{"video": "nope.mp4", "task": "ti2v", "caption": "x"}\nnot json\n')
    with pytest.raises(ValueError, match=r"no usable clip \(2 rows, 2 bad\):\n  line 1: video file not found"):
        load_metadata(metadata)


def test_data_check_prints_the_report_and_exits_by_usability(clip_folder, tmp_path, capsys):
    assert main(["data", "check", str(clip_folder / "metadata.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "| animation | 4 |" in out and "| ti2v | 3 |" in out
    assert "line 9: unknown task 'dance'" in out
    assert "7 usable of 13 rows (6 skipped)" in out

    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"video": "nope.mp4", "task": "ti2v", "caption": "x"}\n')
    assert main(["data", "check", str(empty)]) == 1
    assert main(["data", "check", str(tmp_path / "absent.jsonl")]) == 2
