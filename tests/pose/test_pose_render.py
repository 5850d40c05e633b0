"""Rendering: OpenPose colours and shapes where keypoints are, nothing where they are not, any size, both outputs."""

import numpy as np
import pytest
import torch

from animatex_pp.pose import PoseSequence, iter_render, render

WIDTH, HEIGHT = 200, 240
# Pixel positions of a front-facing figure (OpenPose-18 order) on a 200 x 240 image.
BODY = [
    (100, 20), (100, 60), (50, 60), (40, 110), (30, 160), (150, 60), (160, 110), (170, 160), (80, 130),
    (70, 165), (60, 195), (120, 130), (130, 165), (140, 195), (92, 14), (108, 14), (84, 18), (116, 18),
]  # fmt: skip
DIM = 0.6  # limbs are drawn at 60% of their colour


def figure(l_elbow_conf=1.0, with_parts=True) -> PoseSequence:
    size = np.array([WIDTH, HEIGHT])
    body_conf = np.ones((1, 18))
    body_conf[0, 6] = l_elbow_conf
    parts = {}
    if with_parts:
        feet = np.zeros((1, 6, 2))
        feet[0, 0], feet[0, 1], feet[0, 2] = (150, 225), (160, 225), (135, 205)  # left big toe, small toe, heel
        feet_conf = np.array([[1, 1, 1, 0, 0, 0]], dtype=float)
        hands = np.zeros((1, 2, 21, 2))
        hands[0, 1, 0], hands[0, 1, 1] = (30, 170), (10, 190)  # right wrist and first thumb joint
        hands_conf = np.zeros((1, 2, 21))
        hands_conf[0, 1, :2] = 1.0
        face = np.tile(np.array([20.0, 225.0]), (1, 68, 1))  # all face points in an empty corner
        parts = dict(feet=feet / size, feet_conf=feet_conf, hands=hands / size, hands_conf=hands_conf)
        parts.update(face=face / size, face_conf=np.ones((1, 68)))
    return PoseSequence(body=np.array([BODY]) / size, body_conf=body_conf, width=WIDTH, height=HEIGHT, **parts)


def pixel(frame, x, y):
    return tuple(int(v) for v in frame[int(y), int(x)])


def dimmed(rgb):
    return tuple(int(v) for v in (np.array(rgb) * DIM).astype(np.uint8))


def test_limbs_and_points_have_openpose_colours():
    frame = render(figure(), HEIGHT, WIDTH, color_order="rgb")[0]
    assert pixel(frame, 75, 60) == dimmed((255, 0, 0))  # neck -> right shoulder
    assert pixel(frame, 155, 85) == dimmed((170, 255, 0))  # left shoulder -> left elbow
    assert pixel(frame, 100, 40) == dimmed((0, 0, 255))  # neck -> nose
    assert pixel(frame, 65, 180) == dimmed((0, 255, 170))  # right knee -> right ankle
    assert pixel(frame, 100, 60) == (255, 85, 0)  # neck point
    assert pixel(frame, 50, 60) == (255, 170, 0)  # right shoulder point
    assert pixel(frame, 140, 195) == (85, 0, 255)  # left ankle point


def test_feet_hands_drawn_face_never():
    frame = render(figure(), HEIGHT, WIDTH, color_order="rgb")[0]
    assert pixel(frame, 147, 210) == dimmed((255, 0, 85))  # left ankle -> midpoint of the left toes
    assert pixel(frame, 155, 225) == (170, 255, 255)  # left toe midpoint
    assert pixel(frame, 20, 180) == (255, 0, 0)  # first hand bone, hue 0, full brightness
    assert pixel(frame, 30, 170) == (0, 0, 255)  # hand point
    assert pixel(frame, 20, 225) == (0, 0, 0)  # face points are never drawn
    without = render(figure(), HEIGHT, WIDTH, color_order="rgb", hands=False, feet=False)[0]
    assert pixel(without, 20, 180) == pixel(without, 147, 210) == pixel(without, 155, 225) == (0, 0, 0)


