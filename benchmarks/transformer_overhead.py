"""What the Animate-X++ pose streams cost on top of the plain Wan2.1 transformer.

Part 1 (measured, wall clock): a mid-size CPU config (4 blocks, 8 heads x 64, 21 latent frames at 16 x 16, i.e.
81 pose frames at 128 x 128) with the official stream sizes. Every timing is the median of `--repeats` runs,
interleaved model by model so that machine noise hits all rows alike; ratios are against plain Wan in the same run.

  * per denoising step: the pose streams encoded once per window (`encode_pose_conditions`, as the pipeline and the
    official inference do) and only added at each step — the inference cost;
  * one-off encoding of a window's poses;
  * forward and forward+backward with the encoders inside (a training step, where every batch brings new poses).

Part 2 (counted, not timed): FLOPs of the real Wan2.1-I2V-14B at 832 x 480 x 81 on the meta device (no memory, no
weights), DiT step vs pose encoding, from torch's FlopCounterMode.

    python benchmarks/transformer_overhead.py --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from diffusers import WanTransformer3DModel  # noqa: E402
from diffusers.utils import logging as diffusers_logging  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from animatex_pp.models.presets import wan_config_keys  # noqa: E402
from animatex_pp.models.transformer import AnimateXTransformer3DModel  # noqa: E402

MID_SIZE = dict(
    num_attention_heads=8,
    attention_head_dim=64,
    num_layers=4,
    ffn_dim=2048,
    text_dim=256,
    image_dim=256,
    added_kv_proj_dim=512,
    ipi_block_start=1,
    ipi_block_end=4,
)


def make_inputs(batch, latent_frames, latent_size, text_dim, image_dim, clip_dim, device="cpu"):
    pixel_frames, pixel_size = 4 * (latent_frames - 1) + 1, 8 * latent_size
    with torch.device(device):
        base = dict(
            hidden_states=torch.randn(batch, 36, latent_frames, latent_size, latent_size),
            timestep=torch.full((batch,), 500),
            encoder_hidden_states=torch.randn(batch, 512, text_dim),
            encoder_hidden_states_image=torch.randn(batch, 257, image_dim),
        )
        streams = dict(
            pose_video=torch.rand(batch, 3, pixel_frames, pixel_size, pixel_size),
            reference_pose=torch.rand(batch, 3, pixel_size, pixel_size),
            pose_keypoints=torch.rand(batch, pixel_frames, 18, 2),
            driving_image_embeds=torch.randn(batch, pixel_frames, clip_dim),
        )
    return base, streams


def median_seconds(functions: dict[str, callable], repeats: int) -> dict[str, float]:
    """Median wall time per function, running them interleaved (one of each per round) after a warm-up."""
    for function in functions.values():
        function()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def measure_mid_size(repeats: int) -> list[tuple[str, float, float | None]]:
    torch.manual_seed(0)
    model = AnimateXTransformer3DModel(**MID_SIZE)
    # Make every stream non-zero so nothing is skipped or trivially cheap.
    for parameter in model.stream_parameters():
        torch.nn.init.normal_(parameter, std=0.02)
    wan = WanTransformer3DModel(**{k: v for k, v in model.config.items() if k in wan_config_keys()})
    wan.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith(model.stream_names)})
    base, streams = make_inputs(1, 21, 16, MID_SIZE["text_dim"], MID_SIZE["image_dim"], model.config.ipi_clip_dim)

    with torch.no_grad():
        conditions = model.encode_pose_conditions(**streams)

        def wan_step():
            wan(**base)

        def animatex_step():
            model(**base, pose_conditions=conditions)

        def encode_once():
            model.encode_pose_conditions(**streams)

        inference = median_seconds({"wan": wan_step, "animatex": animatex_step, "encode": encode_once}, repeats)

    def wan_train():
        wan(**base).sample.square().mean().backward()

    def animatex_train():
        model(**base, **streams).sample.square().mean().backward()

    def animatex_forward_with_encoders():
        with torch.no_grad():
            model(**base, **streams)

    training = median_seconds(
        {"wan": wan_train, "animatex": animatex_train, "animatex_fwd": animatex_forward_with_encoders}, repeats
    )
    return [
        ("Wan forward (one denoising step)", inference["wan"], None),
        ("Animate-X++ forward, poses encoded once", inference["animatex"], inference["animatex"] / inference["wan"]),
        ("  pose encoding, once per window", inference["encode"], inference["encode"] / inference["wan"]),
        ("Animate-X++ forward incl. encoders", training["animatex_fwd"], training["animatex_fwd"] / inference["wan"]),
        ("Wan forward+backward", training["wan"], None),
        ("Animate-X++ forward+backward incl. encoders", training["animatex"], training["animatex"] / training["wan"]),
    ]


def count_14b_flops() -> tuple[float, float]:
    """(pose encoding TFLOPs, one DiT forward TFLOPs) for Wan2.1-I2V-14B at 832 x 480 x 81, counted on meta."""
    with torch.device("meta"):
        model = AnimateXTransformer3DModel.from_preset("wan2.1-i2v-14b-480p")
    model._attention_backend_device_type = "meta"  # nothing to select: meta tensors run no kernels
    base, streams = make_inputs(1, 21, 0, 4096, 1280, 1024, device="meta")
    base["hidden_states"] = torch.empty(1, 36, 21, 104, 60, device="meta")
    streams["pose_video"] = torch.empty(1, 3, 81, 832, 480, device="meta")
    streams["reference_pose"] = torch.empty(1, 3, 832, 480, device="meta")
    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            conditions = model.encode_pose_conditions(**streams)
        encode = counter.get_total_flops()
        counter = FlopCounterMode(display=False)
        with counter:
            model(**base, pose_conditions=conditions)
        step = counter.get_total_flops()
    return encode / 1e12, step / 1e12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per row (median reported)")
    args = parser.parse_args()
    diffusers_logging.set_verbosity_error()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}\n")
    print("Mid-size CPU config: 4 blocks, 8 heads x 64, 21 latent frames at 16 x 16 (81 x 128 x 128 pose video)\n")
    print(f"| {'what':<46} | {'seconds':>8} | {'vs Wan':>7} |")
    print(f"|{'-' * 48}|{'-' * 10}|{'-' * 9}|")
    for name, seconds, ratio in measure_mid_size(args.repeats):
        ratio_text = "" if ratio is None else f"{ratio:.3f}"
        print(f"| {name:<46} | {seconds:>8.3f} | {ratio_text:>7} |")

    encode, step = count_14b_flops()
    generation = 2 * 50 * step  # CFG: two transformer calls per step, 50 steps
    print("\nWan2.1-I2V-14B at 832 x 480 x 81 (counted FLOPs on the meta device)\n")
    print(f"| {'what':<46} | {'TFLOPs':>10} |")
    print(f"|{'-' * 48}|{'-' * 12}|")
    print(f"| {'DiT forward, one call':<46} | {step:>10.1f} |")
    print(f"| {'pose encoding, once per window':<46} | {encode:>10.2f} |")
    print(f"| {'encoding / one DiT call':<46} | {encode / step:>10.2e} |")
    print(f"| {'encoding / 50-step CFG generation':<46} | {encode / generation:>10.2e} |")


if __name__ == "__main__":
    main()
