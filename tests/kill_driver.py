"""The writer side of tests/test_atomic_writes.py: a driver process that imports genforge once and
forks one child per write; in the child, one os primitive (fsync, replace/rename, truncate, unlink)
is wrapped so that its n-th call on a path matching a pattern SIGKILLs the child before or after
the real call. The code doing the write is the real one. ``Driver`` is the test side's handle.
"""
from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from conftest import make_corpus_text, tiny_config

from genforge.checkpoint import (
    export_model,
    list_checkpoints,
    load_tensors,
    read_meta,
    save_checkpoint,
)
from genforge.codecs import codec_from_dict
from genforge.codecs.bpe import BPECodec
from genforge.config import RunConfig
from genforge.data.shards import prepare_shards
from genforge.train.fit import fit


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return f"<fd {fd}>"


def _resolve(p: Any, dir_fd: int | None = None) -> str:
    if isinstance(p, int):
        return _fd_path(p)
    p = os.fsdecode(p)
    if dir_fd is not None and not os.path.isabs(p):
        return os.path.join(_fd_path(dir_fd), p)
    return os.path.abspath(p)


def _describe(name: str, args: tuple, kwargs: dict) -> str:
    """The path(s) an os call acts on: ``SRC -> DST`` for renames, else the one path."""
    if name in ("replace", "rename"):
        return f"{_resolve(args[0], kwargs.get('src_dir_fd'))} -> {_resolve(args[1], kwargs.get('dst_dir_fd'))}"
    return _resolve(args[0], kwargs.get("dir_fd"))


OPS = {"fsync": ("fsync",), "move": ("replace", "rename"), "truncate": ("truncate",), "unlink": ("unlink", "remove")}


def _arm(kill: dict[str, Any]) -> None:
    """Make the ``nth`` call of ``op`` on a path matching ``pattern`` SIGKILL this process ``when``
    ("before" or "after") the real call runs."""
    pattern, nth, when = re.compile(kill["pattern"]), kill.get("nth", 1), kill["when"]
    seen = [0]
    for name in OPS[kill["op"]]:
        real = getattr(os, name)

        def hooked(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            fire = False
            if pattern.search(_describe(_name, args, kwargs)):
                seen[0] += 1
                fire = seen[0] == nth
            if fire and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            out = _real(*args, **kwargs)
            if fire and when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return out

        setattr(os, name, hooked)


def _sc_fit(config: dict[str, Any], resume: bool) -> None:
    fit(RunConfig.from_dict(config), resume=resume)


def _sc_resave(ckpt: str) -> None:
    """Write an existing checkpoint again under its own name (save_checkpoint's replace path)."""
    meta = read_meta(ckpt)
    tensors = load_tensors(Path(ckpt), "model.safetensors", meta)
    trainer = load_tensors(Path(ckpt), "trainer.safetensors", meta)
    save_checkpoint(ckpt, tensors, {k: v for k, v in meta.items() if k not in ("files", "format", "version")},
                    trainer)


def _sc_export(src: str, dst: str, card: str) -> None:
    export_model(src, dst, "fp32", card)


def _sc_bpe_save(text: str, path: str) -> None:
    BPECodec.train([text], vocab_size=300).save(path)


def _sc_prepare(corpus: str, codec: dict[str, Any], cache: str) -> None:
    prepare_shards(corpus, codec_from_dict(codec), cache)


SCENARIOS = {"fit": _sc_fit, "resave": _sc_resave, "export": _sc_export, "bpe_save": _sc_bpe_save,
             "prepare": _sc_prepare}


def _child(req: dict[str, Any]) -> None:
    code = 1
    try:
        fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.environ["GENFORGE_HOME"] = req["home"]
        if req["kill"]:
            _arm(req["kill"])
        SCENARIOS[req["scenario"]](**req["kwargs"])
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _warm_up() -> None:
    """Import everything a write touches (torch.optim, matplotlib, safetensors, tokenizers) once,
    so that forked children start warm."""
    with tempfile.TemporaryDirectory() as d:
        os.environ["GENFORGE_HOME"] = os.path.join(d, "home")
        corpus = Path(d, "corpus.txt")
        corpus.write_text(make_corpus_text(2000), encoding="utf-8")
        cfg = tiny_config(Path(d), corpus, max_steps=2, eval_interval=2, eval_steps=1)
        fit(cfg)
        export_model(list_checkpoints(cfg.train.out_dir)[-1], Path(d, "export"), "fp32", "card")
        BPECodec.train([corpus.read_text()], vocab_size=270).save(Path(d, "tok.json"))


def _driver() -> None:
    """Read one JSON request a line; fork a child per request; answer how the child ended."""
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything printed by accident goes to stderr, not into the protocol
    _warm_up()
    proto.write(json.dumps({"ready": True}) + "\n")
    proto.flush()
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(req)
        _, status = os.waitpid(pid, 0)
        proto.write(json.dumps({"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                                "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}) + "\n")
        proto.flush()


# ============================================================================== parent side
class Driver:
    def __init__(self, workdir: Path) -> None:
        self.stderr = workdir / "driver.stderr"
        self.n = 0
        with open(self.stderr, "w") as err:
            self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve())], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err, text=True,
                                         cwd=Path(__file__).resolve().parent)
        self._answer(timeout=300)

    def _answer(self, timeout: float) -> dict[str, Any]:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.proc.kill()
            raise RuntimeError(f"the writer driver {'timed out' if not ready else 'died'}:\n"
                               f"{self.stderr.read_text()[-4000:]}")
        return json.loads(line)

    def kill_during(self, scenario: str, kill: dict[str, Any], tmp_path: Path, home: Path, **kwargs: Any) -> None:
        """Run ``scenario`` in a child and check that the fault hook killed it."""
        self.n += 1
        log = tmp_path / f"writer-{self.n}.log"
        req = {"scenario": scenario, "kill": kill, "log": str(log), "home": str(home), "kwargs": kwargs}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        ans = self._answer(timeout=120)
        out = log.read_text()[-3000:] if log.exists() else ""
        assert ans["signal"] == signal.SIGKILL, (
            f"the writer was not killed at {kill} (exit status {ans['exit']}): the write never reached that "
            f"point\n{out}")

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()




if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)  # as in the test process: the writers train tiny models
    _driver()
