"""Checkpoints: safetensors weights + JSON metadata, written atomically, verified on load.

A checkpoint is a folder::

    genforge.json          format, model kind + config, codec, run config, step, metrics, file hashes
    model.safetensors      weights (tied weights stored once)
    trainer.safetensors    optimizer moments and RNG states (training checkpoints only)

It is written into ``<name>.tmp-<pid>`` and renamed into place; the rename is the commit, so a
killed trainer leaves either the old checkpoint or the new one, never half of one. Replacing a
folder moves the old one to ``<name>.old-<pid>`` first, and pruning renames a checkpoint to
``<name>.del-<pid>`` before deleting it. Leftovers of killed writers are never listed as
checkpoints; ``list_checkpoints``, pruning and the next save of the same name recover or remove
them. Pickle files are never loaded.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import LEFTOVERS, fsync_path, pid_alive, writer_pid
from .errors import CheckpointError

FORMAT = "genforge-checkpoint"
VERSION = 1
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def model_tensors(model: nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The model's state dict with tied duplicates dropped, contiguous, optionally cast."""
    out: dict[str, torch.Tensor] = {}
    seen: dict[int, str] = {}
    for name, t in model.state_dict().items():
        key = t.data_ptr()
        if key in seen and t.numel() > 0:
            continue  # a tied weight (lm_head.weight is wte.weight): stored once
        seen[key] = name
        t = t.detach().cpu()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        out[name] = t.contiguous()
    return out


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                    trainer: dict[str, torch.Tensor] | None = None,
                    extra_files: dict[str, bytes] | None = None) -> Path:
    """Write a checkpoint folder atomically: weights ``tensors`` (see ``model_tensors``), JSON
    ``meta``, optionally the trainer state and ``extra_files`` (name -> bytes, e.g. a model card),
    all committed by one rename. Nothing non-finite is ever written."""
    from safetensors.torch import save as st_save

    path = Path(path)
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"refusing to save {path}: weight {name} has NaN/inf values")
    reserved = {"genforge.json", "model.safetensors", "trainer.safetensors"}
    for name in extra_files or {}:
        if name in reserved or Path(name).name != name or name.startswith("."):
            raise CheckpointError(f"extra checkpoint file {name!r} must be a plain file name other than "
                                  f"{', '.join(sorted(reserved))}")
    path.parent.mkdir(parents=True, exist_ok=True)
    _tidy(path.parent, path.name, temps=True)  # leftovers of an earlier, killed save of this name
    if path.exists() and not (path / "genforge.json").is_file():
        raise CheckpointError(f"{path} exists and is not a genforge model folder: choose a new folder "
                              "(genforge never overwrites other files)")
    tmp = path.parent / f"{path.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        files = {"model.safetensors": st_save(tensors)}
        if trainer is not None:
            files["trainer.safetensors"] = st_save({k: v.detach().cpu().contiguous() for k, v in trainer.items()})
        files.update(extra_files or {})
        meta = dict(meta, format=FORMAT, version=VERSION, files={})
        for name, data in files.items():
            _write_file(tmp / name, data)
            meta["files"][name] = hashlib.sha256(data).hexdigest()
        _write_file(tmp / "genforge.json", json.dumps(meta, indent=2).encode())  # last: marks it complete
        fsync_path(tmp)
        if path.exists():  # replacing a folder of the same name: move the old one aside first
            old = path.parent / f"{path.name}.old-{os.getpid()}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_path(path.parent)
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    meta_file = path / "genforge.json"
    if not meta_file.is_file():
        pickles = sorted(p.name for p in path.glob("*") if p.suffix in PICKLE_SUFFIXES) if path.is_dir() else []
        if pickles:
            raise CheckpointError(
                f"{path} holds only pickle files ({', '.join(pickles)}); genforge refuses pickles because "
                "loading one can run arbitrary code: convert the weights to safetensors")
        raise CheckpointError(f"{path} is not a genforge model: genforge.json is missing")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{meta_file} is corrupted (not valid JSON: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_file} is not a genforge checkpoint (format field missing)")
    for key, kind, what in _META_FIELDS:
        if key in meta and not (isinstance(meta[key], kind) and not isinstance(meta[key], bool)):
            raise CheckpointError(f"{meta_file} is corrupted: {key!r} must be {what}, not "
                                  f"{type(meta[key]).__name__} {str(meta[key])[:40]!r}")
    model = meta.get("model")
    if isinstance(model, dict) and not isinstance(model.get("kind"), str):
        raise CheckpointError(f"{meta_file} is corrupted: 'model' needs a 'kind' string")
    if any(not (isinstance(k, str) and isinstance(v, str)) for k, v in meta.get("files", {}).items()):
        raise CheckpointError(f"{meta_file} is corrupted: 'files' must map file names to SHA-256 strings")
    if meta.get("version", 0) > VERSION:
        raise CheckpointError(f"{meta_file} was written by a newer genforge (version {meta['version']}); upgrade")
    return meta


