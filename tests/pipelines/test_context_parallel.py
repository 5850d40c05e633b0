"""Context-parallel generation (`animatex_pp.pipelines.parallel`): two CPU processes (gloo) give one process's video,
through the pipeline and through `torchrun ... animatex-pp generate`; bad launches are refused before any work."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from animatex_pp.cli import EXIT_BAD_INPUT, main
from animatex_pp.io.video import read_video
from animatex_pp.pipelines.parallel import (
    check_context_parallel,
    check_window_tokens,
    enable_context_parallel,
    finish_context_parallel,
    local_frame_embedding,
)
from animatex_pp.pipelines.pipeline_animatex import AnimateXPipeline
from animatex_pp.testing import tiny_pipeline
from tests.cli.test_generate import generate_args
from tests.helpers.generate_inputs import write_generate_inputs
from tests.helpers.streams import randomize_streams
from tests.helpers.transformer_inputs import make_inputs, run
from tests.pipelines.test_pipeline_animatex import pose_sequence, reference_image

SIZE = 32
WORLD_SIZE = 2
# Two processes split the work differently from one (matrix products over half the tokens): float rounding only.
TOLERANCE = {"atol": 1e-5, "rtol": 1e-5}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------------- checks, in one process


def test_checks_say_what_to_do():
    with pytest.raises(ValueError, match=r"this is 1 process: launch it with `torchrun --nproc-per-node N"):
        check_context_parallel("ulysses", 1, 40, "native", "cpu")
    with pytest.raises(ValueError, match=r"equal share of the transformer's 40 attention heads: run 2, 4, 5, 8, 10"):
        check_context_parallel("ulysses", 3, 40, "native", "cpu")
    with pytest.raises(ValueError, match=r"backend 'native', which does not return the log-sum-exp .* \(or use ul"):
        check_context_parallel("ring", 2, 40, "native", "cpu")
    with pytest.raises(ValueError, match=r"'xformers', which has no context-parallel version"):
        check_context_parallel("ulysses", 2, 40, "xformers", "cuda")
    with pytest.raises(ValueError, match=r"runs on cuda or cpu devices, not mps"):
        check_context_parallel("ulysses", 2, 40, "native", "mps")
    with pytest.raises(ValueError, match=r"one of \('ulysses', 'ring'\)"):
        check_context_parallel("tensor", 2, 40, "native", "cpu")
    # What runs: ring does not need the heads to divide, on a backend that returns the log-sum-exp.
    check_context_parallel("ring", 3, 40, "flash", "cuda")
    check_context_parallel("ulysses", 8, 40, "native", "cpu")


def test_window_tokens_must_split_evenly():
    # The 14B model at 480 x 832 x 81: 21 latent frames x 30 x 52 patches = 32760 tokens.
    for degree in (2, 4, 8):
        check_window_tokens(degree, 21, 60, 104, (1, 2, 2))
    with pytest.raises(ValueError, match=r"32760 tokens \(21 latent frames x 30 x 52 patches\) into 16 equal"):
        check_window_tokens(16, 21, 60, 104, (1, 2, 2))
    check_window_tokens(1, 3, 6, 6, (1, 2, 2))  # 27 tokens are fine in one process


@pytest.mark.parametrize(("frames", "tokens_per_frame", "degree"), [(3, 4, 2), (21, 4, 4), (3, 9, 3), (4, 4, 8)])
def test_each_share_gets_the_ipi_vectors_of_its_own_tokens(frames, tokens_per_frame, degree):
    """The IPI add of AnimateXTransformerBlock, done per share with `local_frame_embedding`, equals the whole add."""
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, frames * tokens_per_frame, 5, generator=generator)
    pose = torch.randn(2, frames, 5, generator=generator)
    # (B, F * S, D) -> (B, F, S, D) + (B, F, 1, D): the whole sequence in one process
    whole = (hidden.unflatten(1, (frames, -1)) + pose.unsqueeze(2)).flatten(1, 2)
    shares = []
    for rank, share in enumerate(hidden.chunk(degree, dim=1)):
        local = local_frame_embedding(pose, share.shape[1], rank, degree)
        # (B, L / N, D) -> (B, G, L / (N G), D) + (B, G, 1, D), as the block views it
        shares.append((share.unflatten(1, (local.shape[1], -1)) + local.unsqueeze(2)).flatten(1, 2))
    torch.testing.assert_close(torch.cat(shares, dim=1), whole, rtol=0, atol=0)


def test_the_ipi_share_is_a_broadcast_not_a_copy_per_token():
    # 14B at 480p on 2 GPUs: 16380 tokens each, 1560 per frame: groups of 780 tokens, 21 vectors, not 16380.
    local = local_frame_embedding(torch.zeros(1, 21, 8), 16380, 1, 2)
    assert local.shape == (1, 21, 8)


def test_enabling_without_torchrun_is_refused_before_any_work(monkeypatch):
    pipe = tiny_pipeline(seed=0)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ValueError, match="launch it with `torchrun --nproc-per-node N"):
        enable_context_parallel(pipe, "ulysses")
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(ValueError, match="this is 1 process"):
        enable_context_parallel(pipe, "ulysses")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="'native', which does not return the log-sum-exp"):
        enable_context_parallel(pipe, "ring")
    assert not dist.is_initialized()
    assert pipe.transformer._parallel_config is None
    assert not any(hasattr(block, "_diffusers_hook") for block in pipe.transformer.blocks)


# ----------------------------------------------------------------------------- two processes, through the pipeline


def streamed_pipeline() -> AnimateXPipeline:
    """The tiny pipeline with every pose stream speaking (zero-initialised streams would hide a wrong split)."""
    torch.set_num_threads(1)
    pipe = tiny_pipeline(seed=0)
    randomize_streams(pipe, seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate_all(pipe: AnimateXPipeline) -> dict[str, torch.Tensor]:
    """The latents of every case, and the transformer's own output with the raw stream inputs (`return_dict=True`)."""

    def latents(**kwargs):
        arguments = {
            "image": reference_image(),
            "prompt": "a girl is dancing",
            "height": SIZE,
            "width": SIZE,
            "num_inference_steps": 2,
            "generator": torch.Generator().manual_seed(0),
            "output_type": "latent",
        }
        return pipe(**{**arguments, **kwargs}).frames

    # 9 frames at 32 x 32: 3 latent frames x 2 x 2 patches = 12 tokens, 6 per process, which split frame 1.
    animation = {"pose": pose_sequence(9), "reference_pose": pose_sequence(1, seed=5), "num_frames": 9}
    # 17 frames: two IPI windows of 9 frames sharing 1 latent frame.
    long = {"pose": pose_sequence(17), "reference_pose": pose_sequence(1, seed=5), "num_frames": 17}
    return {
        "animation": latents(**animation),
        "ti2v": latents(mode="ti2v", num_frames=9),
        "long-blend": latents(**long),
        "long-carry": latents(**long, window_strategy="carry"),
        "transformer": run(pipe.transformer, make_inputs(seed=1)),
    }


def refused_window(pipe: AnimateXPipeline) -> str:
    """The message for 48 x 48 (3 x 3 x 3 = 27 tokens, which do not split in 2), and that no model ran first."""
    ran = []
    handle = pipe.text_encoder.register_forward_pre_hook(lambda *args: ran.append("text_encoder"))
    try:
        pipe(image=reference_image(), mode="ti2v", height=48, width=48, num_frames=9, num_inference_steps=1)
    except ValueError as error:
        assert not ran
        return str(error)
    finally:
        handle.remove()
    raise AssertionError("48 x 48 was not refused")


def two_process_worker(rank: int, port: int, folder: str) -> None:
    os.environ.update(
        {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "LOCAL_RANK": str(rank),
         "WORLD_SIZE": str(WORLD_SIZE)}
    )  # fmt: skip
    pipe = streamed_pipeline()
    assert enable_context_parallel(pipe, "ulysses") == WORLD_SIZE
    results = generate_all(pipe)
    results["refused"] = refused_window(pipe)
    finish_context_parallel()
    torch.save(results, os.path.join(folder, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Every case's results in each of 2 processes (gloo), and in one process without context parallelism."""
    folder = tmp_path_factory.mktemp("context-parallel")
    mp.spawn(two_process_worker, args=(free_port(), str(folder)), nprocs=WORLD_SIZE, join=True)
    threads = torch.get_num_threads()
    try:
        single = generate_all(streamed_pipeline())
    finally:
        torch.set_num_threads(threads)
    ranks = [torch.load(folder / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]
    return single, ranks


@pytest.mark.slow
@pytest.mark.parametrize("case", ["animation", "ti2v", "long-blend", "long-carry", "transformer"])
def test_two_processes_give_the_video_of_one(two_processes, case):
    single, ranks = two_processes
    for results in ranks:  # every process ends with the whole video
        torch.testing.assert_close(results[case], single[case], **TOLERANCE)
    # The streams speak: without the pose inputs the video differs by far more than the tolerance.
    if case == "animation":
        assert (single["animation"] - single["ti2v"]).abs().max() > 1e-2


@pytest.mark.slow
def test_a_window_whose_tokens_do_not_split_is_refused_before_any_model_runs(two_processes):
    _, ranks = two_processes
    for results in ranks:
        assert "splits each window's 27 tokens (3 latent frames x 3 x 3 patches) into 2 equal" in results["refused"]


# ----------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A reference image and a 9-frame rendered pose video, as `generate_args` names them."""
    return write_generate_inputs(tmp_path_factory.mktemp("inputs"))


@pytest.fixture
def no_model_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the pipeline was loaded before the launch was refused")

    monkeypatch.setattr(AnimateXPipeline, "from_pretrained", refuse)


@pytest.mark.parametrize(
    ("world_size", "extra", "message"),
    [
        (None, [], "this is 1 process: launch it with `torchrun --nproc-per-node N"),
        ("1", [], "this is 1 process"),
        ("3", [], "equal share of the transformer's 2 attention heads: run 2 processes, or use ring"),
        ("2", ["--size", "48x48"], "splits each window's 27 tokens (3 latent frames x 3 x 3 patches) into 2"),
        ("2", ["--context-parallel", "ring"], "'native', which does not return the log-sum-exp"),
        ("2", ["--cpu-offload"], "drop --cpu-offload and --cache-threshold"),
    ],
    ids=["no-torchrun", "one-process", "heads", "tokens", "ring-on-sdpa", "offload"],
)
def test_the_command_refuses_a_bad_launch_before_loading(
    model_dir, inputs, tmp_path, capsys, monkeypatch, no_model_load, world_size, extra, message
):
    if world_size is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("WORLD_SIZE", world_size)
    args = generate_args(model_dir, inputs, tmp_path / "out.mp4", "--context-parallel", "ulysses", *extra)
    assert main(args) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not dist.is_initialized() and not (tmp_path / "out.mp4").exists()


@pytest.mark.slow
def test_torchrun_writes_the_video_of_one_process_from_the_first_only(model_dir, inputs, tmp_path):
    single, split = tmp_path / "single" / "out.mp4", tmp_path / "split" / "out.mp4"
    single.parent.mkdir()
    split.parent.mkdir()
    assert main(generate_args(model_dir, inputs, single)) == 0
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(WORLD_SIZE)]
    generate = generate_args(model_dir, inputs, split, "--context-parallel", "ulysses")
    command = [*launch, "-m", "animatex_pp.cli", *generate]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("WORLD_SIZE", None)
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_array_equal(read_video(split)[0], read_video(single)[0])
    # Only the first process writes: one line per file, and nothing else (no temporary files) in the folder.
    assert done.stdout.count(f"wrote {split} ") == 1, done.stdout
    assert done.stdout.count("wrote ") == 2, done.stdout  # the video and its preview
    assert sorted(path.name for path in split.parent.iterdir()) == ["out.mp4", "out.preview.png"]
