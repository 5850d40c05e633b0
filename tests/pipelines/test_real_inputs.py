"""The tiny pipeline on the real sample assets: decode a dance video, animate a real image, write and re-read it."""

import numpy as np
import PIL.Image
import pytest
import torch

from animatex_pp.io.preview import write_contact_sheet
from animatex_pp.io.video import read_video, write_video
from animatex_pp.pose import extract, render
from animatex_pp.testing import tiny_pipeline

HEIGHT, WIDTH = 80, 48  # the portrait aspect of the assets (1216 x 768), in multiples of 16


def test_dance_video_animates_the_anime_girl_and_round_trips_through_mp4(shared_assets, tmp_path):
    frames, fps = read_video(shared_assets / "videos" / "dance_anime_32f.mp4")
    assert frames.shape == (32, 1216, 768, 3) and fps == pytest.approx(8)
    image = PIL.Image.open(shared_assets / "images" / "anime_girl.jpeg").convert("RGB")
    pose = extract(frames, "mediapipe", fps=fps, progress=False)
    reference_pose = extract(np.asarray(image), "mediapipe", progress=False)
    assert len(pose) == 32 and pose.body_conf.mean() > 0.5  # a person was found in the dance

    pipe = tiny_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    video = pipe(
        image=image,
        pose=pose,
        driving_video=frames,
        reference_pose=reference_pose,
        prompt="a girl is dancing in front of the colosseum",
        height=HEIGHT,
        width=WIDTH,
        num_frames=29,  # the largest 4k+1 count the 32 frames allow: 4 IPI windows of 9
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
    ).frames[0]
    assert video.shape == (29, HEIGHT, WIDTH, 3) and np.isfinite(video).all()

    uint8 = (video * 255).round().astype(np.uint8)
    output = write_video(tmp_path / "anime_girl_dance.mp4", uint8, fps)
    decoded, decoded_fps = read_video(output)
    assert decoded.shape == (29, HEIGHT, WIDTH, 3)
    assert decoded_fps == pytest.approx(fps)
    # H.264 is lossy, but the frames are the ones written.
    assert np.abs(decoded.astype(int) - uint8.astype(int)).mean() < 8

    sheet = write_contact_sheet(
        tmp_path / "anime_girl_dance.png",
        image,
        render(pose, HEIGHT, WIDTH),
        uint8,
        reference_pose=render(reference_pose, HEIGHT, WIDTH)[0],
    )
    with PIL.Image.open(sheet) as png:
        assert png.format == "PNG" and png.width > png.height
