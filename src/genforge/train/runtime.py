"""Where training runs: device, precision, threads and torch.distributed process groups."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..config import TrainConfig
from ..errors import ConfigError


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype, None = fp32
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX. Elsewhere bf16 is emulated and several times slower."""
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(cpu, probe, None)
        if fn is not None and fn():
            return True
    return False


def pick_precision(choice: str, device: torch.device) -> torch.dtype | None:
    if choice == "fp32":
        return None
    if device.type == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        if choice == "auto":
            return torch.bfloat16 if bf16_ok else torch.float16
        return torch.bfloat16 if choice == "bf16" else torch.float16
    if choice == "fp16":
        raise ConfigError("train.precision='fp16' needs a CUDA device; use 'auto', 'fp32' or 'bf16' on a CPU")
    native = cpu_has_native_bf16()
    if choice == "auto":
        return torch.bfloat16 if native else None
    if not native:
        print("genforge: warning: this CPU has no native bf16; bf16 will be emulated and slow "
              "(train.precision='auto' would pick fp32)")
    return torch.bfloat16


def resolve_device(choice: str, local_rank: int) -> torch.device:
    if choice == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(choice)
    except RuntimeError:
        raise ConfigError(f"train.device={choice!r} is not a device: allowed auto, cpu, cuda, cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={choice!r} but no CUDA device is available: use 'cpu' or 'auto'")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    return dev


def setup(cfg: TrainConfig) -> Runtime:
    """Read torchrun's environment (if any), join the process group, pick device and precision."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(device, pick_precision(cfg.precision, device), rank, world, local_rank)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def mean_across(value: torch.Tensor, rt: Runtime) -> torch.Tensor:
    """Average a scalar over all processes (identity with one process)."""
    if rt.world_size > 1:
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= rt.world_size
    return value


def barrier(rt: Runtime) -> None:
    if rt.world_size > 1:
        dist.barrier()
