"""`AnimateXPipeline` end to end on the tiny random pipeline: parity with diffusers, streams, checks, windows."""

import sys

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import WanImageToVideoPipeline, WanTransformer3DModel
from torch.overrides import TorchFunctionMode
from transformers import CLIPImageProcessorPil

from animatex_pp import AnimateXPipeline
from animatex_pp.models.presets import split_preset
from animatex_pp.pipelines.conditioning import official_strokes
from animatex_pp.pose import PoseSequence, render, retarget
from animatex_pp.testing import tiny_components, tiny_pipeline
from tests.helpers.streams import randomize_streams

SIZE = 32
STEPS = 2


def reference_image(seed: int = 0) -> PIL.Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
    return PIL.Image.fromarray(pixels)


def pose_video(num_frames: int, seed: int = 1) -> np.ndarray:
    """A rendered-pose-like uint8 video: black with a few bright squares that move."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((num_frames, SIZE, SIZE, 3), np.uint8)
    for index in range(num_frames):
        for _ in range(4):
            y, x = rng.integers(0, SIZE - 4, size=2)
            frames[index, y : y + 4, x : x + 4] = rng.integers(64, 256, size=3)
    return frames


# The test poses are measured on 64 x 64 images and drawn at 32 x 32, so DWPose's 4-pixel strokes halve, as the
# official pipeline's resize of its skeleton images would make them.
STROKES = {"stick_width": 2, "point_radius": 2}


def test_strokes_shrink_with_the_resize_to_the_generation_size():
    pose = PoseSequence(np.full((1, 18, 2), 0.5, np.float32), np.ones((1, 18), np.float32), width=768, height=1216)
    assert official_strokes(pose, 832, 480) == {"stick_width": 3, "point_radius": 3}  # 4 x sqrt(0.684 x 0.625)
    assert official_strokes(pose, 1216, 768) == {"stick_width": 4, "point_radius": 4}
    assert official_strokes(pose, 64, 32) == {"stick_width": 1, "point_radius": 1}  # never thinner than a pixel


def pose_sequence(num_frames: int, seed: int = 2) -> PoseSequence:
    """A random walk of OpenPose-18 points, a few of them under the detection threshold."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(0.3, 0.7, size=(1, 18, 2))
    body = np.clip(start + np.cumsum(rng.normal(0, 0.02, size=(num_frames, 18, 2)), axis=0), 0.05, 0.95)
    conf = rng.uniform(0.5, 1.0, size=(num_frames, 18))
    conf[:, 16:] = 0.1  # the ears are never detected
    return PoseSequence(body.astype(np.float32), conf.astype(np.float32), width=64, height=64, fps=8)


class EncodedPoses:
    """Records the arguments of every `encode_pose_conditions` call (one per window encoding)."""

    def __init__(self, pipe: AnimateXPipeline):
        self.calls: list[dict] = []
        self.cls = type(pipe.transformer)
        self.original = self.cls.encode_pose_conditions

        def spy(model, *args, **kwargs):
            self.calls.append(kwargs)
            return self.original(model, *args, **kwargs)

        self.cls.encode_pose_conditions = spy

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cls.encode_pose_conditions = self.original


def poisoned(pose: PoseSequence, field: str, value: float, frame: int = 4) -> PoseSequence:
    """`pose` with one value of `field` replaced after construction (a PoseSequence checks its arrays when made)."""
    getattr(pose, field)[frame].flat[0] = value
    return pose


class EncoderRuns:
    """Records which of the pipeline's models ran: the encoders, the VAE and the transformer."""

    def __init__(self, pipe: AnimateXPipeline):
        # The VAE encodes through `encode`, not `forward`: its encoder submodule's forward is what runs.
        self.models = {
            "text_encoder": pipe.text_encoder,
            "image_encoder": pipe.image_encoder,
            "motion_encoder": pipe.motion_encoder,
            "vae.encoder": pipe.vae.encoder,
            "transformer": pipe.transformer,
        }
        self.ran: list[str] = []

    def __enter__(self):
        self.handles = [
            model.register_forward_pre_hook(lambda *args, name=name: self.ran.append(name))
            for name, model in self.models.items()
        ]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