def test_undetected_points_and_their_limbs_are_not_drawn():
    frame = render(figure(l_elbow_conf=0.2), HEIGHT, WIDTH, color_order="rgb")[0]
    assert pixel(frame, 155, 85) == (0, 0, 0)  # left shoulder -> elbow
    assert pixel(frame, 165, 135) == (0, 0, 0)  # left elbow -> wrist
    assert pixel(frame, 160, 110) == (0, 0, 0)  # the elbow itself
    assert pixel(frame, 170, 160) == (0, 255, 85)  # the left wrist is still there


def test_only_the_figure_is_drawn():
    frame = render(figure(with_parts=False), HEIGHT, WIDTH, color_order="rgb")[0]
    drawn = frame.any(axis=-1)
    ys, xs = np.nonzero(drawn)
    body = np.array(BODY)
    assert xs.min() >= body[:, 0].min() - 5 and xs.max() <= body[:, 0].max() + 5
    assert ys.min() >= body[:, 1].min() - 5 and ys.max() <= body[:, 1].max() + 5


def test_stick_width_and_point_radius():
    thin = render(figure(with_parts=False), HEIGHT, WIDTH, color_order="rgb", stick_width=4)[0]
    thick = render(figure(with_parts=False), HEIGHT, WIDTH, color_order="rgb", stick_width=8)[0]
    assert pixel(thin, 75, 63) == dimmed((255, 0, 0)) and pixel(thin, 75, 66) == (0, 0, 0)
    assert pixel(thick, 75, 66) == dimmed((255, 0, 0))
    no_points = render(figure(with_parts=False), HEIGHT, WIDTH, color_order="rgb", point_radius=0)[0]
    assert pixel(no_points, 50, 60) != (255, 170, 0)


def test_bgr_order_swaps_red_and_blue():
    rgb = render(figure(), HEIGHT, WIDTH, color_order="rgb")
    bgr = render(figure(), HEIGHT, WIDTH)  # the default, as the released checkpoints saw skeletons
    np.testing.assert_array_equal(bgr, rgb[..., ::-1])
    assert pixel(bgr[0], 75, 60) == dimmed((0, 0, 255))


def test_any_resolution_scales_the_drawing():
    small = render(figure(), HEIGHT, WIDTH, color_order="rgb")[0]
    large = render(figure(), 2 * HEIGHT, 2 * WIDTH, color_order="rgb")[0]
    for x, y in [(75, 60), (100, 40), (100, 60), (147, 210)]:
        assert pixel(large, 2 * x, 2 * y) == pixel(small, x, y)
    odd = render(figure(), 53, 37)
    assert odd.shape == (1, 53, 37, 3) and odd.dtype == np.uint8 and odd.any()


def test_tensor_output_is_the_pipeline_pose_video():
    pose = PoseSequence(
        body=np.repeat(figure().body, 3, axis=0), body_conf=np.ones((3, 18)), width=WIDTH, height=HEIGHT, fps=8
    )
    frames = render(pose, 64, 48)
    video = render(pose, 64, 48, output="pt")
    assert isinstance(video, torch.Tensor) and video.dtype == torch.float32
    assert video.shape == (3, 3, 64, 48) and video.is_contiguous()
    assert 0.0 <= video.min() and video.max() <= 1.0
    torch.testing.assert_close(video, torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 255)


def test_streaming_matches_render():
    pose = figure()
    np.testing.assert_array_equal(np.stack(list(iter_render(pose, 60, 50))), render(pose, 60, 50))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"height": 0}, "height"),
        ({"width": 1.5}, "width"),
        ({"output": "pil"}, "output"),
        ({"color_order": "bgra"}, "color_order"),
        ({"stick_width": 0}, "stick_width"),
    ],
)
def test_bad_arguments(kwargs, message):
    arguments = {"height": 32, "width": 32, **kwargs}
    with pytest.raises(ValueError, match=message):
        render(figure(), **arguments)


def test_iter_render_checks_before_drawing():
    with pytest.raises(ValueError, match="height"):
        iter_render(figure(), 0, 32)  # raised at the call, not at the first frame
    with pytest.raises(TypeError, match="PoseSequence"):
        render(np.zeros((1, 18, 2)), 32, 32)
