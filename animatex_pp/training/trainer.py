"""`train(cfg) -> metrics`: the whole training run, from a composed Hydra config (`conf/train.yaml`).

The run, in order: the world (launching local workers first when `trainer.num_processes` > 1), the pipeline whose
frozen encoders make the inputs, the data (a precompute cache, or clips encoded on the fly) and the task-mixing
sampler, the adapters and parameter groups, the DeepSpeed engine, resume, then the loop: one task per micro-step on
every rank, the loss, backward and step, logging, checkpoints and validation media; at the end a checkpoint, the
export and `metrics.json`.

Every rank writes nothing but its checkpoint shards; rank 0 writes logs, TensorBoard events, media, metrics.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from animatex_pp.data.clips import collate
from animatex_pp.io.files import atomic_output
from animatex_pp.training import checkpoint as ckpt
from animatex_pp.training.config import clip_config
from animatex_pp.training.distributed import (
    World,
    available_processes,
    close_world,
    deepspeed_config,
    init_world,
    launch_local,
    launched_externally,
    register_zero3_external_parameters,
)
from animatex_pp.training.model import apply_adapters, build_pipeline, param_groups, trainable_table
from animatex_pp.training.objective import FlowObjective
from animatex_pp.training.step import ConditionDropout, training_loss

logger = logging.getLogger("animatex_pp.training")

METRICS_FILE = "metrics.json"
LOSSES_FILE = "losses.jsonl"
# Config sections a resumed run must share with its checkpoint (what the weights and their optimizer state mean).
TRACKED_SECTIONS = ("model", "adapter", "optim", "deepspeed", "task_mix", "seed")


def train(cfg: DictConfig | dict) -> dict[str, Any]:
    """Run a training (or, with `mode=plan`, print the plan) and return rank 0's metrics."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    if config["trainer"].get("plan"):
        config["mode"] = "plan"  # `trainer.plan=true` is the same as `mode=plan`
    if config["mode"] == "train":
        build_synthx_if_missing(config["data"])
    check_config(config)
    Path(config["run_dir"]).mkdir(parents=True, exist_ok=True)
    if config["mode"] == "plan":
        from animatex_pp.training.plan import plan

        return plan(config)
    num_processes = config["trainer"]["num_processes"]
    if num_processes > 1 and not launched_externally():
        return launch_local(run_worker, config, num_processes, config["run_dir"])
    return run_worker(config)


def build_synthx_if_missing(data: dict[str, Any]) -> None:
    """Build the SynthX benchmark a `data=synthx` config names when its metadata does not exist yet (a run on a
    precompute cache needs none)."""
    synthx = data.get("synthx") or {}
    if not synthx.get("build_if_missing") or data.get("cache") or Path(data["metadata"]).exists():
        return
    from animatex_pp.synthx.build import BuildConfig, build

    folder = Path(synthx["folder"])
    if folder.exists():
        raise ValueError(f"data.synthx.folder {folder} exists but has no {Path(data['metadata']).name}: delete it, "
                         "or point data.metadata at a SynthX train.jsonl")  # fmt: skip
    folder.parent.mkdir(parents=True, exist_ok=True)
    logger.info("building SynthX into %s (data.synthx)", folder)
    names = ("size", "frames", "train", "test", "seed")
    build(folder, BuildConfig(**{name: synthx[name] for name in names}))


def check_config(config: dict[str, Any]) -> None:
    """Refuse an inconsistent config before any model loads, naming the option."""
    if config.get("mode") not in ("train", "plan"):
        raise ValueError(f"mode must be train or plan, got {config.get('mode')!r}")
    trainer = config["trainer"]
    for name in ("max_steps", "num_processes", "log_every", "checkpoint_every", "keep_checkpoints"):
        if not isinstance(trainer[name], int) or trainer[name] < 1:
            raise ValueError(f"trainer.{name} must be a positive integer, got {trainer[name]!r}")
    if trainer["nonfinite"] not in ("skip", "stop"):
        raise ValueError(f"trainer.nonfinite must be skip or stop, got {trainer['nonfinite']!r}")
    data = config["data"]
    if config["mode"] == "train" and not data.get("cache") and data.get("metadata") in (None, "???"):
        raise ValueError("give data.metadata=PATH (a .jsonl/.csv of clips, docs/data.md) or data.cache=FOLDER")
    for name in ("metadata", "cache"):
        path = data.get(name)
        if config["mode"] == "train" and path not in (None, "???") and not Path(path).exists():
            raise FileNotFoundError(
                f"data.{name}: {'metadata file' if name == 'metadata' else 'cache'} not found: {path}"
            )
    if not isinstance(data["batch_size"], int) or data["batch_size"] < 1:
        raise ValueError(f"data.batch_size must be a positive integer, got {data['batch_size']!r}")
    resume = config.get("resume")
    if resume not in (None, "auto") and not Path(resume).is_dir():
        raise ValueError(f"resume={resume}: no checkpoint folder there; use resume=auto or a checkpoint path")
    FlowObjective(**trainer["objective"])
    ConditionDropout(**trainer["dropout"])
    if config["mode"] == "train" and not launched_externally() and trainer["num_processes"] > available_processes():
        raise ValueError(
            f"trainer.num_processes={trainer['num_processes']} but this machine can start {available_processes()} "
            "local workers (one per GPU, or per CPU core without one): lower it, or launch with torchrun/deepspeed"
        )
    if trainer["ema"]["enabled"] and config["deepspeed"]["stage"] == 3:
        raise ValueError("trainer.ema needs whole parameters on every rank: use ZeRO 0-2 (deepspeed=zero2) with it")
    validation = config.get("validation", {})
    if config["mode"] == "train" and validation.get("every"):
        from animatex_pp.training.validation import check_validation

        check_validation(validation)