# top-level genforge.json fields and the JSON types they must have when present
_META_FIELDS = (("version", int, "an integer"), ("files", dict, "an object"), ("model", dict, "an object"),
                ("codec", dict, "an object"), ("config", dict, "an object"), ("metrics", dict, "an object"),
                ("trainer", dict, "an object"), ("step", int, "an integer"), ("pipeline", str, "a string"),
                ("task", str, "a string"), ("parameters", int, "an integer"))


def check_weights_fit_config(path: Path, meta: dict[str, Any], name: str = "model.safetensors") -> None:
    """Before a model is built from genforge.json: its config must imply exactly as many parameters as
    the weights file holds (read from the file's header only), so a corrupted or mismatched config
    (``n_layer=100000``) is refused before anything is allocated."""
    from safetensors import safe_open

    from .config import from_dict
    from .registry import MODELS

    f = path / name
    try:
        with safe_open(str(f), framework="pt") as st:
            stored = sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())  # noqa: SIM118
    except Exception as e:  # safetensors' own error types
        raise CheckpointError(f"{f} is not a valid safetensors file ({str(e).splitlines()[0] if str(e) else e})") \
            from None
    model = meta["model"]
    cfg = from_dict(MODELS.get(model["kind"], "model.kind", CheckpointError).config_class,
                    {k: v for k, v in model.items() if k != "kind"}, "model")
    implied = cfg.num_parameters()
    if implied != stored:
        raise CheckpointError(f"{path / 'genforge.json'}: its model config implies {implied:,} parameters but {name} "
                              f"holds {stored:,}: the config and the weights do not belong together")


