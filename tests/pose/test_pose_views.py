"""Detection at sizes MediaPipe works at, on the sample images: at their own size, upscaled, small in a large frame
and only findable in a crop; points come back in the original frame's coordinates."""

import logging

import numpy as np
import pytest
from PIL import Image

from animatex_pp.pose import extract
from animatex_pp.pose.mediapipe_backend import MediaPipeBackend
from animatex_pp.pose.views import MAX_SIDE, View, views_of

CORE = [0, 1, 2, 5, 8, 9, 10, 11, 12, 13]  # nose, neck, shoulders, hips, knees, ankles
UPPER = [0, 1, 2, 5, 8, 11]  # nose, neck, shoulders, hips: a small figure's knees are less sure


@pytest.fixture(scope="module")
def girl(shared_assets):
    return Image.open(shared_assets / "images" / "anime_girl.jpeg").convert("RGB")


@pytest.fixture(scope="module")
def girl_pose(girl):
    return extract(np.asarray(girl), progress=False, hands=False)


def pixels(pose):
    return pose.body[0].astype(np.float64) * (pose.width, pose.height)


def test_views_cover_the_frame_at_most_max_side_long():
    views = views_of(2400, 1600)
    assert views[0] == View((0, 0, 2400, 1600), (MAX_SIDE, 683))
    assert all(max(view.size) <= MAX_SIDE for view in views)
    # Crops along the width: the left, middle and right two thirds.
    assert [view.box for view in views[2:5]] == [(0, 0, 1600, 1600), (400, 0, 2000, 1600), (800, 0, 2400, 1600)]
    assert views_of(64, 48) == [View((0, 0, 64, 48), (64, 48))]  # too small to retry


def test_a_reference_image_larger_than_max_side_is_tried_downscaled_whole(shared_assets):
    with Image.open(shared_assets / "images" / "winged_figure.jpeg") as image:
        width, height = image.size
    assert (width, height) == (832, 1216)
    whole = [view.size for view in views_of(width, height) if view.box == (0, 0, width, height)]
    assert whole == [(701, 1024), (350, 512)]  # 1024 and 512 pixels long, never its own 1216


def test_view_maps_points_back_to_the_frame():
    view = View((100, 50, 300, 250), (64, 64))
    found = {"body": np.array([[0.0, 0.0], [0.5, 1.0]]), "body_conf": np.array([1.0, 0.5])}
    mapped = view.to_frame(found, width=400, height=500)
    np.testing.assert_allclose(mapped["body"] * (400, 500), [[100, 50], [200, 250]])
    np.testing.assert_array_equal(mapped["body_conf"], found["body_conf"])


def test_the_sample_image_at_its_own_size(girl_pose):
    assert (girl_pose.width, girl_pose.height) == (832, 1216)
    assert (girl_pose.body_conf[0, CORE] >= 0.3).all()


def test_an_upscaled_copy_gives_twice_the_points(girl, girl_pose, tmp_path):
    path = tmp_path / "girl_2x.png"
    girl.resize((2 * girl.width, 2 * girl.height), Image.Resampling.BICUBIC).save(path)
    upscaled = extract(path, progress=False, hands=False)
    assert (upscaled.width, upscaled.height) == (1664, 2432)
    assert (upscaled.body_conf[0, CORE] >= 0.3).all()
    # Both are detected in nearly the same 1024-pixel view; resampling differences move points by up to ~2%.
    np.testing.assert_allclose(pixels(upscaled)[CORE], 2 * pixels(girl_pose)[CORE], atol=0.03 * 2432)


def _composed(girl, background, scale, corner):
    canvas = background.resize((2400, 1600))
    small = girl.resize((round(girl.width * scale), round(girl.height * scale)), Image.Resampling.BILINEAR)
    canvas.paste(small, corner)
    return np.asarray(canvas)


@pytest.mark.parametrize(
    ("background", "scale", "why"),
    [("white", 0.5, "found only at a smaller size"), ("winged_figure.jpeg", 0.8, "found only in a crop")],
)
def test_a_small_figure_in_a_large_frame(girl, girl_pose, shared_assets, background, scale, why):
    if background == "white":
        background = Image.new("RGB", (2400, 1600), (250, 250, 250))
    else:
        background = Image.open(shared_assets / "images" / background).convert("RGB")
    corner = (1500, 200)
    frame = _composed(girl, background, scale, corner)
    plain = MediaPipeBackend(hands=False, static_image_mode=True)
    try:
        assert not (plain(frame)["body_conf"] >= 0.3).any(), f"MediaPipe alone should miss it ({why})"
    finally:
        plain.close()
    pose = extract(frame, progress=False, hands=False)
    assert (pose.width, pose.height) == (2400, 1600)
    assert (pose.body_conf[0, UPPER] >= 0.3).all()
    expected = np.array(corner) + scale * pixels(girl_pose)
    np.testing.assert_allclose(pixels(pose)[UPPER], expected[UPPER], atol=0.02 * 1600)


def test_nobody_found_is_a_warning_naming_the_file(shared_assets, caplog):
    path = shared_assets / "images" / "winged_figure.jpeg"
    with caplog.at_level(logging.WARNING, logger="animatex_pp.pose"):
        pose = extract(path, progress=False, hands=False)
    assert not (pose.body_conf >= 0.3).any()
    assert f"mediapipe found nobody in {path}" in caplog.text
    assert "by hand" in caplog.text and "--over" in caplog.text
