"""Where training runs: what train.precision resolves to, and that the run says so."""
from __future__ import annotations

import pytest
import torch

from genforge.checkpoint import read_meta
from genforge.errors import ConfigError
from genforge.train.fit import fit
from genforge.train.runtime import pick_precision

CPU = torch.device("cpu")


def test_auto_is_fp32_on_cpus_whatever_the_cpu_supports() -> None:
    dtype, note = pick_precision("auto", CPU)
    assert dtype is None and "auto -> fp32" in note
    assert pick_precision("fp32", CPU)[0] is None
    assert pick_precision("bf16", CPU)[0] is torch.bfloat16  # asked for explicitly: honoured
    with pytest.raises(ConfigError, match="fp16.*CUDA"):
        pick_precision("fp16", CPU)


def test_a_run_prints_and_records_the_precision_it_chose(make_config, capsys) -> None:
    result = fit(make_config(max_steps=2, eval_interval=2, precision="auto"))
    out = capsys.readouterr().out
    assert out.startswith("genforge: precision auto -> fp32 on the CPU")
    assert read_meta(result.checkpoint)["trainer"]["precision"] == "fp32"
    fit(make_config(max_steps=2, eval_interval=2, precision="bf16", out_dir=str(result.out_dir) + "-bf16"))
    assert "genforge: precision bf16 (as configured)" in capsys.readouterr().out


@pytest.mark.gpu
def test_auto_on_a_gpu_is_bf16_where_supported() -> None:
    dev = torch.device("cuda:0")
    dtype, note = pick_precision("auto", dev)
    assert dtype is (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    assert "auto ->" in note
