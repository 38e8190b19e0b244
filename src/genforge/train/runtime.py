"""Where training runs: device, precision, threads and torch.distributed process groups."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..config import TrainConfig
from ..device import resolve_device
from ..errors import ConfigError


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype, None = fp32
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    precision_note: str = ""  # what train.precision resolved to and why (fit prints it)

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


def pick_precision(choice: str, device: torch.device) -> tuple[torch.dtype | None, str]:
    """The autocast dtype for ``train.precision`` (None = fp32) and a line saying what was chosen.

    "auto" is fp32 on CPUs: bf16 autocast trained our CPU-sized models 1.3-1.9x slower than fp32 even
    on a CPU with native bf16 (AVX512-BF16), and emulated bf16 is slower still. On CUDA it is bf16
    where the card supports it, else fp16 with a loss scaler.
    """
    if choice == "fp32":
        return None, "precision fp32 (as configured)"
    if device.type == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        if choice == "auto":
            dtype = torch.bfloat16 if bf16_ok else torch.float16
            why = "the card supports bf16" if bf16_ok else "the card has no bf16"
            return dtype, f"precision auto -> {_name(dtype)} on {device} ({why})"
        dtype = torch.bfloat16 if choice == "bf16" else torch.float16
        return dtype, f"precision {choice} (as configured)"
    if choice == "fp16":
        raise ConfigError("train.precision='fp16' needs a CUDA device; use 'auto', 'fp32' or 'bf16' on a CPU")
    if choice == "auto":
        return None, ("precision auto -> fp32 on the CPU (bf16 autocast measured slower than fp32 for "
                      "CPU-sized models; set train.precision='bf16' to try it)")
    if not cpu_has_native_bf16():
        return torch.bfloat16, ("precision bf16 (as configured); warning: this CPU has no native bf16, so it "
                                "is emulated and slow: train.precision='fp32' is faster")
    return torch.bfloat16, "precision bf16 (as configured)"


def _name(dtype: torch.dtype) -> str:
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


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
    amp, note = pick_precision(cfg.precision, device)
    return Runtime(device, amp, rank, world, local_rank, note)


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
