"""What training does on CUDA, checked on a CPU: collectives on the world's device (an NCCL group takes no CPU
tensors), fp32 EMA shadows of bf16 weights, `bf16: auto` only where bf16 is native, a collective timeout that
outlasts rank 0's export, and the DeepSpeed release ZeRO-3 needs."""

import datetime

import deepspeed
import pytest
import torch
import torch.distributed as dist
from torch.testing._internal.distributed.fake_pg import FakeStore

from animatex_pp.training.distributed import bf16_enabled, close_world, deepspeed_config, init_world
from animatex_pp.training.ema import TrainableEMA
from animatex_pp.training.schema import DeepSpeedConfig, TrainerConfig
from animatex_pp.training.trainer import _all_ranks_finite, _mean_over_ranks

NO_CPU_BACKEND = "No backend type associated with device type cpu"


@pytest.fixture
def world_without_a_cpu_backend():
    """A two-rank world whose only backend is for the meta device, as NCCL's is only for CUDA: torch's fake process
    group, which binds the device types it is given ("cuda:fake" is the NCCL-like one, but a CPU machine has no CUDA
    tensors to hand it; meta tensors exist everywhere)."""
    dist.init_process_group("meta:fake", store=FakeStore(), rank=0, world_size=2)
    yield torch.device("meta")
    dist.destroy_process_group()


def test_the_fake_world_refuses_cpu_tensors_as_nccl_does(world_without_a_cpu_backend):
    with pytest.raises(RuntimeError, match=NO_CPU_BACKEND):
        dist.all_reduce(torch.zeros(1))


def test_the_loss_reductions_hand_the_collective_tensors_on_the_world_device(world_without_a_cpu_backend, monkeypatch):
    device = world_without_a_cpu_backend
    handed = []

    def recording_all_reduce(tensor, *args, **kwargs):
        handed.append(tensor.device)
        return real_all_reduce(tensor, *args, **kwargs)

    real_all_reduce = dist.all_reduce
    monkeypatch.setattr(dist, "all_reduce", recording_all_reduce)
    loss = torch.tensor(0.5)  # wherever the loss is, the collective gets the world's device
    finite = _all_ranks_finite(loss, device)
    mean = _mean_over_ranks(loss, device)
    assert handed == [device, device]
    # both stay on the device: nothing is read back to the host until the caller needs it
    assert (finite.device, finite.dtype, finite.shape) == (device, torch.bool, (1,))
    assert (mean.device, mean.dtype, mean.shape) == (device, torch.float64, (1,))


def test_the_loss_reductions_on_cpu_give_the_flag_and_the_mean():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        cpu = torch.device("cpu")
        assert _all_ranks_finite(torch.tensor(0.5), cpu).item()
        assert not _all_ranks_finite(torch.tensor(float("nan")), cpu).item()
        assert _mean_over_ranks(torch.tensor(0.5), cpu).tolist() == [0.5]
    finally:
        dist.destroy_process_group()


def test_the_ema_of_bf16_weights_keeps_fp32_shadows_that_keep_moving():
    model = torch.nn.Linear(4, 4, bias=False).to(torch.bfloat16)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = TrainableEMA(model, decay=0.999)
    ema.ema.optimization_step = 100_000  # a long run: the warm-up is over, every step decays by 0.999
    with torch.no_grad():
        model.weight.fill_(1.1)  # bf16 rounds it to 1.1015625
    for _ in range(2000):
        ema.step()
    shadow = ema.ema.shadow_params[0]
    assert shadow.dtype == torch.float32
    # 1 + 0.1015625 * (1 - 0.999 ** 2000); a bf16 shadow stays at 1.0, each step's change rounding away
    expected = 1 + 0.1015625 * (1 - 0.999**2000)
    torch.testing.assert_close(shadow, torch.full_like(shadow, expected), rtol=0, atol=1e-4)
    with ema.swapped_in():
        assert model.weight.dtype == torch.bfloat16
        torch.testing.assert_close(model.weight, torch.full_like(model.weight, expected))
    assert torch.equal(model.weight, torch.full_like(model.weight, 1.1))


@pytest.mark.parametrize(
    ("native", "expected"),
    [(False, False), (True, True)],  # V100 / T4: bf16 emulated only; A100 and newer: native
)
def test_bf16_auto_needs_native_bf16(monkeypatch, native, expected):
    def is_bf16_supported(including_emulation: bool = True) -> bool:
        return native or including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert bf16_enabled("auto", torch.device("cuda", 0)) is expected
    assert bf16_enabled("auto", torch.device("cpu")) is False
    assert bf16_enabled("true", torch.device("cpu")) is True


def test_the_collective_timeout_reaches_the_process_group(monkeypatch):
    handed = []
    real_init_process_group = dist.init_process_group

    def recording_init_process_group(*args, **kwargs):
        handed.append(kwargs.get("timeout"))
        return real_init_process_group(*args, **kwargs)

    monkeypatch.setattr(dist, "init_process_group", recording_init_process_group)
    init_world(timeout_minutes=150)
    close_world(None)
    assert handed == [datetime.timedelta(minutes=150)]
    # the default outlasts an export of the 14B model; NCCL's own is 10 minutes
    assert TrainerConfig().collective_timeout_minutes == 120
    with pytest.raises(ValueError, match="trainer.collective_timeout_minutes must be > 0"):
        TrainerConfig(collective_timeout_minutes=0)


def test_zero3_refuses_a_deepspeed_older_than_the_one_it_needs(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(deepspeed, "__version__", "0.19.7")
    with pytest.raises(RuntimeError, match=r"deepspeed.stage=3 needs DeepSpeed >= 0.19.8 .* 0.19.7 is installed"):
        deepspeed_config(DeepSpeedConfig(stage=3), batch_size=1, device=cpu)
    assert deepspeed_config(DeepSpeedConfig(stage=2), batch_size=1, device=cpu)["zero_optimization"]["stage"] == 2
    monkeypatch.setattr(deepspeed, "__version__", "0.19.8")
    assert deepspeed_config(DeepSpeedConfig(stage=3), batch_size=1, device=cpu)["zero_optimization"]["stage"] == 3
