"""The training config's schema: one typed dataclass per config group, and the root `TrainConfig`.

`config.py` registers `TrainConfig` in Hydra's ConfigStore as the schema `conf/train.yaml` starts its defaults list
from, so every group option, recipe and command-line override is merged into these types while the config is
composed: an unknown key or a value of the wrong type is refused then, naming it (`Key 'max_stepz' not in
'TrainerConfig'`, `full_key: trainer.max_stepz`). The defaults live here, once; a YAML option lists only what it
changes. What a type cannot say (a range, a value another one makes mandatory) is checked when the composed config
becomes these objects (`load_train_config`), before any model loads.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

# typing's generics, not `X | None`: OmegaConf 2.3 reads these annotations and knows no other union form
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from animatex_pp.data.clips import ClipConfig
from animatex_pp.training.objective import FlowObjective
from animatex_pp.training.step import ConditionDropout

# diffusers.optimization.get_scheduler names that need nothing but warm-up and training steps.
LR_SCHEDULERS = ("constant_with_warmup", "constant", "linear", "cosine", "cosine_with_restarts", "polynomial")
# The official targets: q, k, v, o of self- and cross-attention and both FFN linears of every block.
LORA_TARGETS = r"blocks\.\d+\.(attn1|attn2)\.(to_q|to_k|to_v|to_out\.0)|blocks\.\d+\.ffn\.net\.(0\.proj|2)"


class Mode(str, enum.Enum):
    train = "train"
    plan = "plan"  # parameter counts and DeepSpeed's memory estimate, on the meta device (no weights)


class ModelSource(str, enum.Enum):
    tiny = "tiny"  # the tiny random pipeline built in-process (animatex_pp.testing.tiny_components)
    pretrained = "pretrained"  # a pipeline folder (`animatex-pp convert`)


class WeightDtype(str, enum.Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class NonFinitePolicy(str, enum.Enum):
    skip = "skip"  # drop the micro-step and count it; more than `max_nonfinite` in a row stop the run
    stop = "stop"


def _positive(section: str, owner: Any, *names: str) -> None:
    for name in names:
        value = getattr(owner, name)
        if value < 1:
            raise ValueError(f"{section}.{name} must be a positive integer, got {value}")


# The transformer settings a pretrained model takes from model.transformer: which pose streams it has.
STREAM_SWITCHES = ("use_pose_video", "use_reference_pose", "use_ipi")


@dataclasses.dataclass
class ModelConfig:
    source: ModelSource = ModelSource.tiny
    # `pretrained`: the pipeline folder; `tiny`: a folder whose `vae/` replaces the random VAE (the SynthX demo's)
    path: Optional[str] = None
    # the architecture `mode=plan` builds when `path` does not exist yet (animatex_pp.models.presets)
    preset: Optional[str] = None
    init_seed: int = 0
    # AnimateXTransformer3DModel preset overrides of a tiny model, e.g. its IPI window (= data.clips.num_frames); a
    # pretrained model takes only its pose-stream switches (use_pose_video, use_reference_pose, use_ipi)
    transformer: Dict[str, Any] = dataclasses.field(default_factory=dict)
    dtype: WeightDtype = WeightDtype.fp32
    gradient_checkpointing: bool = False

    def pretrained_overrides(self) -> Dict[str, Any]:
        """`transformer` of a pretrained model, checked to hold only pose-stream switches (an ablation's streams:
        `AnimateXTransformer3DModel.from_pretrained` builds those switched off not at all, missing ones fresh)."""
        unsupported = sorted(set(self.transformer) - set(STREAM_SWITCHES))
        if unsupported:
            raise ValueError(
                f"model.transformer overrides {unsupported} apply to a tiny model; a pretrained one keeps its config "
                f"but for its pose-stream switches ({', '.join(STREAM_SWITCHES)})"
            )
        return dict(self.transformer)


@dataclasses.dataclass
class ClipsConfig:
    """How clips are cut and augmented (`animatex_pp.data.clips.ClipConfig`, without the seed: the run's)."""

    num_frames: int = 81
    max_stride: int = 2
    buckets: List[List[int]] = dataclasses.field(default_factory=lambda: [[480, 832], [832, 480]])
    # λ: the chance a driving pose is EPI-augmented (Animate-X: at least 0.98)
    epi_probability: float = 0.98
    epi_rescale_probability: float = 0.5
    epi_drop_probability: float = 0.1
    epi_add_probability: float = 0.1
    epi_pool_clips: int = 32
    keypoint_conf_threshold: float = 0.3
    max_replacements: int = 8

    def clip_config(self, seed: int) -> ClipConfig:
        """The datasets' form (buckets as tuples), with the seed of their draws."""
        fields = dataclasses.asdict(self)
        return ClipConfig(**{**fields, "buckets": tuple(tuple(bucket) for bucket in self.buckets)}, seed=seed)


@dataclasses.dataclass
class DataConfig:
    # a .jsonl/.csv of clips (docs/data.md); mandatory unless `cache` is given
    metadata: Optional[str] = None
    # a precompute folder (`animatex-pp precompute`): read instead of encoding clips on the fly
    cache: Optional[str] = None
    batch_size: int = 1
    num_workers: int = 0
    clips: ClipsConfig = dataclasses.field(default_factory=ClipsConfig)
    # the data step `animatex-pp train` runs before training: a Hydra `_target_` call that makes `metadata` when it
    # is missing (data=synthx builds SynthX), or null
    prepare: Optional[Any] = None

    def __post_init__(self) -> None:
        _positive("data", self, "batch_size")
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")


@dataclasses.dataclass
class TaskWeights:
    animation: float = 0.7
    ti2v: float = 0.3


@dataclasses.dataclass
class TaskMixConfig:
    # each micro-step's task is drawn with these weights, the same on every rank
    weights: TaskWeights = dataclasses.field(default_factory=TaskWeights)


@dataclasses.dataclass
class LoraSettings:
    rank: int = 64
    alpha: float = 64
    dropout: float = 0.0
    # a regular expression over module names (peft's target_modules)
    target_modules: str = LORA_TARGETS


@dataclasses.dataclass
class ParamGroupConfig:
    name: str = MISSING
    # a regular expression over parameter names; the first group that matches takes the parameter
    pattern: str = MISSING
    # null: optim.lr
    lr: Optional[float] = None


def _official_param_groups() -> list[ParamGroupConfig]:
    """Animate-X's rates: the IPI at 5e-7, the other streams and the LoRA at `optim.lr`."""
    return [
        ParamGroupConfig("implicit_pose_indicator", r"^implicit_pose_indicator\.", 5e-7),
        ParamGroupConfig("pose_streams", r"^(pose_video_encoder|reference_pose_encoder)\."),
        ParamGroupConfig("lora", "lora_"),
    ]


@dataclasses.dataclass
class AdapterConfig:
    # null: no LoRA
    lora: Optional[LoraSettings] = dataclasses.field(default_factory=LoraSettings)
    # the three pose streams trained in full
    train_streams: bool = True
    # further modules trained in full, by parameter-name pattern (e.g. 'proj_out')
    train_patterns: List[str] = dataclasses.field(default_factory=list)
    param_groups: List[ParamGroupConfig] = dataclasses.field(default_factory=_official_param_groups)


@dataclasses.dataclass
class OptimConfig:
    """torch.optim.AdamW (DeepSpeed takes it as it is) and a diffusers learning-rate schedule."""

    lr: float = 5e-5
    betas: List[float] = dataclasses.field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.01
    eps: float = 1e-8
    # diffusers.optimization.get_scheduler's name; warm-up and schedule counted in optimizer steps
    scheduler: str = "constant_with_warmup"
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        if self.scheduler not in LR_SCHEDULERS:
            raise ValueError(f"optim.scheduler must be one of {', '.join(LR_SCHEDULERS)}, got {self.scheduler!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.warmup_steps and self.scheduler == "constant":
            raise ValueError("optim.scheduler=constant has no warm-up: use constant_with_warmup, or warmup_steps=0")
        if len(self.betas) != 2:
            raise ValueError(f"optim.betas must be two numbers, got {list(self.betas)}")


@dataclasses.dataclass
class DeepSpeedConfig:
    stage: int = 0
    offload_optimizer: bool = False
    offload_param: bool = False
    # mixed precision through torch autocast (the weights keep their dtype; docs/training.md, "bf16"). auto: on CUDA
    # when the GPU computes in bf16 natively, off otherwise; or true / false
    bf16: str = "auto"
    # micro-steps per optimizer step
    gradient_accumulation_steps: int = 1
    # 0: no clipping
    gradient_clipping: float = 1.0

    def __post_init__(self) -> None:
        if self.stage not in (0, 1, 2, 3):
            raise ValueError(f"deepspeed.stage must be 0, 1, 2 or 3, got {self.stage}")
        if self.offload_param and self.stage != 3:
            raise ValueError("deepspeed.offload_param needs ZeRO stage 3: use deepspeed=zero3_offload")
        if self.offload_optimizer and self.stage == 0:
            raise ValueError("deepspeed.offload_optimizer needs ZeRO stage 1 to 3: use deepspeed=zero2_offload")
        if self.bf16.lower() not in ("auto", "true", "false"):
            raise ValueError(f"deepspeed.bf16 must be auto, true or false, got {self.bf16!r}")
        _positive("deepspeed", self, "gradient_accumulation_steps")


@dataclasses.dataclass
class EmaConfig:
    """An exponential moving average of the trainable weights, used for validation and export (ZeRO 0-2)."""

    enabled: bool = False
    decay: float = 0.999

    def __post_init__(self) -> None:
        if not 0.0 < self.decay < 1.0:
            raise ValueError(f"trainer.ema.decay must be in (0, 1), got {self.decay}")


@dataclasses.dataclass
class ExportConfig:
    enabled: bool = True
    # true: the LoRA folded into the DiT's weights; false: kept beside it as diffusers' LoRA file
    merge_lora: bool = True


@dataclasses.dataclass
class TrainerConfig:
    """The loop; every count is in optimizer steps."""

    max_steps: int = 1000
    # local worker processes this command starts itself (torchrun / deepspeed launchers make the world instead)
    num_processes: int = 1
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    dropout: ConditionDropout = dataclasses.field(default_factory=ConditionDropout)
    objective: FlowObjective = dataclasses.field(default_factory=FlowObjective)
    ema: EmaConfig = dataclasses.field(default_factory=EmaConfig)
    nonfinite: NonFinitePolicy = NonFinitePolicy.skip
    max_nonfinite: int = 10
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    # how long a rank waits in a collective: rank 0 alone validates, saves and exports while the others wait
    collective_timeout_minutes: float = 120.0

    def __post_init__(self) -> None:
        _positive("trainer", self, "max_steps", "num_processes", "log_every", "checkpoint_every", "keep_checkpoints")
        if self.collective_timeout_minutes <= 0:
            raise ValueError(
                f"trainer.collective_timeout_minutes must be > 0, got {self.collective_timeout_minutes}: give the "
                "minutes rank 0's longest export or validation may take"
            )
        if self.max_nonfinite < 0:
            raise ValueError(f"trainer.max_nonfinite must be >= 0, got {self.max_nonfinite}")


@dataclasses.dataclass
class ValidationConfig:
    """Media from held-out clips through AnimateXPipeline every `every` optimizer steps and at the last one."""

    # 0: no validation
    every: int = 0
    # the clips shown (.jsonl/.csv with videos); give held-out ones
    metadata: Optional[str] = None
    # animation clips first, then ti2v ones
    num_samples: int = 2
    num_inference_steps: int = 8
    guidance_scale: float = 1.0
    # the clips' windows and the noise: the same at every validation of a run
    seed: int = 0

    def __post_init__(self) -> None:
        if self.every < 0:
            raise ValueError(f"validation.every must be >= 0 (0: off), got {self.every}")
        _positive("validation", self, "num_samples", "num_inference_steps")


@dataclasses.dataclass
class LoggerConfig:
    # TensorBoard scalars (loss per task, grad norm, lr, throughput, data-wait share) in RUN_DIR/tensorboard
    tensorboard: bool = True


@dataclasses.dataclass
class TrainConfig:
    seed: int = 0
    mode: Mode = Mode.train
    # null: start fresh (refused when the run folder holds checkpoints); auto: the latest checkpoint; or a path
    resume: Optional[str] = None
    run_dir: str = MISSING
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    task_mix: TaskMixConfig = dataclasses.field(default_factory=TaskMixConfig)
    adapter: AdapterConfig = dataclasses.field(default_factory=AdapterConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    deepspeed: DeepSpeedConfig = dataclasses.field(default_factory=DeepSpeedConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    validation: ValidationConfig = dataclasses.field(default_factory=ValidationConfig)
    logger: LoggerConfig = dataclasses.field(default_factory=LoggerConfig)
    # set by the `ablation` group (conf/ablation), shown in a sweep's summary
    ablation_name: Optional[str] = None

    def __post_init__(self) -> None:
        if self.mode != Mode.train:
            return  # a plan reads no data and runs nothing
        if not self.data.metadata and not self.data.cache:
            raise ValueError("give data.metadata=PATH (a .jsonl/.csv of clips, docs/data.md) or data.cache=FOLDER")
        if self.validation.every and not self.validation.metadata:
            raise ValueError(
                "validation needs clips with videos: give validation.metadata=PATH (a .jsonl/.csv of held-out "
                "clips), or validation=none"
            )
        if self.trainer.ema.enabled and self.deepspeed.stage == 3:
            raise ValueError(
                "trainer.ema needs whole parameters on every rank: use ZeRO 0-2 (deepspeed=zero2) with it"
            )


def load_train_config(cfg: DictConfig | Mapping[str, Any] | TrainConfig) -> TrainConfig:
    """The typed config of a composed one (or of a plain dict of the same shape), every value checked.

    The composed config is merged into a fresh schema as plain containers (interpolations kept), so a key that a
    `+key=value` override added past the schema is refused here, by name.
    """
    if isinstance(cfg, TrainConfig):
        return cfg
    plain = OmegaConf.to_container(cfg) if isinstance(cfg, DictConfig) else cfg
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainConfig), plain))
