"""Frame geometry and the frame plan, from configs alone: the 4k+1 rule, the VAE's factors, windows and overlaps."""

import pytest

from animatex_pp.pipelines.geometry import PipelineGeometry, VaeFactors
from animatex_pp.pipelines.windowing import FrameArguments, LatentWindow, plan_frames
from animatex_pp.testing import tiny_pipeline

WAN = VaeFactors()


def test_wan_packs_the_first_frame_alone_and_then_four_per_latent_frame():
    assert [count for count in range(1, 20) if WAN.is_valid_frame_count(count)] == [1, 5, 9, 13, 17]
    assert (WAN.round_down(12), WAN.round_up(10), WAN.round_up(9)) == (9, 13, 9)
    assert (WAN.latent_frames(81), WAN.pixel_frames(21)) == (21, 81)
    assert (WAN.latent_size(832, 480), WAN.pixel_size(104, 60), WAN.size_multiple(2)) == ((104, 60), (832, 480), 16)
    with pytest.raises(ValueError, match=r"--frames must be 4k\+1 \(e.g. 17, 81\), got 10"):
        WAN.check_frame_count(10, "--frames")


def test_another_codecs_factors_are_followed():
    factors = VaeFactors.from_config({"scale_factor_temporal": 2, "scale_factor_spatial": 16})
    assert VaeFactors.of(None) == WAN
    assert [count for count in range(1, 8) if factors.is_valid_frame_count(count)] == [1, 3, 5, 7]
    plan = plan_frames(6, {"`pose`": 9}, factors)
    assert (plan.num_frames, plan.num_latent_frames) == (7, 4)
    assert "`num_frames` 6 is not 2k+1 (the VAE packs 2 frames into one latent frame): rounding up to 7" == plan.note


def test_a_folders_configs_give_the_loaded_pipelines_geometry():
    pipe = tiny_pipeline(seed=0)
    geometry = PipelineGeometry.from_configs(dict(pipe.vae.config), dict(pipe.transformer.config), True)
    assert geometry == pipe.geometry == PipelineGeometry(WAN, 2, 9)
    assert geometry.size_multiple == pipe.size_multiple == 16
    # Without a motion encoder the IPI cannot run, so nothing ties generation to its window.
    assert PipelineGeometry.from_configs(pipe.vae.config, pipe.transformer.config, False).ipi_frames is None


def test_the_default_count_is_the_first_inputs_length_as_4k_plus_1():
    assert plan_frames(None, {"`pose`": 11}, WAN).num_frames == 9
    assert plan_frames(None, {}, WAN).num_frames == 81
    plan = plan_frames(None, {"`pose`": 11, "`driving_video`": 12}, WAN)
    assert (plan.num_frames, plan.generation_frames, plan.note) == (9, 9, None)
    assert plan.windows == [LatentWindow(0, 3)]


def test_counts_round_up_unless_that_passes_an_inputs_end():
    assert plan_frames(7, {"`pose`": 9}, WAN).num_frames == 9
    # 10 of a 10-frame pose: 13 would pass its end, so 9.
    plan = plan_frames(10, {"`pose`": 12, "`driving_video`": 10}, WAN)
    assert plan.num_frames == 9 and plan.note.endswith("rounding down to 9")
    assert plan_frames(10, {}, WAN).num_frames == 13


@pytest.mark.parametrize(
    ("num_frames", "lengths", "message"),
    [
        (13, {"`pose`": 9}, "`num_frames` 13 needs 13 frames but `pose` has 9: use `num_frames` 9 or less"),
        (None, {"`pose`": 9, "`driving_video`": 5},
         r"the default `num_frames` 9 \(the length of `pose`\) needs 9 frames but `driving_video` has 5"),
        (10, {"`pose`": 9}, r"`num_frames` 10 \(as 4k\+1: 13\) needs 13 frames but `pose` has 9"),
        (None, {"`pose`": 0}, "`pose` has no frames: give at least one"),
        (0, {}, "`num_frames` must be a positive int, got 0"),
        (-3, {}, "`num_frames` must be a positive int, got -3"),
        (9.0, {}, "`num_frames` must be a positive int, got 9.0"),
    ],
)  # fmt: skip
def test_impossible_counts_name_the_short_input_and_what_fits(num_frames, lengths, message):
    with pytest.raises(ValueError, match=message):
        plan_frames(num_frames, lengths, WAN)


def test_the_ipi_ties_generation_to_whole_windows():
    # A 5-frame video from an IPI of 9-frame windows: 9 frames are generated, 5 returned.
    plan = plan_frames(5, {"`pose`": 5}, WAN, ipi_frames=9)
    assert (plan.num_frames, plan.generation_frames, plan.use_ipi) == (5, 9, True)
    assert plan.windows == [LatentWindow(0, 3)]
    # 25 frames in windows of 9 overlapping by one latent frame (the official ratio, at least one frame).
    assert plan_frames(25, {"`pose`": 25}, WAN, ipi_frames=9).windows == [
        LatentWindow(0, 3),
        LatentWindow(2, 5),
        LatentWindow(4, 7),
    ]
    with pytest.raises(ValueError, match="only takes windows of 9 frames"):
        plan_frames(25, {"`pose`": 25}, WAN, ipi_frames=9, window_frames=13)
    with pytest.raises(ValueError, match=r"`window_frames` must be a 4k\+1 int, got 8"):
        plan_frames(25, {"`pose`": 25}, WAN, window_frames=8)


@pytest.mark.parametrize("overlap", [3, -4, 0, 12, 4.0])
def test_overlaps_are_refused_even_for_a_video_of_one_window(overlap):
    with pytest.raises(ValueError, match=f"`window_overlap` {overlap}: frames shared by windows of 9 must be a "
                                         "multiple of 4 from 4 to 8"):  # fmt: skip
        plan_frames(9, {"`pose`": 9}, WAN, ipi_frames=9, window_overlap=overlap)
    assert plan_frames(9, {"`pose`": 9}, WAN, ipi_frames=9, window_overlap=8).windows == [LatentWindow(0, 3)]


def test_a_command_line_names_its_options():
    names = FrameArguments(num_frames="--frames", window_overlap="--window-overlap")
    with pytest.raises(ValueError, match="--frames 13 needs 13 frames but --pose has 9: use --frames 9 or less"):
        plan_frames(13, {"--pose": 9}, WAN, names=names)
    with pytest.raises(ValueError, match="--window-overlap 3: frames shared by windows of 81"):
        plan_frames(9, {"--pose": 9}, WAN, window_overlap=3, names=names)
    assert plan_frames(10, {"--pose": 10}, WAN, names=names).note.startswith("--frames 10 is not 4k+1")