def load_tensors(path: Path, name: str, meta: dict[str, Any], verify: bool = True) -> dict[str, torch.Tensor]:
    """Read one safetensors file of a checkpoint, checking its hash against genforge.json."""
    from safetensors.torch import load_file

    f = path / name
    if not f.is_file():
        raise CheckpointError(f"{f} is missing: the checkpoint is incomplete")
    expected = meta.get("files", {}).get(name)
    if verify and expected and _sha256(f) != expected:
        raise CheckpointError(f"{f} is corrupted or truncated (its SHA-256 does not match genforge.json)")
    try:
        tensors = load_file(str(f))
    except Exception as e:  # safetensors' own error types
        raise CheckpointError(f"{f} is not a valid safetensors file ({e})") from None
    for k, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"{f}: tensor {k} has NaN/inf values")
    return tensors


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], where: Path) -> None:
    """Copy checkpoint tensors into ``model`` with shape checks; tied weights may be absent."""
    expected = model.state_dict()
    stored = {k for k in expected if k in tensors}
    missing = [k for k in expected if k not in tensors
               and not any(expected[k].data_ptr() == expected[s].data_ptr() for s in stored)]
    unexpected = [k for k in tensors if k not in expected]
    if missing or unexpected:
        raise CheckpointError(f"{where}: weights do not match the model (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    for k in stored:
        if tensors[k].shape != expected[k].shape:
            raise CheckpointError(f"{where}: {k} has shape {tuple(tensors[k].shape)}, "
                                  f"the model expects {tuple(expected[k].shape)}")
    with torch.no_grad():
        for k in stored:
            expected[k].copy_(tensors[k])


def _writer_gone(name: str, marker: str) -> bool:
    """Whether the process named in a leftover's name is gone. This process's own PID counts as
    gone: it is not inside a write when it tidies up, so the leftover is from an earlier process."""
    pid = writer_pid(name, marker)
    return pid is not None and (pid == os.getpid() or not pid_alive(pid))


def _tidy(folder: Path, name: str | None = None, temps: bool = False) -> None:
    """Clean up after killed writers in ``folder`` (only around ``name`` when given).

    ``NAME.old-PID`` is the only copy when ``NAME`` is missing (a replace was killed between its two
    renames) and is moved back, else removed, once process PID is gone. ``NAME.del-PID`` was being
    pruned and is removed. ``NAME.tmp-PID`` of a gone writer is removed only with ``temps`` (by
    writers: readers merely ignore temp folders).
    """
    if not folder.is_dir():
        return
    for p in sorted(folder.iterdir()):
        marker = next((m for m in LEFTOVERS if m in p.name), None)
        if marker is None or not p.is_dir():
            continue
        base = p.name.split(marker, 1)[0]
        if name is not None and base != name:
            continue
        if marker == ".del-":
            shutil.rmtree(p, ignore_errors=True)
        elif (marker == ".old-" or temps) and _writer_gone(p.name, marker):
            target = folder / base
            if marker == ".old-" and not target.exists() and (p / "genforge.json").is_file():
                os.replace(p, target)
            else:
                shutil.rmtree(p, ignore_errors=True)


def checkpoint_step(path: Path) -> int | None:
    name = path.name
    if not name.startswith("step-") or any(m in name for m in LEFTOVERS):
        return None
    try:
        return int(name[5:])
    except ValueError:
        return None


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    d = Path(run_dir) / "checkpoints"
    if not d.is_dir():
        return []
    _tidy(d)
    found = [(s, p) for p in d.iterdir() if p.is_dir() and (s := checkpoint_step(p)) is not None
             and (p / "genforge.json").is_file()]
    return [p for _, p in sorted(found)]


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints, and leftovers of interrupted writes.

    A checkpoint is renamed out of the ``step-N`` namespace before it is deleted, so a kill
    mid-delete never leaves a ``step-N`` folder that has lost some of its files.
    """
    ckpts = list_checkpoints(run_dir)
    for p in ckpts[:-keep]:
        doomed = p.with_name(f"{p.name}.del-{os.getpid()}")
        try:
            os.replace(p, doomed)
        except OSError:
            doomed = p
        shutil.rmtree(doomed, ignore_errors=True)
    d = Path(run_dir) / "checkpoints"
    for p in d.iterdir() if d.is_dir() else []:
        if ".tmp-" in p.name or ".del-" in p.name:
            shutil.rmtree(p, ignore_errors=True)


def export_model(src: str | Path, dst: str | Path, dtype: str = "fp16", card: str | None = None,
                 extra_meta: dict[str, Any] | None = None) -> Path:
    """Copy a checkpoint's weights and metadata (not the optimizer) into a standalone model folder.

    ``dtype`` "fp16"/"bf16" halves the size of a model that trained in fp32; loading casts back.
    ``card`` is written as MODEL_CARD.md beside the weights; ``extra_meta`` joins genforge.json.
    """
    casts = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    if dtype not in casts:
        raise CheckpointError(f"export dtype {dtype!r} is unknown: allowed fp16, bf16, fp32")
    src = Path(src)
    meta = read_meta(src)
    weights = load_tensors(src, "model.safetensors", meta)
    if meta.get("sampling_weights") == "ema" and (src / "trainer.safetensors").is_file():
        # a model that samples with its weights' moving average (diffusion, GANs): export the average
        ema = {k[4:]: v for k, v in load_tensors(src, "trainer.safetensors", meta).items() if k.startswith("ema.")}
        if set(ema) != set(weights):
            raise CheckpointError(f"{src}: its EMA weights do not match the model's; export the run again")
        weights = ema
    tensors = {k: v.to(casts[dtype]) if v.is_floating_point() else v for k, v in weights.items()}
    meta = {k: v for k, v in meta.items() if k not in ("trainer", "files", "format", "version")}
    meta["weights_dtype"] = dtype
    if meta.get("sampling_weights") == "ema":
        meta["sampling_weights"] = "model"  # the exported weights are the average
    meta.update(extra_meta or {})  # e.g. {"chat_template": "shakespeare"} for chat models
    extra = {"MODEL_CARD.md": card.encode("utf-8")} if card is not None else None
    return save_checkpoint(dst, tensors, meta, extra_files=extra)  # the card is committed with the weights