class TransformerCalls:
    """Records the keyword arguments of every transformer call."""

    def __init__(self, pipe: AnimateXPipeline):
        self.calls: list[dict] = []
        self.handle = pipe.transformer.register_forward_pre_hook(self.record, with_kwargs=True)

    def record(self, module, args, kwargs):
        self.calls.append(dict(kwargs))

    def remove(self):
        self.handle.remove()


@pytest.fixture(scope="module")
def pipe():
    pipe = tiny_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, seed=0, **kwargs):
    arguments = {
        "image": reference_image(),
        "prompt": "a girl is dancing",
        "height": SIZE,
        "width": SIZE,
        "num_frames": 9,
        "num_inference_steps": STEPS,
        "generator": torch.Generator().manual_seed(seed),
    }
    arguments.update(kwargs)
    return pipe(**arguments).frames


# ----------------------------------------------------------------------------- parity and determinism


def test_ti2v_equals_diffusers_wan_i2v_pipeline(pipe):
    ours = generate(pipe, mode="ti2v", guidance_scale=3.0, negative_prompt="blurry")
    components = tiny_components(seed=0)
    components.pop("motion_encoder")
    # diffusers' own transformer class with the same base weights (our streams stay at their zero initialisation).
    transformer = components["transformer"]
    base_config, _ = split_preset("tiny")
    components["transformer"] = WanTransformer3DModel(**base_config).eval()
    base_weights = {k: v for k, v in transformer.state_dict().items() if not k.startswith(transformer.stream_names)}
    components["transformer"].load_state_dict(base_weights, strict=True)
    wan = WanImageToVideoPipeline(**components)
    wan.set_progress_bar_config(disable=True)
    theirs = wan(
        image=reference_image(),
        prompt="a girl is dancing",
        negative_prompt="blurry",
        height=SIZE,
        width=SIZE,
        num_frames=9,
        num_inference_steps=STEPS,
        guidance_scale=3.0,
        generator=torch.Generator().manual_seed(0),
    ).frames
    assert ours.shape == theirs.shape == (1, 9, SIZE, SIZE, 3)
    assert np.abs(ours - theirs).max() <= 1e-4


def test_the_same_generator_seed_gives_the_same_video(pipe):
    first = generate(pipe, pose=pose_video(9))
    second = generate(pipe, pose=pose_video(9))
    other_seed = generate(pipe, seed=1, pose=pose_video(9))
    np.testing.assert_array_equal(first, second)
    assert np.abs(first - other_seed).max() > 1e-3