def _setup_logging(run_dir: Path, world: World) -> None:
    if world.is_main:
        handler = logging.FileHandler(run_dir / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("animatex_pp").addHandler(handler)
        logging.getLogger("animatex_pp").setLevel(logging.INFO)


def _dataset(config: dict[str, Any], pipeline):
    """The dataset and, when clips are encoded on the fly, the encoder."""
    data = config["data"]
    clips = clip_config(data, config["seed"])
    if data.get("cache"):
        from animatex_pp.data.cache import CachedClipDataset

        return CachedClipDataset(data["cache"], clips), None
    from animatex_pp.data.clips import ClipDataset
    from animatex_pp.data.encode import ConditionEncoder
    from animatex_pp.data.metadata import load_metadata

    return ClipDataset(load_metadata(data["metadata"]), clips), ConditionEncoder(pipeline)


def _check_model_fits_data(transformer, config: dict[str, Any]) -> None:
    num_frames = config["data"]["clips"]["num_frames"]
    if transformer.implicit_pose_indicator is not None and transformer.config.ipi_num_frames != num_frames:
        raise ValueError(
            f"data.clips.num_frames={num_frames} but the model's IPI takes {transformer.config.ipi_num_frames}-frame "
            f"windows: set model.transformer.ipi_num_frames={num_frames} (and ipi_num_latent_frames="
            f"{(num_frames - 1) // 4 + 1}) for a tiny model, or train on {transformer.config.ipi_num_frames} frames"
        )


def _optimizer(groups, optim: dict[str, Any]):
    optimizer = torch.optim.AdamW(
        [{"params": list(group.parameters), "lr": group.lr, "name": group.name} for group in groups],
        betas=tuple(optim["betas"]),
        weight_decay=optim["weight_decay"],
        eps=optim["eps"],
    )
    warmup = optim.get("warmup_steps", 0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(1, warmup)))
    return optimizer, scheduler


def _tracked(config: dict[str, Any]) -> dict[str, Any]:
    return {section: config[section] for section in TRACKED_SECTIONS}


def _resume(engine, config: dict[str, Any], root: Path, ema) -> tuple[int, dict | None]:
    """(first micro-step, sampler state) from the checkpoint `resume` names; refuses a changed config."""
    resume = config.get("resume")
    latest = ckpt.latest_checkpoint(root)
    if resume is None:
        if latest is not None:
            raise ValueError(
                f"{root} already holds checkpoint {latest.name}: resume it with resume=auto, or train in another "
                "run folder (run_dir=... or hydra.run.dir=...)"
            )
        return 0, None
    path = latest if resume == "auto" else Path(resume)
    if path is None:
        logger.info("resume=auto: no checkpoint in %s yet, starting fresh", root)
        return 0, None
    state = ckpt.read_state(path)
    differences = ckpt.config_differences(state["config"], _tracked(config))
    if differences:
        raise ValueError(
            f"checkpoint {path} was trained with another config ({'; '.join(differences)}): resume with the same "
            "model, adapter, optimizer, DeepSpeed and task-mix settings, or start a new run folder"
        )
    ckpt.load_checkpoint(engine, path)
    if ema is not None:
        ema.load(path)
    logger.info("resumed from %s at step %d", path, state["step"])
    return state["step"], state["sampler"]


