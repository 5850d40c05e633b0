"""An exponential moving average of the trainable weights (diffusers' `EMAModel`), for validation and export.

The average is kept beside the engine, on the parameters' device and in fp32 (a bf16 average stops moving),
updated after every optimizer step, saved with each checkpoint as `ema.safetensors` and loaded on resume. Validation
and export swap it into the model and swap the trained weights back afterwards. It needs whole parameters on every
rank, so ZeRO-3 (partitioned parameters) is refused with the EMA on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from diffusers.training_utils import EMAModel
from safetensors import safe_open
from safetensors.torch import load_file, save_file

EMA_FILE = "ema.safetensors"


class TrainableEMA:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.names = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
        self.parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
        # fp32 shadows whatever the parameters' dtype: in bf16 an update of (1 - decay) x the difference rounds away
        # (at decay 0.999 a bf16 average of weights that moved from 1.0 to 1.1 stays at 1.0)
        self.ema = EMAModel([parameter.detach().float() for parameter in self.parameters], decay=decay)

    def step(self) -> None:
        self.ema.step(self.parameters)

    def save(self, folder: Path) -> None:
        shadow = {
            name: tensor.detach().cpu().contiguous()
            for name, tensor in zip(self.names, self.ema.shadow_params, strict=True)
        }
        save_file(shadow, str(folder / EMA_FILE), metadata={"optimization_step": str(self.ema.optimization_step)})

    def load(self, folder: Path) -> None:
        path = folder / EMA_FILE
        if not path.is_file():
            raise ValueError(
                f"checkpoint {folder} has no {EMA_FILE}: it was trained without trainer.ema; resume with "
                "trainer.ema.enabled=false"
            )
        shadow = load_file(path)
        for name, tensor in zip(self.names, self.ema.shadow_params, strict=True):
            tensor.copy_(shadow[name])
        with safe_open(path, framework="pt") as file:
            self.ema.optimization_step = int(file.metadata()["optimization_step"])

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The averaged weights in the model for the block, the trained ones back after it."""
        self.ema.store(self.parameters)
        self.ema.copy_to(self.parameters)
        try:
            yield
        finally:
            self.ema.restore(self.parameters)
