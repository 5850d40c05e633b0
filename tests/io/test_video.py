"""Video I/O: frame selection (fps resampling, stride, start, max_frames), errors that name the file, round trips."""

import os
from pathlib import Path

import av
import numpy as np
import pytest

from animatex_pp.io.video import count_selected, iter_video, read_video, video_info, write_video

HEIGHT, WIDTH = 48, 64


def numbered_frames(count: int) -> np.ndarray:
    """Flat grey frames whose level encodes their index (10 apart survives H.264 easily)."""
    levels = 10 * np.arange(count, dtype=np.uint8) + 5
    return np.broadcast_to(levels[:, None, None, None], (count, HEIGHT, WIDTH, 3)).copy()


def frame_numbers(frames: np.ndarray) -> list[int]:
    return [int(round((frame.mean() - 5) / 10)) for frame in frames]


@pytest.fixture(scope="module")
def numbered_video(tmp_path_factory) -> Path:
    """20 numbered frames at 12 fps."""
    path = tmp_path_factory.mktemp("video") / "numbered.mp4"
    write_video(path, numbered_frames(20), fps=12)
    return path


def test_round_trip_keeps_count_size_fps_and_pixels(tmp_path):
    rng = np.random.default_rng(0)
    # A smooth picture (H.264 is lossy on noise) with a moving bright square.
    ys, xs = np.mgrid[:HEIGHT, :WIDTH]
    base = np.stack([xs * 4, ys * 5, (xs + ys) * 2], axis=-1).astype(np.uint8)
    frames = np.repeat(base[None], 9, axis=0)
    for i in range(9):
        frames[i, 10:20, 4 * i : 4 * i + 10] = 255
    frames[:, :2, :2] = rng.integers(0, 255, size=3, dtype=np.uint8)
    path = write_video(tmp_path / "clip.mp4", frames, fps=29.97)

    read, fps = read_video(path)
    assert read.shape == (9, HEIGHT, WIDTH, 3) and read.dtype == np.uint8
    assert fps == pytest.approx(29.97, abs=1e-3)
    assert np.abs(read[:, 4:-4, 4:-4].astype(int) - frames[:, 4:-4, 4:-4]).mean() < 3
    info = video_info(path)
    assert (info.num_frames, info.height, info.width) == (9, HEIGHT, WIDTH)


def test_reads_every_frame_in_order(numbered_video):
    frames, fps = read_video(numbered_video)
    assert frame_numbers(frames) == list(range(20))
    assert fps == pytest.approx(12)


def test_fps_resampling_down_and_up(numbered_video):
    frames, fps = read_video(numbered_video, fps=4)  # every third source frame
    assert frame_numbers(frames) == [0, 3, 6, 9, 12, 15, 18]
    assert fps == pytest.approx(4)
    frames, fps = read_video(numbered_video, fps=24, max_frames=6)  # each source frame twice
    assert frame_numbers(frames) == [0, 0, 1, 1, 2, 2]
    assert fps == pytest.approx(24)


def test_stride_start_and_max_frames(numbered_video):
    frames, fps = read_video(numbered_video, stride=3, start=2)
    assert frame_numbers(frames) == [2, 5, 8, 11, 14, 17]
    assert fps == pytest.approx(4)
    frames, _ = read_video(numbered_video, stride=2, start=1, max_frames=3)
    assert frame_numbers(frames) == [1, 3, 5]
    # Selection applies after resampling: 6 fps shows source frames 0, 2, 4, ...; start 1 and stride 2 of those.
    frames, fps = read_video(numbered_video, fps=6, start=1, stride=2)
    assert frame_numbers(frames) == [2, 6, 10, 14, 18]
    assert fps == pytest.approx(3)


def test_count_selected_matches_what_is_read(numbered_video):
    for fps, stride, start, max_frames in [(None, 1, 0, None), (4, 1, 0, None), (24, 3, 5, None), (7, 2, 1, 4)]:
        frames = list(iter_video(numbered_video, fps=fps, stride=stride, start=start, max_frames=max_frames))
        assert count_selected(20, 12.0, fps, stride, start, max_frames) == len(frames)


def test_start_past_the_end_is_an_error(numbered_video):
    with pytest.raises(ValueError, match="start=25"):
        read_video(numbered_video, start=25)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"fps": 0}, "fps"), ({"stride": 0}, "stride"), ({"start": -1}, "start"), ({"max_frames": 0}, "max_frames")],
)
def test_bad_selection_arguments(numbered_video, kwargs, message):
    with pytest.raises(ValueError, match=message):
        read_video(numbered_video, **kwargs)
    with pytest.raises(ValueError, match=message):
        iter_video(numbered_video, **kwargs)  # raised at the call, before any frame is asked for


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.mp4"):
        read_video(tmp_path / "nowhere.mp4")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(ValueError, match=r"empty.mp4 is empty"):
        read_video(path)


def test_corrupt_files(tmp_path, numbered_video):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="garbage.mp4"):
        read_video(garbage)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(numbered_video.read_bytes()[:1500])
    with pytest.raises(ValueError, match="truncated.mp4"):
        read_video(truncated)


