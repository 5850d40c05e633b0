"""Context-parallel generation: one video's transformer tokens split across the processes of `torchrun`.

diffusers does the splitting: `ModelMixin.enable_parallelism(config=ContextParallelConfig(...))` hooks the
transformer so that block 0 receives each process's share of the token sequence (and of the rotary embedding),
every self-attention becomes Ulysses attention (an all-to-all trades the sequence split for a head split, each
process attends over all tokens with its share of the heads, and a second all-to-all trades back) or ring attention
(each process keeps its queries and merges the attention over every process's keys and values by their
log-sum-exp), and `proj_out` gathers the whole sequence again. Every process runs the whole pipeline on the same
inputs and seed; only the transformer's blocks work on a share, and every process ends with the same video, which
the first one writes (`is_main_process`). See docs/pipeline.md for the command and the expected speed-up.

What this module adds, and why:

- the process group (from torchrun's environment) and the device mesh on the transformer's device type;
- checks made before any work: launched with at least two processes, a degree that divides the heads (Ulysses),
  an attention backend that runs the mode, and windows whose tokens divide by the degree (`check_window_tokens`,
  called by the pipeline);
- the implicit pose indicator's split: its one vector per latent frame is broadcast over the frame's tokens inside
  each IPI block, which needs the frame of every token of a process's share (`local_frame_embedding`);
- the plan without Wan's per-token-timestep entry, and diffusers 0.42's device count on a CPU-only machine
  (`_count_the_cpu_as_one_device`).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist
from diffusers import ContextParallelConfig
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.models.attention_dispatch import _AttentionBackendRegistry
from diffusers.utils import logging

from animatex_pp.models.transformer import AnimateXTransformer3DModel, resolve_attention_backend

CONTEXT_PARALLEL_MODES = ("ulysses", "ring")
# Ring attention merges the partial attention over each process's keys and values by their log-sum-exp, so it
# needs a backend whose attention op returns it (diffusers 0.42 `TemplatedRingAttention` calls the forward op with
# return_lse=True). Of the backends that support context parallelism, PyTorch SDPA ("native") and "_native_npu"
# refuse that; these return it (all of them CUDA kernels).
RING_ATTENTION_BACKENDS = frozenset(
    {
        "flash",
        "flash_hub",
        "flash_varlen_hub",
        "_flash_3_hub",
        "_flash_3_varlen_hub",
        "_native_cudnn",
        "_native_flash",
        "sage",
        "sage_hub",
    }
)
# torch.distributed's collectives on these devices: NCCL between GPUs, gloo between CPU processes.
PROCESS_GROUP_BACKENDS = {"cuda": "nccl", "cpu": "gloo"}
LAUNCH_HINT = "launch it with `torchrun --nproc-per-node N ...` (N >= 2 processes, one per GPU)"
IPI_HOOK_NAME = "animatex_ipi_frames_of_the_local_tokens"


def launched_world_size() -> int:
    """The number of processes of this run: the process group's, else torchrun's WORLD_SIZE, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True in the process that writes the outputs: the first one of a context-parallel run, or the only one."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def context_parallel_backends(mode: str) -> list[str]:
    """The diffusers attention backends that run `mode` ("ulysses" or "ring")."""
    supported = set(_AttentionBackendRegistry._supports_context_parallel)
    return sorted(supported if mode == "ulysses" else supported & RING_ATTENTION_BACKENDS)


def check_context_parallel(mode: str, world_size: int, num_heads: int, backend: str, device_type: str) -> None:
    """A ValueError that says what to do unless `world_size` processes can run `mode` for this transformer."""
    if mode not in CONTEXT_PARALLEL_MODES:
        raise ValueError(f"context parallelism is one of {CONTEXT_PARALLEL_MODES}, got {mode!r}")
    if world_size < 2:
        raise ValueError(
            f"context parallelism ({mode}) splits one video across processes, but this is {world_size} process: "
            f"{LAUNCH_HINT}"
        )
    if device_type not in PROCESS_GROUP_BACKENDS:
        raise ValueError(
            f"context parallelism runs on {' or '.join(PROCESS_GROUP_BACKENDS)} devices, not {device_type}: move the "
            "pipeline to one of them first"
        )
    if mode == "ulysses" and num_heads % world_size:
        divisors = [n for n in range(2, num_heads + 1) if num_heads % n == 0]
        raise ValueError(
            f"Ulysses attention gives each of the {world_size} processes an equal share of the transformer's "
            f"{num_heads} attention heads: run {', '.join(map(str, divisors))} processes, or use ring"
        )
    backends = context_parallel_backends(mode)
    if backend not in backends:
        why = (
            "does not return the log-sum-exp that ring attention merges partial attentions by"
            if mode == "ring" and backend in context_parallel_backends("ulysses")
            else "has no context-parallel version in diffusers"
        )
        other = " (or use ulysses)" if mode == "ring" else ""
        raise ValueError(
            f"{mode} attention cannot run on the attention backend {backend!r}, which {why}: set the "
            f"ANIMATEX_ATTENTION_BACKEND environment variable to one of {backends}{other}"
        )