def run_worker(config: dict[str, Any]) -> dict[str, Any]:
    """One rank's training run (every rank runs this; the local launcher spawns it per process)."""
    import deepspeed

    from animatex_pp.data.sampler import TaskMixingSampler

    world = init_world()
    engine = None
    try:
        run_dir = Path(config["run_dir"])
        _setup_logging(run_dir, world)
        trainer, data = config["trainer"], config["data"]
        torch.manual_seed(config["seed"])
        pipeline = build_pipeline(config["model"])
        transformer = pipeline.transformer
        _check_model_fits_data(transformer, config)
        dataset, encoder = _dataset(config, pipeline)
        if encoder is not None:
            for name in ("vae", "text_encoder", "image_encoder", "motion_encoder"):
                module = getattr(pipeline, name, None)
                if module is not None:
                    module.to(world.device).requires_grad_(False)

        adapter = config["adapter"]
        apply_adapters(transformer, adapter.get("lora"), adapter["train_streams"], adapter.get("train_patterns", []))
        if config["model"].get("gradient_checkpointing"):
            transformer.enable_gradient_checkpointing()
        transformer.train()
        groups = param_groups(transformer, adapter.get("param_groups", []), config["optim"]["lr"])
        if world.is_main:
            logger.info("trainable parameters:\n%s", trainable_table(transformer, groups))
            print(trainable_table(transformer, groups), flush=True)

        accumulation = config["deepspeed"].get("gradient_accumulation_steps", 1)
        micro_steps = trainer["max_steps"] * accumulation
        optimizer, scheduler = _optimizer(groups, config["optim"])
        if config["deepspeed"]["stage"] == 3:
            register_zero3_external_parameters(transformer)
        engine, _, _, _ = deepspeed.initialize(
            model=transformer,
            optimizer=optimizer,
            lr_scheduler=scheduler,
            config=deepspeed_config(config["deepspeed"], data["batch_size"], world.device),
        )
        ema = None
        if trainer["ema"]["enabled"]:
            from animatex_pp.training.ema import TrainableEMA

            ema = TrainableEMA(engine.module, trainer["ema"]["decay"])
        root = run_dir / "checkpoints"
        root.mkdir(exist_ok=True)
        start, sampler_state = _resume(engine, config, root, ema)

        sampler = TaskMixingSampler(
            dataset.tasks, dataset.buckets, config["task_mix"]["weights"], data["batch_size"],
            world_size=world.world_size, rank=world.rank, seed=config["seed"], num_steps=micro_steps,
        )  # fmt: skip
        if sampler_state is not None:
            sampler.load_state_dict(sampler_state)  # the step to continue from, after checking seed and world
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=data.get("num_workers", 0), collate_fn=collate)
        metrics = _loop(config, world, engine, encoder, loader, sampler, start, micro_steps, accumulation, root,
                        pipeline, ema)  # fmt: skip
        if trainer["export"]["enabled"]:
            with ema.swapped_in() if ema is not None else contextlib.nullcontext():
                exported = ckpt.export(pipeline, engine.module, run_dir / "export", trainer["export"]["merge_lora"],
                                       world.is_main)  # fmt: skip
            metrics["export"] = str(exported) if exported else None
        if world.is_main:
            with atomic_output(run_dir / METRICS_FILE) as temporary:
                temporary.write_text(json.dumps(metrics, indent=1))
        return metrics
    finally:
        close_world(engine)


def _all_ranks_finite(loss: torch.Tensor) -> bool:
    flag = torch.tensor([1.0 if torch.isfinite(loss).item() else 0.0])
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    return bool(flag.item())


def _mean_over_ranks(value: float) -> float:
    tensor = torch.tensor([value], dtype=torch.float64)
    torch.distributed.all_reduce(tensor)
    return tensor.item() / torch.distributed.get_world_size()


