"""The process world and DeepSpeed, applied from outside the model (torchtitan's separation).

One code path whatever the ZeRO stage: every run, even a single process, is a DeepSpeed engine in a
`torch.distributed` world (stage 0 is plain data-parallel). The world comes from the launcher that made it
(`torchrun`, `deepspeed`: RANK / WORLD_SIZE / LOCAL_RANK in the environment), or `trainer.num_processes=N` starts N
local workers through torch's elastic launch API, or a single process makes a world of one.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from animatex_pp.training.schema import DeepSpeedConfig

# The environment variables `init_world` set itself (none when a launcher made the world).
_OWN_WORLD: dict[str, str] = {}
# ZeRO-3 with non-reentrant gradient checkpointing and a frozen base fails in older DeepSpeed releases.
ZERO3_MIN_DEEPSPEED = "0.19.8"


@dataclasses.dataclass(frozen=True)
class World:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_externally() -> bool:
    """True when a launcher (torchrun, deepspeed, the elastic agent) has set up this process's world."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def launcher_rank() -> int:
    """This process's rank as its launcher set it (0 without a launcher), readable before the world is joined."""
    return int(os.environ["RANK"]) if launched_externally() else 0


def wait_for_path(path: Path, what: str, timeout_s: float = 3600.0) -> None:
    """Block until `path` exists (another rank is making it); a TimeoutError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f} s for {path} ({what}): see rank 0's output for why")
        time.sleep(1.0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_world(timeout_minutes: float) -> World:
    """Join (or, alone, create) the process group with the backend the device needs.

    `timeout_minutes` bounds every collective (`trainer.collective_timeout_minutes`): rank 0 alone validates and
    exports while the other ranks wait in their next collective, and NCCL's own default (10 minutes) would end a run
    whose export of the 14B model takes longer.
    """
    import deepspeed
    import deepspeed.ops

    if not launched_externally():
        # A world of one, undone by `close_world`: a later run in this process must not take it for a launcher's.
        _OWN_WORLD.update(
            RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port())
        )
        os.environ.update(_OWN_WORLD)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
        # DeepSpeed would otherwise build its shared-memory communication op at init, which takes minutes on CPU.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False,
                                   timeout=datetime.timedelta(minutes=timeout_minutes))  # fmt: skip
    return World(
        rank=torch.distributed.get_rank(),
        world_size=torch.distributed.get_world_size(),
        local_rank=local_rank,
        device=device,
    )


def close_world(engine) -> None:
    """End the engine and the process group in the order DeepSpeed needs (else offload runs exit with code 250)."""
    if engine is not None:
        engine.destroy()
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
        # DeepSpeed caches the groups it cloned from the world; a later run in this process makes a new world.
        from deepspeed.utils import groups

        groups._WORLD_GROUP = None
        groups._ZERO_PARAM_INTRA_PARALLEL_GROUP = None
    for name in _OWN_WORLD:
        os.environ.pop(name, None)
    _OWN_WORLD.clear()


def available_processes() -> int:
    """How many local workers this machine can run: one per CUDA device, else one per CPU core."""
    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return os.cpu_count() or 1


def bf16_enabled(setting: str, device: torch.device) -> bool:
    """`deepspeed.bf16`: auto (on CUDA when the GPU computes in bf16 natively), true or false."""
    if setting.lower() == "auto":
        # not where bf16 is only emulated (V100, T4): slower than fp32 there
        return device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    return setting.lower() == "true"


def check_deepspeed_version(stage: int) -> None:
    """Refuse a ZeRO-3 run on a DeepSpeed older than `ZERO3_MIN_DEEPSPEED`, before any model loads."""
    import deepspeed
    from packaging.version import Version

    if stage == 3 and Version(deepspeed.__version__) < Version(ZERO3_MIN_DEEPSPEED):
        raise RuntimeError(
            f"deepspeed.stage=3 needs DeepSpeed >= {ZERO3_MIN_DEEPSPEED} (ZeRO-3 with gradient checkpointing and a "
            f"frozen base fails before it), but {deepspeed.__version__} is installed: pip install "
            f"'deepspeed>={ZERO3_MIN_DEEPSPEED}', or train with deepspeed=zero2"
        )


def deepspeed_config(ds: DeepSpeedConfig, batch_size: int, device: torch.device) -> dict[str, Any]:
    """The DeepSpeed config dict for the `deepspeed` config group (its combinations are checked by the schema).

    bf16 is DeepSpeed's `torch_autocast`, not its `bf16` mode: that mode casts every parameter to bf16, which rounds
    the frozen weights and the modules Wan keeps in fp32 (`_keep_in_fp32_modules`: norms, time embedder, modulation
    table), and the export would write them rounded. Under autocast the parameters keep the dtype they were loaded
    in, the trainable ones fp32 (`model.cast_trainable_to_fp32`), and the matrix products run in bf16.
    """
    check_deepspeed_version(ds.stage)
    zero: dict[str, Any] = {"stage": ds.stage}
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": device.type == "cuda"}
    if ds.offload_param:
        zero["offload_param"] = {"device": "cpu", "pin_memory": device.type == "cuda"}
    if ds.stage == 3:
        # export gathers the weights itself; no 16-bit copy of the whole model on every save
        zero["stage3_gather_16bit_weights_on_model_save"] = False
    return {
        "train_micro_batch_size_per_gpu": batch_size,
        "gradient_accumulation_steps": ds.gradient_accumulation_steps,
        "gradient_clipping": ds.gradient_clipping,
        "zero_optimization": zero,
        "torch_autocast": {"enabled": bf16_enabled(ds.bf16, device), "dtype": "bfloat16"},
        # a torch optimizer is passed in; with CPU offload DeepSpeed would otherwise insist on its own CPU Adam
        "zero_force_ds_cpu_optimizer": False,
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


def register_zero3_external_parameters(model: torch.nn.Module) -> None:
    """Tell ZeRO-3 about parameters a module reads outside its own forward, so they are gathered in time.

    `nn.MultiheadAttention` (the IPI's encoder layers) reads `out_proj.weight` in its own forward, not through
    `out_proj.forward`, where ZeRO-3 would have gathered it.
    """
    import deepspeed

    for module in model.modules():
        if isinstance(module, torch.nn.MultiheadAttention):
            deepspeed.zero.register_external_parameter(module, module.out_proj.weight)
            if module.out_proj.bias is not None:
                deepspeed.zero.register_external_parameter(module, module.out_proj.bias)


def _run_worker(function: Callable[[Any], Any], argument: Any) -> Any:
    return function(argument)


def launch_local(function: Callable[[Any], Any], argument: Any, num_processes: int, run_dir: str) -> Any:
    """Run `function(argument)` in `num_processes` local workers (torch elastic); return rank 0's result."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=num_processes,
        run_id=f"animatex-pp-{os.getpid()}",
        rdzv_backend="c10d",
        rdzv_endpoint=f"127.0.0.1:{_free_port()}",
        max_restarts=0,
        monitor_interval=0.5,
        start_method="spawn",
        # each worker's output goes to RUN_DIR/worker_logs, and rank 0's is also shown
        logs_specs=DefaultLogsSpecs(log_dir=os.path.join(run_dir, "worker_logs"), tee=Std.ALL, local_ranks_filter={0}),
    )
    results = elastic_launch(config, _run_worker)(function, argument)
    return results[0]