def check_folder_context_parallel(folder: str | os.PathLike, mode: str, device: str, dtype: torch.dtype) -> int:
    """`check_context_parallel` for a pipeline folder before it loads, from its transformer's config; the degree."""
    config = json.loads((Path(folder) / "transformer" / "config.json").read_text())
    device = torch.device(device)
    backend = resolve_attention_backend(config.get("attention_backend", "auto"), device, dtype)
    world_size = launched_world_size()
    check_context_parallel(mode, world_size, config["num_attention_heads"], backend, device.type)
    return world_size


def process_device(device: str) -> str:
    """The device of this process in a torchrun launch: "cuda" becomes the GPU of its LOCAL_RANK."""
    if device != "cuda":
        return device
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"


def context_parallel_degree(transformer: AnimateXTransformer3DModel) -> int:
    """Over how many processes the transformer's tokens are split (1 without context parallelism)."""
    parallel_config = getattr(transformer, "_parallel_config", None)
    config = getattr(parallel_config, "context_parallel_config", None)
    return 1 if config is None else config.ring_degree * config.ulysses_degree


def check_window_tokens(
    degree: int, num_latent_frames: int, latent_height: int, latent_width: int, patch_size: tuple[int, int, int]
) -> None:
    """A ValueError unless a window's tokens split into `degree` equal shares (diffusers cuts them in equal chunks)."""
    p_t, p_h, p_w = patch_size
    grid = (num_latent_frames // p_t, latent_height // p_h, latent_width // p_w)
    tokens = math.prod(grid)
    if degree > 1 and tokens % degree:
        raise ValueError(
            f"context parallelism splits each window's {tokens} tokens ({grid[0]} latent frames x {grid[1]} x "
            f"{grid[2]} patches) into {degree} equal shares, and {tokens} does not divide by {degree}: choose a "
            f"height, width or frame count whose token count does, or another number of processes"
        )


def local_frame_embedding(pose_embedding: torch.Tensor, local_tokens: int, rank: int, degree: int) -> torch.Tensor:
    """The IPI's per-frame vectors for process `rank`'s share of the tokens: (B, F_lat, D) -> (B, G, D).

    `AnimateXTransformerBlock` adds the IPI by viewing its tokens as (B, G, tokens / G, D) and broadcasting one
    vector per group. The whole sequence has one group per latent frame; a process holds the `local_tokens` tokens
    from `rank * local_tokens` on, a share that may start and end inside a frame (21 latent frames do not split in
    2, 4 or 8). So the share is cut into groups of g = gcd(tokens per frame, local_tokens) tokens, each inside one
    frame, and each group gets its frame's vector: still a broadcast, not a per-token copy. By hand because
    diffusers' `ContextParallelInput` only cuts a tensor into equal chunks, which match frames only when the frames
    divide by the degree.
    """
    num_frames = pose_embedding.shape[1]
    tokens_per_frame = local_tokens * degree // num_frames
    group = math.gcd(tokens_per_frame, local_tokens)
    first = rank * local_tokens
    frames = torch.arange(first, first + local_tokens, group, device=pose_embedding.device) // tokens_per_frame
    return pose_embedding.index_select(1, frames)


class _LocalFrameEmbeddingHook(ModelHook):
    """Replaces an IPI block's `pose_embedding` with `local_frame_embedding` of this process's share of the tokens.

    Registered before diffusers' hooks, so on block 0 it runs inside the split of `hidden_states` and sees the share.
    """

    def __init__(self, config: ContextParallelConfig):
        super().__init__()
        self.config = config

    def initialize_hook(self, module):
        self.signature = inspect.signature(type(module).forward)
        return module

    def pre_forward(self, module, *args, **kwargs):
        bound = self.signature.bind(module, *args, **kwargs)
        pose_embedding = bound.arguments.get("pose_embedding")
        if pose_embedding is None:
            return args, kwargs
        # diffusers' EquipartitionSharder hands out the shares in the rank order of this flattened mesh.
        mesh = self.config._flattened_mesh
        rank = dist.get_rank(mesh.get_group())
        local_tokens = bound.arguments["hidden_states"].shape[1]
        bound.arguments["pose_embedding"] = local_frame_embedding(pose_embedding, local_tokens, rank, mesh.size())
        return bound.args[1:], bound.kwargs


def context_parallel_plan(transformer: AnimateXTransformer3DModel) -> dict:
    """Wan's plan (split block 0's tokens and the rotary embedding, gather `proj_out`) without its "" entry.

    That entry splits a per-token timestep (B, L) at the model's input, which only Wan2.2's expanded timesteps
    have; this model takes one timestep per sample (B,), which the entry never splits (it only logs that it did
    not), and its output hook accepts tensors and tuples only, so a `return_dict=True` call would fail on the
    `Transformer2DModelOutput`.
    """
    return {name: entry for name, entry in transformer._cp_plan.items() if name != ""}


@contextlib.contextmanager
def _count_the_cpu_as_one_device() -> Iterator[None]:
    """Count the CPU as one accelerator device while diffusers sets up parallelism, on a machine without one.

    diffusers 0.42's `ModelMixin._resolve_parallel_config` records each process's device as `rank %
    torch.accelerator.device_count()`, which is 0 without an accelerator: a ZeroDivisionError, though the device it
    records is read by tensor-parallel loading only (the mesh, passed in, decides where the collectives run).
    """
    if torch.accelerator.device_count() > 0:
        yield
        return
    device_count = torch.accelerator.device_count
    torch.accelerator.device_count = lambda: 1
    try:
        yield
    finally:
        torch.accelerator.device_count = device_count


def _register_ipi_hooks(transformer: AnimateXTransformer3DModel, config: ContextParallelConfig) -> list:
    """A `_LocalFrameEmbeddingHook` on every block that adds the IPI; the blocks."""
    if transformer.implicit_pose_indicator is None:
        return []
    blocks = [
        transformer.blocks[index]
        for index in range(transformer.config.ipi_block_start, transformer.config.ipi_block_end)
    ]
    for block in blocks:
        HookRegistry.check_if_exists_or_initialize(block).register_hook(
            _LocalFrameEmbeddingHook(config), IPI_HOOK_NAME
        )
    return blocks


def enable_context_parallel(pipe, mode: str = "ulysses") -> int:
    """Split `pipe`'s transformer across the processes of this torchrun launch; returns the degree (their number).

    Call it in every process, after moving the pipeline to this process's device (`cuda:LOCAL_RANK`, or the CPU),
    and then call the pipeline alike in every process (same inputs and seed). The degree is the world size. Refused
    with a ValueError before any work when not launched by torchrun with two or more processes, when the degree
    does not divide the heads (Ulysses), when the attention backend cannot run `mode` (ring needs one that returns
    the log-sum-exp: a CUDA kernel, not SDPA), or with a block cache enabled (each process would skip blocks on its
    own share's change, and the processes' collectives would no longer match).
    """
    transformer = pipe.transformer
    device, dtype = transformer.device, transformer.dtype
    backend = resolve_attention_backend(transformer.config.attention_backend, device, dtype)
    world_size = launched_world_size()
    check_context_parallel(mode, world_size, transformer.config.num_attention_heads, backend, device.type)
    if context_parallel_degree(transformer) > 1:
        raise ValueError("context parallelism is already enabled on this pipeline's transformer")
    if transformer.is_cache_enabled:
        raise ValueError(
            "context parallelism cannot run with a block cache (each process would skip blocks on its own share of "
            "the tokens, and the processes would wait for each other forever): call transformer.disable_cache()"
        )

    if not dist.is_initialized():
        backend_name = PROCESS_GROUP_BACKENDS[device.type]
        dist.init_process_group(backend_name, device_id=device if device.type == "cuda" else None)
    mesh_shape = (world_size, 1) if mode == "ring" else (1, world_size)
    config = ContextParallelConfig(
        ring_degree=mesh_shape[0],
        ulysses_degree=mesh_shape[1],
        mesh=dist.device_mesh.init_device_mesh(device.type, mesh_shape, mesh_dim_names=("ring", "ulysses")),
    )
    ipi_blocks = _register_ipi_hooks(transformer, config)
    # torch deprecates the gather diffusers 0.42 uses, once per process: noise for a user who cannot change it.
    warnings.filterwarnings("ignore", message=r".*all_gather_tensor` is deprecated", category=FutureWarning)
    verbosity = logging.get_verbosity()
    # diffusers warns that `enable_parallelism` is experimental; the user asked for this through our option.
    logging.set_verbosity_error()
    try:
        with _count_the_cpu_as_one_device():
            transformer.enable_parallelism(config=config, cp_plan=context_parallel_plan(transformer))
    except BaseException:
        for block in ipi_blocks:
            block._diffusers_hook.remove_hook(IPI_HOOK_NAME, recurse=False)
        raise
    finally:
        logging.set_verbosity(verbosity)
    return world_size


def finish_context_parallel() -> None:
    """End a context-parallel run in every process: wait for all, then close the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