@pytest.mark.parametrize(
    ("output_type", "check"),
    [
        ("np", lambda frames: isinstance(frames, np.ndarray) and frames.shape == (1, 9, SIZE, SIZE, 3)),
        ("pt", lambda frames: isinstance(frames, torch.Tensor) and tuple(frames.shape) == (1, 9, 3, SIZE, SIZE)),
        ("pil", lambda frames: len(frames[0]) == 9 and frames[0][0].size == (SIZE, SIZE)),
        ("latent", lambda frames: tuple(frames.shape) == (1, 16, 3, SIZE // 8, SIZE // 8)),
    ],
)
def test_output_types(pipe, output_type, check):
    assert check(generate(pipe, pose=pose_video(9), output_type=output_type))


@pytest.mark.parametrize(
    "to_format",
    [
        lambda image: np.asarray(image),
        lambda image: torch.tensor(np.asarray(image)).permute(2, 0, 1).float() / 255.0,
    ],
    ids=["uint8-array", "float-tensor"],
)
def test_reference_image_formats_give_the_same_video(pipe, to_format):
    from_pil = generate(pipe, pose=pose_video(9))
    other = generate(pipe, pose=pose_video(9), image=to_format(reference_image()))
    np.testing.assert_allclose(other, from_pil, atol=1e-6)


def test_pose_video_formats_give_the_same_video(pipe):
    frames = pose_video(9)
    as_array = generate(pipe, pose=frames)
    as_pil = generate(pipe, pose=[PIL.Image.fromarray(frame) for frame in frames])
    as_tensor = generate(pipe, pose=torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 255.0)
    np.testing.assert_array_equal(as_pil, as_array)
    np.testing.assert_allclose(as_tensor, as_array, atol=1e-6)


# ----------------------------------------------------------------------------- the pose streams


def test_rendered_pose_video_reaches_the_explicit_stream_and_cfg_drops_it(pipe):
    frames = pose_video(9)
    calls = TransformerCalls(pipe)
    try:
        with EncodedPoses(pipe) as spy:
            generate(pipe, pose=frames, guidance_scale=3.0)
    finally:
        calls.remove()
    encoded = spy.calls
    # One encoding for the single window, reused by every step and both guidance passes.
    assert len(encoded) == 1
    expected = torch.from_numpy(frames).permute(3, 0, 1, 2).float().unsqueeze(0) / 255.0
    torch.testing.assert_close(encoded[0]["pose_video"], expected)
    assert encoded[0].get("pose_keypoints") is None  # a rendered video has no keypoints: no IPI
    assert len(calls.calls) == 2 * STEPS
    conditional, unconditional = calls.calls[0]["pose_conditions"], calls.calls[1]["pose_conditions"]
    assert conditional.pose_tokens is not None and unconditional.pose_tokens is None


def test_a_pose_sequence_feeds_all_three_streams(pipe):
    pose, reference = pose_sequence(9), pose_sequence(1, seed=7)
    with EncodedPoses(pipe) as spy:
        generate(pipe, pose=pose, reference_pose=reference)
    (encoded,) = spy.calls
    # The renderer, the keypoint export and the CLIP are the pose module's and transformers' own.
    torch.testing.assert_close(encoded["pose_video"], render(pose, SIZE, SIZE, output="pt", **STROKES).unsqueeze(0))
    torch.testing.assert_close(
        encoded["reference_pose"], render(reference, SIZE, SIZE, output="pt", **STROKES)[:, 0][None]
    )
    torch.testing.assert_close(encoded["pose_keypoints"], torch.tensor(pose.ipi_keypoints())[None])
    assert (encoded["pose_keypoints"][0, :, 16:] == -1).all()  # undetected points are -1 for the IPI
    assert tuple(encoded["driving_image_embeds"].shape) == (1, 9, pipe.transformer.config.ipi_clip_dim)


def clip_features(pipe: AnimateXPipeline, frames: np.ndarray) -> torch.Tensor:
    """The motion encoder's embeddings through transformers' own CLIP preprocessing (frames already square)."""
    processor = CLIPImageProcessorPil(do_resize=False, do_center_crop=False)
    pixel_values = processor(images=list(frames), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        return pipe.motion_encoder(pixel_values=pixel_values).image_embeds


def test_driving_frames_give_the_ipi_its_clip_features(pipe):
    driving = pose_video(9, seed=4)  # 32 x 32: the tiny CLIP's own input size
    with EncodedPoses(pipe) as spy:
        generate(pipe, pose=pose_sequence(9), driving_video=driving)
    torch.testing.assert_close(
        spy.calls[0]["driving_image_embeds"][0], clip_features(pipe, driving), atol=1e-5, rtol=0
    )


def test_without_driving_frames_the_ipi_sees_the_rendered_poses(pipe):
    pose = pose_sequence(9)
    with EncodedPoses(pipe) as spy:
        generate(pipe, pose=pose)
    expected = clip_features(pipe, render(pose, SIZE, SIZE, **STROKES))
    torch.testing.assert_close(spy.calls[0]["driving_image_embeds"][0], expected, atol=1e-5, rtol=0)


def test_keypoint_threshold_and_retargeting_reach_the_ipi(pipe):
    pose, reference = pose_sequence(9), pose_sequence(1, seed=7)
    with EncodedPoses(pipe) as spy:
        generate(pipe, pose=pose, keypoint_conf_threshold=0.05)
        generate(pipe, pose=pose, reference_pose=reference, retarget_pose=True)
    assert (spy.calls[0]["pose_keypoints"] != -1).all()  # the ears (confidence 0.1) now count as detected
    retargeted = retarget(pose, reference)
    torch.testing.assert_close(spy.calls[1]["pose_keypoints"][0], torch.tensor(retargeted.ipi_keypoints()))
    torch.testing.assert_close(spy.calls[1]["pose_video"][0], render(retargeted, SIZE, SIZE, output="pt", **STROKES))


def test_retargeting_drops_the_parts_the_reference_lacks_unless_kept(pipe):
    pose, legless = pose_sequence(9), pose_sequence(1, seed=7)
    legless.body_conf[0, [9, 10, 12, 13]] = 0.0  # a mermaid: hips, no knees or ankles
    with EncodedPoses(pipe) as spy:
        generate(pipe, pose=pose, reference_pose=legless, retarget_pose=True)
        generate(pipe, pose=pose, reference_pose=legless, retarget_pose=True, keep_missing_parts=True)
    legs = [9, 10, 12, 13]
    assert (spy.calls[0]["pose_keypoints"][0][:, legs] == -1).all()
    kept = retarget(pose, legless, keep_missing_parts=True)
    assert (spy.calls[1]["pose_keypoints"][0][:, legs] != -1).all()
    torch.testing.assert_close(spy.calls[1]["pose_keypoints"][0], torch.tensor(kept.ipi_keypoints()))


def test_a_short_output_fills_the_ipi_window_with_the_poses_own_later_frames(pipe):
    pose = pose_sequence(12)  # more frames than the 5 asked for; the tiny IPI's window holds 9
    with EncodedPoses(pipe) as spy:
        frames = generate(pipe, pose=pose, num_frames=5)
    assert frames.shape[1] == 5
    torch.testing.assert_close(spy.calls[0]["pose_keypoints"][0], torch.tensor(pose[:9].ipi_keypoints()))
    short = pose_sequence(7)  # fewer than the window: the last frame is repeated
    with EncodedPoses(pipe) as spy:
        generate(pipe, pose=short, num_frames=5)
    expected = torch.tensor(short.ipi_keypoints())[[0, 1, 2, 3, 4, 5, 6, 6, 6]]
    torch.testing.assert_close(spy.calls[0]["pose_keypoints"][0], expected)


def test_a_multi_frame_reference_pose_retargets_to_its_first_frame(pipe):
    pose, references = pose_sequence(9), pose_sequence(3, seed=7)
    with EncodedPoses(pipe) as spy:
        generate(pipe, pose=pose, reference_pose=references, retarget_pose=True)
    retargeted = retarget(pose, references[0])
    torch.testing.assert_close(spy.calls[0]["pose_keypoints"][0], torch.tensor(retargeted.ipi_keypoints()))


def test_without_a_reference_pose_the_stream_is_skipped_with_a_warning(pipe, caplog):
    with caplog.at_level("WARNING"):
        generate(pipe, pose=pose_sequence(9))
    assert "No `reference_pose`" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        generate(pipe, pose=pose_sequence(9), reference_pose=pose_sequence(1, seed=7))
    assert "No `reference_pose`" not in caplog.text


def test_without_a_motion_encoder_the_ipi_is_skipped_with_a_warning(caplog):
    components = tiny_components(seed=0)
    components["motion_encoder"] = None
    pipe = AnimateXPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    with EncodedPoses(pipe) as spy, caplog.at_level("WARNING"):
        frames = generate(pipe, pose=pose_sequence(9))
    assert spy.calls[0].get("pose_keypoints") is None and spy.calls[0]["pose_video"] is not None
    assert "no `motion_encoder`" in caplog.text and frames.shape == (1, 9, SIZE, SIZE, 3)


def test_a_trained_pose_stream_changes_the_video_and_the_pose_matters():
    pipe = tiny_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    silent = generate(pipe, pose=pose_video(9, seed=1))
    randomize_streams(pipe)
    driven = generate(pipe, pose=pose_video(9, seed=1))
    other_pose = generate(pipe, pose=pose_video(9, seed=2))
    assert np.abs(driven - silent).max() > 1e-3
    assert np.abs(driven - other_pose).max() > 1e-3


def test_reference_pose_image_feeds_the_reference_stream(pipe):
    skeleton = pose_video(1, seed=5)[0]
    calls = TransformerCalls(pipe)
    try:
        generate(pipe, pose=pose_video(9), reference_pose=PIL.Image.fromarray(skeleton), guidance_scale=3.0)
    finally:
        calls.remove()
    conditional, unconditional = calls.calls[0]["pose_conditions"], calls.calls[1]["pose_conditions"]
    assert conditional.reference_condition is not None
    # Classifier-free guidance keeps the reference pose in the negative pass, as the official code does.
    assert unconditional.reference_condition is conditional.reference_condition


# ----------------------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"height": 40}, "multiple of 16"),
        ({"width": 8}, "multiple of 16"),
        ({"pose": None}, "needs a `pose`"),
        ({"mode": "dance"}, "`mode` must be one of"),
        ({"mode": "ti2v"}, "takes no pose"),
        ({"num_frames": 13}, "`num_frames` 13 needs 13 frames but `pose` has 9: use `num_frames` 9 or less"),
        ({"output_type": "mp4"}, "`output_type` must be one of"),
        ({"window_strategy": "loop"}, "`window_strategy` must be one of"),
        ({"window_overlap": 3}, "multiple of 4"),
        ({"max_sequence_length": 64}, "must be 512"),
        ({"prompt": 5}, "`prompt` must be a string"),
        ({"image": "girl.png"}, "`image` must be a PIL image"),
        ({"pose": "dance.mp4"}, "`pose` must be a PoseSequence"),
        ({"negative_prompt": ["a", "b"]}, "give one per prompt"),
        ({"guidance_scale": -1}, "`guidance_scale` must be a finite number >= 0"),
        ({"guidance_scale": float("nan")}, "`guidance_scale` must be a finite number >= 0"),
        ({"guidance_scale": float("inf")}, "`guidance_scale` must be a finite number >= 0"),
        ({"height": 0}, "`height`=0 must be a positive multiple of 16"),
        ({"width": -16}, "`width`=-16 must be a positive multiple of 16"),
        ({"num_frames": 0}, "`num_frames` must be a positive int"),
        ({"num_frames": -3}, "`num_frames` must be a positive int"),
        ({"window_overlap": -4}, "multiple of 4"),
        ({"num_inference_steps": 0}, "`num_inference_steps` must be a positive int"),
        ({"latents": torch.zeros(1, 16, 2, 4, 4)}, r"`latents` must have shape \(1, 16, 3, 4, 4\)"),
        ({"retarget_pose": True}, "needs `pose` and `reference_pose` as PoseSequence"),
        ({"keep_missing_parts": True}, r"is a retargeting option: pass `retarget_pose=True` too"),
        ({"callback_on_step_end_tensor_inputs": ["noise"]}, "may name"),
        ({"driving_video": np.zeros((5, SIZE, SIZE, 3), np.uint8)}, "9 frames but `driving_video` has 5"),
        ({"driving_video": np.zeros((9, SIZE, SIZE), np.uint8)}, r"must be \(F, H, W, 3\)"),
        ({"pose": torch.zeros(9, 3, SIZE, SIZE)}, r"must be \(3, F, H, W\)"),
        ({"pose": np.zeros((9, SIZE, SIZE, 3), np.int64)}, r"must be \(F, H, W, 3\) uint8 frames"),
        ({"driving_video": torch.zeros(3, 9, SIZE, SIZE, dtype=torch.uint8)}, r"floats in \[0, 1\] as a tensor"),
        ({"image": np.zeros((SIZE, SIZE), np.uint8)}, r"must be \(H, W, 3\)"),
        ({"reference_pose": np.zeros((3, SIZE, SIZE), np.uint8)}, r"must be \(H, W, 3\)"),
        ({"pose": []}, "`pose` has no frames: give at least one"),
        ({"pose": np.zeros((0, SIZE, SIZE, 3), np.uint8)}, "`pose` has no frames"),
        ({"driving_video": torch.zeros(3, 0, SIZE, SIZE)}, "`driving_video` has no frames"),
        ({"pose": poisoned(pose_sequence(9), "body", np.nan)}, "`pose` holds NaN or inf body keypoints"),
        ({"pose": poisoned(pose_sequence(9), "body_conf", np.inf)}, r"NaN or inf body keypoints \(first in frame 4\)"),
        ({"pose": pose_sequence(9), "reference_pose": poisoned(pose_sequence(1), "body", -np.inf, frame=0)},
         "`reference_pose` holds NaN or inf body keypoints"),
        ({"driving_video": torch.full((3, 9, SIZE, SIZE), 200.0)}, "`driving_video` holds float pixels from 200"),
        ({"pose": torch.rand(3, 9, SIZE, SIZE) * 255}, r"floats must be in \[0, 1\]: divide uint8-range values"),
        ({"driving_video": [np.full((SIZE, SIZE, 3), 128.0)] * 9}, "`driving_video` holds float pixels"),
        ({"pose": torch.full((3, 9, SIZE, SIZE), float("nan"))}, "`pose` holds float pixels from nan"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused_before_any_model_runs(pipe, kwargs, message):
    with EncoderRuns(pipe) as runs, pytest.raises(ValueError, match=message):
        generate(pipe, **{"pose": pose_video(9), **kwargs})
    assert not runs.ran, f"{runs.ran} ran before the refusal"


def test_a_long_prompt_is_said_to_be_cut_before_the_text_encoder_runs(pipe, caplog):
    seen_before_encoding = []

    def record(*args):
        seen_before_encoding.append("tokens are cut" in caplog.text)

    handle = pipe.text_encoder.register_forward_pre_hook(record)
    try:
        with caplog.at_level("WARNING"):
            generate(pipe, pose=pose_video(9), prompt=" ".join(["dancing"] * 600), num_inference_steps=1)
    finally:
        handle.remove()
    assert seen_before_encoding and all(seen_before_encoding)


def test_frame_counts_round_up_to_4k_plus_1_with_a_warning(pipe, caplog):
    with caplog.at_level("WARNING"):
        frames = generate(pipe, pose=pose_video(9), num_frames=7)
    assert frames.shape[1] == 9
    assert "`num_frames` 7 is not 4k+1 (the VAE packs 4 frames into one latent frame): rounding up to 9" in caplog.text


def test_rounding_never_goes_up_past_the_pose(pipe, caplog):
    # 10 frames asked of a 10-frame pose: 13 (up) would be refused as longer than the pose, so 9 (down) is made.
    with caplog.at_level("WARNING"):
        frames = generate(pipe, pose=pose_video(10), num_frames=10)
    assert frames.shape[1] == 9
    assert "`num_frames` 10 is not 4k+1" in caplog.text and "rounding down to 9" in caplog.text


def test_a_prompt_longer_than_the_text_encoder_reads_warns_that_it_is_cut(pipe, caplog):
    long_prompt = " ".join(["dancing"] * 600)  # one token per word in the tiny vocabulary, plus </s>
    with caplog.at_level("WARNING"):
        generate(pipe, pose=pose_video(9), prompt=long_prompt, num_inference_steps=1)
    assert "The prompt is 601 tokens long but the text encoder reads 512: its last 89 tokens are cut" in caplog.text


def test_a_transparent_reference_is_composited_over_white(pipe):
    # A PIL reference given to the Python API goes through the same reader as files: alpha over white.
    transparent = PIL.Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    assert np.asarray(AnimateXPipeline._reference_image(transparent)).min() == 255


def test_default_frame_count_is_the_pose_length_rounded_down(pipe):
    assert generate(pipe, pose=pose_video(11), num_frames=None).shape[1] == 9


# ----------------------------------------------------------------------------- long videos


def test_three_windows_of_a_long_video_blend_with_window_sized_transformer_calls(pipe):
    calls = TransformerCalls(pipe)
    try:
        # 25 frames = 7 latent frames = 3 windows of 3 latent frames overlapping by 1 (window_frames 9, overlap 4).
        frames = generate(pipe, pose=pose_video(25), num_frames=25, window_frames=9, window_overlap=4)
    finally:
        calls.remove()
    assert frames.shape == (1, 25, SIZE, SIZE, 3)
    assert len(calls.calls) == 3 * STEPS * 2  # windows x steps x guidance passes
    assert {call["hidden_states"].shape[2] for call in calls.calls} == {3}
    assert {call["pose_conditions"].pose_tokens.shape[2] for call in calls.calls[::2]} == {3}


def test_the_ipi_gets_each_windows_own_keypoints(pipe):
    pose = pose_sequence(25)
    with EncodedPoses(pipe) as spy:
        generate(pipe, pose=pose, num_frames=25, num_inference_steps=1)
    # Windows of latent frames [0, 3), [2, 5), [4, 7) take pixel frames [0, 9), [8, 17), [16, 25).
    keypoints = torch.tensor(pose.ipi_keypoints())
    assert len(spy.calls) == 3
    for call, start in zip(spy.calls, (0, 8, 16), strict=True):
        torch.testing.assert_close(call["pose_keypoints"][0], keypoints[start : start + 9])


def test_a_video_shorter_than_the_ipi_window_is_padded_and_trimmed(pipe):
    pose = pose_sequence(5)
    with EncodedPoses(pipe) as spy:
        frames = generate(pipe, pose=pose, num_frames=5)
    keypoints = spy.calls[0]["pose_keypoints"][0]
    assert keypoints.shape[0] == 9  # the IPI takes exactly ipi_num_frames
    torch.testing.assert_close(keypoints[5:], keypoints[4:5].expand(4, -1, -1))  # padded with the last frame
    assert frames.shape == (1, 5, SIZE, SIZE, 3)


def test_carried_windows_continue_the_first_window_exactly(pipe):
    """With `carry`, window 0 is generated as a video of its own and later windows keep its frames."""
    latents = torch.randn(1, 16, 7, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(3))
    long = generate(
        pipe,
        pose=pose_video(25),
        num_frames=25,
        window_frames=9,
        window_overlap=4,
        window_strategy="carry",
        latents=latents,
        output_type="latent",
    )
    first_window = generate(
        pipe, pose=pose_video(25)[:9], num_frames=9, latents=latents[:, :, :3], output_type="latent"
    )
    torch.testing.assert_close(long[:, :, :3], first_window)
    assert long.shape[2] == 7 and torch.isfinite(long).all()


class DeviceCopiesInTheLoops(TorchFunctionMode):
    """Counts the `Tensor.to` calls the denoising loops themselves make (a host-to-device copy on a GPU)."""

    LOOPS = ("_denoise_blended", "_denoise_carried")

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.to and sys._getframe(1).f_code.co_name in self.LOOPS:
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("window_strategy", ["blend", "carry"])
def test_the_loops_copy_scheduler_values_and_weights_once_not_at_every_step(pipe, window_strategy):
    """The scheduler keeps its sigmas on the CPU; a copy per step would block a GPU at every step."""
    counts = []
    for steps in (1, 2):
        with DeviceCopiesInTheLoops() as copies:
            # 17 frames = 5 latent frames = 2 windows of 3 latent frames overlapping by 1.
            generate(pipe, pose=pose_video(17), num_frames=17, window_frames=9, window_overlap=4,
                     num_inference_steps=steps, window_strategy=window_strategy, output_type="latent")  # fmt: skip
        counts.append(copies.count)
    assert counts[0] == counts[1] <= 2  # once per window (2 windows here), whatever the number of steps


def test_windows_are_refused_when_they_cannot_overlap(pipe):
    with pytest.raises(
        ValueError, match="`window_overlap` 12: frames shared by windows of 9 must be a multiple of 4 from 4 to 8"
    ):
        generate(pipe, pose=pose_video(25), num_frames=25, window_frames=9, window_overlap=12)


# ----------------------------------------------------------------------------- diffusers machinery


def test_save_pretrained_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    files = {path.suffix for path in tmp_path.rglob("*") if path.is_file()}
    assert ".safetensors" in files and not files & {".bin", ".pt", ".ckpt"}
    loaded = AnimateXPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.transformer).__name__ == "AnimateXTransformer3DModel"
    assert loaded.motion_encoder is not None
    np.testing.assert_array_equal(generate(loaded, pose=pose_video(9)), generate(pipe, pose=pose_video(9)))


def test_model_cpu_offload_hooks_every_model_and_keeps_the_output(tmp_path):
    pipe = tiny_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    expected = generate(pipe, pose=pose_video(9))
    pipe.enable_model_cpu_offload(device="cpu")
    hooked = {name for name, component in pipe.components.items() if hasattr(component, "_hf_hook")}
    assert hooked == {"text_encoder", "image_encoder", "motion_encoder", "transformer", "vae"}
    np.testing.assert_allclose(generate(pipe, pose=pose_video(9)), expected, atol=1e-6)


def test_vae_tiling_still_decodes_the_video():
    pipe = tiny_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    untiled = generate(pipe, pose=pose_video(9), height=64, width=64)
    pipe.vae.enable_tiling(
        tile_sample_min_height=32, tile_sample_min_width=32, tile_sample_stride_height=16, tile_sample_stride_width=16
    )
    tiled = generate(pipe, pose=pose_video(9), height=64, width=64)
    assert tiled.shape == untiled.shape == (1, 9, 64, 64, 3)
    assert np.abs(tiled - untiled).max() > 0  # the tiled decoder really ran


def test_first_block_cache_skips_blocks_and_still_generates():
    from diffusers.hooks import FirstBlockCacheConfig

    pipe = tiny_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    randomize_streams(pipe)
    block_calls = []
    # Count the blocks' feed-forward layers: a block the cache skips is still called, but computes nothing.
    for block in pipe.transformer.blocks:
        block.ffn.register_forward_pre_hook(lambda *args: block_calls.append(True))

    generate(pipe, pose=pose_video(9), num_inference_steps=6)
    without_cache = len(block_calls)
    block_calls.clear()
    # A generous threshold so the random tiny model's residuals count as unchanged after the first step.
    pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=10.0))
    cached = generate(pipe, pose=pose_video(9), num_inference_steps=6)
    assert len(block_calls) < without_cache
    assert cached.shape == (1, 9, SIZE, SIZE, 3) and np.isfinite(cached).all()


def test_callback_on_step_end_sees_and_can_replace_latents(pipe):
    seen = []

    def callback(pipeline, step, timestep, tensors):
        seen.append((step, tuple(tensors["latents"].shape)))
        return {"latents": torch.zeros_like(tensors["latents"])} if step == STEPS - 1 else {}

    latents = generate(pipe, pose=pose_video(9), output_type="latent", callback_on_step_end=callback)
    assert seen == [(0, (1, 16, 3, 4, 4)), (1, (1, 16, 3, 4, 4))]
    assert torch.count_nonzero(latents) == 0


def test_prompt_lists_make_a_batch(pipe):
    frames = generate(pipe, pose=pose_video(9), prompt=["a girl is dancing", "a cat is dancing"])
    assert frames.shape == (2, 9, SIZE, SIZE, 3)
    assert np.abs(frames[0] - frames[1]).max() > 0


@pytest.mark.slow
def test_repeated_blocks_compile(pipe):
    compiled = tiny_pipeline(seed=0)
    compiled.set_progress_bar_config(disable=True)
    compiled.transformer.compile_repeated_blocks(fullgraph=True)
    np.testing.assert_allclose(generate(compiled, pose=pose_video(9)), generate(pipe, pose=pose_video(9)), atol=1e-4)