def write_header_first_video(path: Path, frames: np.ndarray, fps: int) -> Path:
    """An MP4 with its index (moov) before the frames, as streaming exports have it: a truncated copy still opens."""
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_truncated_file_with_its_header_is_an_error_not_a_short_read(tmp_path):
    complete = write_header_first_video(tmp_path / "complete.mp4", numbered_frames(20), fps=12)
    with av.open(str(complete)) as container:
        packets = [packet for packet in container.demux(video=0) if packet.size]
    # Cut after a whole packet, so the decoder sees no broken data and simply runs out of frames.
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(complete.read_bytes()[: packets[9].pos + packets[9].size])
    assert video_info(truncated).num_frames == 20
    with pytest.raises(ValueError, match=r"truncated.mp4 decoded \d+ of 20 frames: the file is truncated or corrupt"):
        read_video(truncated)
    with pytest.raises(ValueError, match=r"decoded \d+ of 10 frames"):
        read_video(truncated, stride=2)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        list(iter_video(truncated))
    # A selection that the remaining frames cover is read as asked.
    frames, _ = read_video(truncated, max_frames=3)
    assert frame_numbers(frames) == [0, 1, 2]


def test_truncated_sample_video_is_an_error(tmp_path, shared_assets):
    truncated = tmp_path / "fashion_walk_head.mp4"
    truncated.write_bytes((shared_assets / "videos" / "fashion_walk_380f.mp4").read_bytes()[:40_000])
    with pytest.raises(ValueError, match=r"fashion_walk_head.mp4 decoded \d+ of 380 frames"):
        read_video(truncated)


def test_selection_accepts_numpy_integers(numbered_video):
    frames, _ = read_video(numbered_video, stride=np.int64(2), start=np.int32(1), max_frames=np.int64(3))
    assert frame_numbers(frames) == [1, 3, 5]


def open_handles(path: Path) -> int:
    """How many of this process's file descriptors point at `path` (Linux's /proc)."""
    target = os.path.realpath(path)
    fds = Path("/proc/self/fd")
    return sum(os.path.realpath(fd) == target for fd in fds.iterdir() if fd.is_symlink())


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files through Linux's /proc")
def test_iter_video_holds_the_file_open_only_while_reading(numbered_video):
    frames = iter_video(numbered_video)  # checks the call and reads the header
    assert open_handles(numbered_video) == 0
    next(frames)
    assert open_handles(numbered_video) == 1
    frames.close()
    assert open_handles(numbered_video) == 0
    assert len(list(iter_video(numbered_video))) == 20
    assert open_handles(numbered_video) == 0


def test_not_a_video(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 100)
    with pytest.raises(ValueError, match="notes.mp4"):
        read_video(text)


def test_write_rejects_bad_frames(tmp_path):
    with pytest.raises(ValueError, match=r"even height and width, got 47x64 \(HxW\)"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 47, 64, 3), np.uint8), fps=8)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "float.mp4", np.zeros((2, 48, 64, 3), np.float32), fps=8)
    with pytest.raises(ValueError, match="non-empty"):
        write_video(tmp_path / "none.mp4", np.zeros((0, 48, 64, 3), np.uint8), fps=8)
    with pytest.raises(ValueError, match="fps"):
        write_video(tmp_path / "rate.mp4", numbered_frames(2), fps=0)
    with pytest.raises(ValueError, match=".mp4"):
        write_video(tmp_path / "clip.avi", numbered_frames(2), fps=8)
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        write_video(tmp_path / "missing_dir" / "clip.mp4", numbered_frames(2), fps=8)


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_video(tmp_path / "clip.mp4", numbered_frames(4), fps=8)
    before = path.read_bytes()

    def frames_then_a_bad_one():
        yield from numbered_frames(3)
        yield np.zeros((HEIGHT // 2, WIDTH, 3), np.uint8)

    with pytest.raises(ValueError, match="frame 3"):
        write_video(path, frames_then_a_bad_one(), fps=8)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_writes_from_an_iterator(tmp_path):
    path = write_video(tmp_path / "stream.mp4", iter(numbered_frames(5)), fps=10)
    frames, fps = read_video(path)
    assert frame_numbers(frames) == [0, 1, 2, 3, 4] and fps == pytest.approx(10)


def test_reads_the_shared_sample_videos(shared_assets):
    frames, fps = read_video(shared_assets / "videos" / "dance_anime_32f.mp4")
    assert frames.shape == (32, 1216, 768, 3) and fps == pytest.approx(8)
    frames, fps = read_video(shared_assets / "videos" / "fashion_walk_380f.mp4", fps=8, max_frames=5)
    assert frames.shape == (5, 940, 720, 3) and fps == pytest.approx(8)
    info = video_info(shared_assets / "videos" / "fashion_walk_380f.mp4")
    assert info.num_frames == 380 and info.fps == pytest.approx(30000 / 1001)


@pytest.mark.parametrize("rotation", [-90, 90, 180])
def test_display_rotation_is_applied_as_a_player_shows_it(tmp_path, rotation):
    """A phone portrait video: landscape pixels plus a display-matrix rotation (PyAV writes it directly)."""
    stored = np.zeros((3, 32, 64, 3), np.uint8)
    stored[:, :8, :16] = 255  # a white block in the stored top-left corner
    path = tmp_path / "portrait.mp4"
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(rotation)  # degrees counter-clockwise, as VideoFrame.rotation reads it back
        for frame in stored:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)

    frames, _ = read_video(path)
    expected = np.rot90(stored, rotation // 90, axes=(1, 2))  # counter-clockwise quarter turns of (H, W)
    assert frames.shape == expected.shape
    assert np.abs(frames.astype(int) - expected).mean() < 8  # H.264 blurs the block's edges only
    info = video_info(path)
    assert (info.height, info.width) == expected.shape[1:3]
    assert next(iter_video(path)).shape == expected.shape[1:]