def _loop(config, world, engine, encoder, loader, sampler, start, micro_steps, accumulation, root, pipeline, ema):
    trainer, data = config["trainer"], config["data"]
    objective = FlowObjective(**trainer["objective"])
    dropout = ConditionDropout(**trainer["dropout"])
    run_dir = Path(config["run_dir"])
    writer = None
    if world.is_main and config["logger"].get("tensorboard"):
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tensorboard"))
    losses_path = run_dir / LOSSES_FILE
    if world.is_main:
        # A resumed run repeats the steps after its checkpoint: the interrupted run's record of them is dropped.
        kept = []
        if start > 0 and losses_path.is_file():
            kept = [line for line in losses_path.read_text().splitlines() if json.loads(line)["step"] < start]
        with atomic_output(losses_path) as temporary:
            temporary.write_text("".join(f"{line}\n" for line in kept))
    history: dict[str, list[float]] = defaultdict(list)
    nonfinite = in_a_row = replaced = 0
    wait = encode = compute = 0.0
    started = time.perf_counter()
    bar = tqdm(total=micro_steps, initial=start, desc="training", unit="step", disable=not world.is_main)
    iterator = iter(loader)
    for step in range(start, micro_steps):
        waited = time.perf_counter()
        batch = next(iterator)
        began = time.perf_counter()
        wait += began - waited
        task = batch["task"][0]
        replaced += int(batch["replaced"].sum())
        if encoder is not None:
            inputs = encoder.encode(batch, world.device)
        else:
            inputs = {name: value.to(world.device) for name, value in batch.items() if isinstance(value, torch.Tensor)}
        encoded = time.perf_counter()
        encode += encoded - began
        began = encoded
        loss = training_loss(engine, engine.module, inputs, objective, dropout, config["seed"], step, world.rank)
        if not _all_ranks_finite(loss.detach()):
            nonfinite += 1
            in_a_row += 1
            logger.warning("step %d: the loss is not finite on some rank; the step is skipped", step)
            if trainer["nonfinite"] == "stop" or in_a_row > trainer["max_nonfinite"]:
                raise FloatingPointError(
                    f"{in_a_row} non-finite losses in a row (last at step {step}): lower optim.lr, check the data "
                    "with `animatex-pp data check`, or resume from the last checkpoint with resume=auto"
                )
            bar.update()
            continue
        in_a_row = 0
        engine.backward(loss)
        engine.step()
        boundary = (step + 1) % accumulation == 0
        if ema is not None and boundary:
            ema.step()
        compute += time.perf_counter() - began
        value = _mean_over_ranks(loss.item())
        history[task].append(value)
        history["all"].append(value)
        if world.is_main:
            with open(losses_path, "a") as file:
                file.write(json.dumps({"step": step, "task": task, "loss": value}) + "\n")
        optimizer_step = (step + 1) // accumulation
        if world.is_main:
            bar.set_postfix(loss=f"{value:.4f}", task=task, lr=f"{engine.get_lr()[0]:.2e}")
            bar.update()
            if writer is not None and boundary and optimizer_step % trainer["log_every"] == 0:
                elapsed = time.perf_counter() - started
                writer.add_scalar(f"loss/{task}", value, optimizer_step)
                writer.add_scalar("lr", engine.get_lr()[0], optimizer_step)
                norm = engine.get_global_grad_norm()
                if norm is not None:
                    writer.add_scalar("grad_norm", float(norm), optimizer_step)
                writer.add_scalar(
                    "throughput/samples_per_s",
                    (step + 1 - start) * data["batch_size"] * world.world_size / elapsed,
                    optimizer_step,
                )
                writer.add_scalar("throughput/data_wait_share", wait / max(elapsed, 1e-9), optimizer_step)  # fmt: skip
        last = step + 1 == micro_steps
        if boundary and (optimizer_step % trainer["checkpoint_every"] == 0 or last):
            state = {"step": step + 1, "sampler": sampler.state_dict(step + 1), "config": _tracked(config)}
            ckpt.save_checkpoint(engine, root, step + 1, state, trainer["keep_checkpoints"], world.is_main,
                                 extra=ema.save if ema is not None else None)  # fmt: skip
        validation = config.get("validation", {})
        if validation.get("every") and boundary and (optimizer_step % validation["every"] == 0 or last):
            from animatex_pp.training.validation import write_validation

            with ema.swapped_in() if ema is not None else contextlib.nullcontext():
                write_validation(pipeline, engine.module, config, optimizer_step, world.is_main, writer)
    bar.close()
    if writer is not None:
        writer.close()
    elapsed = time.perf_counter() - started
    tail = max(1, len(history["all"]) // 5)
    metrics = {
        "steps": micro_steps - start,
        "final_loss": _mean(history["all"][-tail:]),
        "first_loss": _mean(history["all"][:tail]),
        "skipped_nonfinite": nonfinite,
        "replaced_clips": replaced,
        "wall_time_s": elapsed,
        "samples_per_s": (micro_steps - start) * data["batch_size"] * world.world_size / max(elapsed, 1e-9),
        # forward + backward + optimizer step (the frozen encoders, on the fly, are `encode_share`)
        "compute_share": compute / max(elapsed, 1e-9),
        "encode_share": encode / max(elapsed, 1e-9),
        "data_wait_share": wait / max(elapsed, 1e-9),
    }
    for task in ("animation", "ti2v"):
        if history[task]:
            metrics[f"loss_{task}"] = _mean(history[task][-max(1, len(history[task]) // 5) :])
            metrics[f"steps_{task}"] = len(history[task])
    return metrics


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan
