"""What a run writes for people to read: a JSONL metrics log and a loss-curve PNG."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes, atomic_write_text


class MetricsLog:
    """Appends one JSON object per line. On resume, entries past the checkpoint are dropped."""

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            atomic_write_text(path, "")
        elif path.exists():  # a killed run may have left a half-written last line: drop it
            keep = [ln for ln in path.read_text().splitlines()
                    if (rec := _parse(ln)) is not None and rec.get("step", 0) <= resume_step]
            atomic_write_text(path, "".join(ln + "\n" for ln in keep))  # a kill here keeps the old log

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        return [rec for ln in self.path.read_text().splitlines() if (rec := _parse(ln)) is not None]


def _parse(line: str) -> dict[str, Any] | None:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return None
    return rec if isinstance(rec, dict) else None


def plot_losses(records: list[dict[str, Any]], out: Path, title: str = "") -> None:
    """Train and validation loss against step, written atomically as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss", linewidth=1, alpha=0.8)
    if val:
        ax.plot(*zip(*val), "o-", label="val loss", linewidth=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    atomic_write_bytes(out, png.getvalue())
