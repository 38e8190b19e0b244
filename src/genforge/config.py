"""Typed configs: frozen dataclasses loaded from TOML, with ``--section.key=value`` overrides.

Every error names the key, what was given and what is allowed, in one line.
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")
MAX_THREADS = 512  # torch thread count a config or flag may ask for (100000 crashed torch's thread pool)


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is Any:
        return True
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and all(_type_ok(v, args[0]) for v in value) if args \
            else isinstance(value, (list, tuple))
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def from_dict(cls: type[T], data: dict[str, Any], section: str) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types are ConfigErrors."""
    if not isinstance(data, dict):
        raise ConfigError(f"[{section}] must be a table of key = value pairs, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"unknown key {section}.{key}: allowed keys are {', '.join(names)}")
        tp = hints[key]
        if not _type_ok(value, tp):
            raise ConfigError(
                f"{section}.{key}={value!r} has the wrong type: expected {_type_name(tp)}"
            )
        if typing.get_origin(tp) is tuple or tp is tuple:
            value = tuple(value)
        elif tp is float and isinstance(value, int):
            value = float(value)
        kwargs[key] = value
    return cls(**kwargs)


def parse_override(arg: str) -> tuple[list[str], Any]:
    """``--train.lr=3e-4`` -> (["train", "lr"], 0.0003). Values are TOML literals, else strings."""
    body = arg[2:] if arg.startswith("--") else arg
    if "=" not in body:
        raise ConfigError(f"override {arg!r} must look like --section.key=value")
    key, raw = body.split("=", 1)
    path = key.split(".")
    if len(path) != 2 or not all(path):
        raise ConfigError(f"override {arg!r} must name section.key, e.g. --train.lr=3e-4")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # bare words are strings: --data.corpus=notes/*.txt
    return path, value


def load_toml(path: str | Path, overrides: list[str] = ()) -> dict[str, Any]:
    """Read a TOML file into a dict and apply ``--section.key=value`` overrides."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} not found: pass a TOML file such as configs/shakespeare-char.toml")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {e}") from None
    for arg in overrides:
        (section, key), value = parse_override(arg)
        data.setdefault(section, {})
        if not isinstance(data[section], dict):
            raise ConfigError(f"cannot override {section}.{key}: [{section}] is not a table")
        data[section][key] = value
    return data


@dataclass(frozen=True)
class CodecConfig:
    kind: str = "char"  # "char": one token per character; "bpe": byte-level BPE (any UTF-8 text)
    vocab_size: int = 4096  # bpe only: merges learned up to this vocabulary size
    unknown: str = ""  # char only: replace characters outside the vocabulary with this one ("" = error)

    def __post_init__(self) -> None:
        from .registry import CODECS

        if self.kind not in CODECS:
            raise CODECS.unknown(self.kind, "codec.kind")
        if self.kind == "bpe" and not 260 <= self.vocab_size <= 1 << 20:
            raise ConfigError(f"codec.vocab_size={self.vocab_size} is invalid: allowed 260 .. 1048576")
        if len(self.unknown) > 1:
            raise ConfigError(f"codec.unknown={self.unknown!r} must be one character or empty")


@dataclass(frozen=True)
class DataConfig:
    corpus: str = "shakespeare"  # "shakespeare", a text file, a glob ("notes/*.txt") or a folder; SMILES
    # codec: "moses" (the MOSES training split), a .smi or .csv file; music codec: "bach-chorales", "folk",
    # a MIDI/MusicXML/ABC file or a folder of them
    val_fraction: float = 0.1  # the last fraction of tokens is the validation split
    column: str = "smiles"  # SMILES codec, .csv corpora: the column holding the SMILES (case-insensitive)
    augment: int = 0  # SMILES codec: randomized SMILES added per molecule; music codec: transposed copies of
    # each training piece (+1, -1, +2, ... semitones; at most 11); 0 = off

    def __post_init__(self) -> None:
        if not 0 <= self.augment <= 100:
            raise ConfigError(f"data.augment={self.augment} is invalid: allowed an integer from 0 to 100")
        if not self.corpus.strip():
            raise ConfigError("data.corpus is empty: give 'shakespeare', a text file, a glob or a folder")
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigError(f"data.val_fraction={self.val_fraction} is invalid: allowed 0 < x < 0.5")


@dataclass(frozen=True)
class TrainConfig:
    out_dir: str = "runs/model"  # checkpoints, metrics.jsonl and loss.png go here
    max_steps: int = 2000  # optimizer steps
    batch_size: int = 12  # sequences per optimizer step (global, across all processes)
    grad_accum: int = 1  # micro-batches per step; batch_size must divide by grad_accum * world size
    lr: float = 1e-3  # peak learning rate
    min_lr: float = 1e-4  # cosine decays to this
    warmup_steps: int = 100  # linear warmup: step s < warmup_steps runs at lr * (s + 1) / (warmup_steps + 1)
    weight_decay: float = 0.1  # AdamW decoupled weight decay on matrices (not biases/norms)
    optimizer: str = "adamw"  # "adamw", or "muon": Muon for the Transformer blocks' matrices, AdamW for the rest
    muon_lr: float = 0.02  # Muon's peak learning rate (same warmup and cosine shape as lr)
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # global gradient-norm clip; 0 = off
    eval_interval: int = 250  # steps between evaluations (and checkpoints)
    eval_steps: int = 20  # batches per evaluation
    log_interval: int = 10  # steps between metric log lines
    precision: str = "auto"  # "auto" | "fp32" | "bf16" | "fp16": auto picks bf16 only where native
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    seed: int = 1337  # model init, data order and dropout all follow from it
    threads: int = 0  # CPU threads for torch (at most MAX_THREADS); 0 = leave torch's default
    compile: bool = False  # torch.compile the model (helps on GPUs; rarely on CPUs)
    keep_checkpoints: int = 2  # newest complete checkpoints kept on disk
    progress: bool = True  # show a progress bar
    init_from: str = ""  # fine-tune: a model name or folder whose weights and codec the run starts from

    def __post_init__(self) -> None:
        for name in ("lr", "min_lr", "weight_decay", "muon_lr", "beta1", "beta2", "grad_clip"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"train.{name}={getattr(self, name)} is invalid: allowed a finite number")
        if not -(2**63) <= self.seed < 2**64:
            raise ConfigError(f"train.seed={self.seed} is out of range: allowed -2**63 .. 2**64 - 1")
        if self.threads > MAX_THREADS:
            raise ConfigError(f"train.threads={self.threads} is invalid: allowed 0 (torch's default) .. {MAX_THREADS}")
        positive = ("max_steps", "batch_size", "grad_accum", "eval_interval", "eval_steps",
                    "log_interval", "keep_checkpoints")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}={getattr(self, name)} is invalid: allowed an integer >= 1")
        if not (0 < self.lr < 1) or not (0 <= self.min_lr <= self.lr):
            raise ConfigError(f"train.lr={self.lr}, min_lr={self.min_lr} invalid: need 0 < min_lr <= lr < 1")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"train.precision={self.precision!r} is unknown: allowed auto, fp32, bf16, fp16")
        if self.warmup_steps < 0 or self.grad_clip < 0 or self.weight_decay < 0 or self.threads < 0:
            raise ConfigError("train.warmup_steps, grad_clip, weight_decay and threads must be >= 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ConfigError(f"train.beta1={self.beta1}, beta2={self.beta2}: allowed 0 <= beta < 1")
        if self.optimizer not in ("adamw", "muon"):
            raise ConfigError(f"train.optimizer={self.optimizer!r} is unknown: allowed adamw, muon")
        if not 0 < self.muon_lr < 1:
            raise ConfigError(f"train.muon_lr={self.muon_lr} is invalid: allowed 0 < muon_lr < 1")
        if self.optimizer == "muon" and self.precision == "fp16":
            raise ConfigError("train.optimizer='muon' does not work with train.precision='fp16' (its loss "
                              "scaler steps one optimizer): use bf16 or fp32")


def _table(value: Any, section: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"[{section}] must be a table of key = value pairs, got {type(value).__name__}")
    return dict(value)


@dataclass(frozen=True)
class RunConfig:
    """A whole training recipe: what a configs/*.toml file holds."""

    model: dict[str, Any] = field(default_factory=lambda: {"kind": "transformer"})
    codec: CodecConfig = field(default_factory=CodecConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    task: dict[str, Any] = field(default_factory=lambda: {"kind": "lm"})  # the training family (registry.TASKS)
    adapter: dict[str, Any] = field(default_factory=dict)  # [adapter] kind = "lora": train an adapter (models.lora)

    def __post_init__(self) -> None:
        from .registry import TASKS

        if self.task.get("kind") not in TASKS:
            raise TASKS.unknown(self.task.get("kind"), "task.kind")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        known = ("model", "codec", "data", "train", "task", "adapter")
        for section in data:
            if section not in known:
                raise ConfigError(f"unknown section [{section}]: allowed sections are {', '.join(known)}")
        tables = {}
        for section, default_kind in (("model", "transformer"), ("task", "lm")):
            table = data.get(section, {})
            if not isinstance(table, dict):
                raise ConfigError(f"[{section}] must be a table of key = value pairs, got {type(table).__name__}")
            tables[section] = {"kind": default_kind, **table}
        return cls(
            model=tables["model"],
            codec=from_dict(CodecConfig, data.get("codec", {}), "codec"),
            data=from_dict(DataConfig, data.get("data", {}), "data"),
            train=from_dict(TrainConfig, data.get("train", {}), "train"),
            task=tables["task"],
            adapter=_table(data.get("adapter", {}), "adapter"),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
