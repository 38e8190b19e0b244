"""Training tasks: the math of one family (its model, batches, losses, evaluation), behind ``fit()``.

``fit()`` owns what every family shares: device and precision, the learning-rate schedule, gradient
accumulation, clipping, the NaN guard, progress, metrics and the loss plot, evaluation cadence,
atomic checkpoints, exact resume and data parallelism. A task owns the rest, and is chosen by the
recipe's ``[task] kind`` (``registry.TASKS``; a recipe without a [task] section is ``lm``).

One optimizer step is one or more *phases*: a phase names the optimizers it steps and the loss whose
gradient they follow. A language model has one phase over all its optimizers; a GAN has two (the
discriminator's, then the generator's), each accumulated, clipped and NaN-checked by ``fit()``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

Batch = tuple[Tensor, ...]  # tensors split along dim 0 into micro-batches by fit()


@dataclass(frozen=True)
class Phase:
    optimizers: tuple[int, ...]  # indices into the task's optimizer list, stepped together
    loss: Callable[[nn.Module, Batch], Tensor]  # scalar loss of one micro-batch; fit() scales and sums


class Task(Protocol):
    kind: str  # the name in registry.TASKS
    throughput_unit: str  # what ``items_per_step`` counts ("tokens", "images"): metrics log <unit>_per_s

    def setup(self, out: Path, resume_meta: dict[str, Any] | None) -> None:
        """Prepare data (and a codec) before the model is built; on resume, from the checkpoint's meta."""

    def build_model(self) -> nn.Module:
        """A new model (fit() seeds torch first), with any starting weights (fine-tuning) loaded."""

    def optimizers(self, model: nn.Module, device: torch.device) -> list[torch.optim.Optimizer]: ...

    def phases(self) -> list[Phase]: ...

    def next_batch(self, rank: int, world_size: int) -> Batch:
        """This process's slice of the next global batch (every process draws the same global batch)."""

    def items_per_step(self) -> int: ...

    def after_step(self, model: nn.Module) -> None:
        """Runs after every optimizer step (EMA updates live here)."""

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Held-out metrics; ``val_loss`` is the one shown and plotted."""

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """What resume needs besides weights and optimizers (data sampler, EMA): tensors and JSON."""

    def load_state(self, tensors: dict[str, Tensor], info: dict[str, Any]) -> None: ...

    def checkpoint_files(self) -> dict[str, bytes]:
        """Files saved beside each checkpoint's weights (a diffusion model's sample grid); may be empty."""

    def meta(self) -> dict[str, Any]:
        """What genforge.json records for loading: model kind and config, codec, pipeline, task kind."""
