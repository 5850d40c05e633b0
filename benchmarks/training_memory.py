"""Peak memory of a training step with and without gradient checkpointing, mid-size config, on the CPU.

    python benchmarks/training_memory.py            # 8 blocks of 4 heads x 32, 21 latent frames at 16 x 16
    python benchmarks/training_memory.py --frames 41

Each setting runs in a fresh process (peak resident memory only grows within one): the transformer and random
model inputs are built, the peak resident set size is read, then two forward + backward + AdamW steps of the flow
objective run; the table gives the process's peak and how much of it the steps added (activations, gradients,
optimizer state). The second step is timed. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MID = {"num_layers": 8, "num_attention_heads": 4, "attention_head_dim": 32, "ffn_dim": 256, "added_kv_proj_dim": 128}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def one_setting(checkpointing: bool, frames: int, size: int) -> dict:
    import torch

    from animatex_pp.models.transformer import AnimateXTransformer3DModel
    from animatex_pp.training.objective import FlowObjective

    torch.manual_seed(0)
    latent_frames = (frames - 1) // 4 + 1
    model = AnimateXTransformer3DModel.from_preset("tiny", **MID, ipi_num_frames=frames, ipi_encoder_max_frames=frames,
                                                   ipi_num_latent_frames=latent_frames)  # fmt: skip
    if checkpointing:
        model.enable_gradient_checkpointing()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    objective = FlowObjective(weighting_scheme="uniform", shift=1.0)
    config = model.config
    latents = torch.randn(1, 16, latent_frames, size // 8, size // 8)
    inputs = {
        "encoder_hidden_states": torch.randn(1, 512, config.text_dim),
        "encoder_hidden_states_image": torch.randn(1, 257, config.image_dim),
        "pose_video": torch.rand(1, 3, frames, size, size),
        "reference_pose": torch.rand(1, 3, size, size),
        "pose_keypoints": torch.rand(1, frames, 18, 2),
        "driving_image_embeds": torch.randn(1, frames, config.ipi_clip_dim),
    }

    def step() -> float:
        generator = torch.Generator().manual_seed(0)
        sigmas = objective.sample_sigmas(1, generator)
        noise = torch.randn(latents.shape, generator=generator)
        condition = torch.randn(1, 20, latent_frames, size // 8, size // 8)
        hidden = torch.cat([objective.noisy(latents, noise, sigmas), condition], dim=1)
        prediction = model(hidden_states=hidden, timestep=objective.timesteps(sigmas), return_dict=False, **inputs)[0]
        loss = objective.loss(prediction, latents, noise, sigmas).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    before = peak_mb()  # the libraries, the model and its inputs
    step()  # the optimizer's state exists from here on
    started = time.perf_counter()
    step()
    return {"peak_mb": peak_mb(), "step_mb": peak_mb() - before, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=81, help="pixel frames, 4k + 1 (default 81: 21 latent frames)")
    parser.add_argument("--size", type=int, default=128, help="frame side in pixels (default 128: 16 x 16 latents)")
    parser.add_argument("--worker", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(one_setting(args.worker == "on", args.frames, args.size)))
        return
    rows = {}
    for setting in ("off", "on"):
        command = [
            sys.executable,
            __file__,
            "--worker",
            setting,
            "--frames",
            str(args.frames),
            "--size",
            str(args.size),
        ]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows[setting] = json.loads(output.strip().splitlines()[-1])
    print(f"mid-size transformer ({MID}), {args.frames} frames at {args.size} x {args.size}, batch 1\n")
    print("| gradient checkpointing | peak RSS (MB) | of it, the step's (MB) | s/step |")
    print("|---|---|---|---|")
    for setting, row in rows.items():
        print(f"| {setting} | {row['peak_mb']:.0f} | {row['step_mb']:.0f} | {row['seconds']:.2f} |")
    saved = rows["off"]["step_mb"] - rows["on"]["step_mb"]
    print(f"\ncheckpointing saves {saved:.0f} MB of the step's peak ({saved / rows['off']['step_mb']:.0%}) and costs "
          f"{rows['on']['seconds'] / rows['off']['seconds']:.2f}x the step time")  # fmt: skip


if __name__ == "__main__":
    main()
