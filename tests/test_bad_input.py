"""Bad input found by an audit: each is one clear line (a GenforgeError / exit 2), never a traceback,
a crash or an allocation; and two API promises (genforge.models() callable, genforge.sampling exports)."""
from __future__ import annotations

import pytest

import genforge
from genforge.cli import main
from genforge.config import DataConfig, TrainConfig
from genforge.errors import ConfigError, GenforgeError
from genforge.types import MAX_CANDIDATES, SamplingParams


@pytest.mark.parametrize("kw,name", [
    (dict(best_of=100_000), "best_of"), (dict(num_beams=100_000), "num_beams"),
    (dict(best_of=MAX_CANDIDATES + 1), "best_of"), (dict(seed="a"), "seed"), (dict(seed=True), "seed"),
    (dict(seed=2**64), "seed"), (dict(stop=5), "stop"), (dict(stop=("a", 3)), "stop"),
])
def test_sampling_params_refuse_with_the_parameter_named(kw: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=f"sampling parameter {name}="):
        SamplingParams(**kw)


def test_the_extremes_that_are_allowed_still_work() -> None:
    SamplingParams(best_of=MAX_CANDIDATES, seed=2**64 - 1)
    SamplingParams(num_beams=MAX_CANDIDATES, seed=-(2**63))


@pytest.mark.parametrize("kw,needle", [
    (dict(grad_clip=float("nan")), "train.grad_clip=nan"), (dict(lr=float("inf")), "train.lr"),
    (dict(seed=2**64), "train.seed"), (dict(threads=100_000), "train.threads"),
    (dict(threads=-1), "threads"),
])
def test_train_config_refuses_non_finite_and_out_of_range_values(kw: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        TrainConfig(**kw)


def test_an_empty_corpus_setting_is_refused_instead_of_reading_the_current_folder() -> None:
    with pytest.raises(ConfigError, match="data.corpus is empty"):
        DataConfig(corpus="")


def test_the_python_api_names_the_bad_argument() -> None:
    tm = genforge.load("shakespeare-char")
    with pytest.raises(ConfigError, match="stop=5"):
        tm.generate("A", max_tokens=2, stop=5)
    with pytest.raises(ConfigError, match="seed='a'"):
        tm.generate("A", max_tokens=2, seed="a")
    with pytest.raises(GenforgeError, match="unknown sampling parameter"):
        tm.generate("A", max_tokens=2, temprature=0.5)
    with pytest.raises(ConfigError, match="dtype='fp8'"):
        genforge.load("shakespeare-char", dtype="fp8")
    with pytest.raises(ConfigError, match="device='tpu'"):
        genforge.load("shakespeare-char", device="tpu")


def test_cuda_on_a_machine_without_it_is_one_line() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="no CUDA device"):
        genforge.load("shakespeare-char", device="cuda")
    from genforge.train.runtime import setup

    with pytest.raises(ConfigError, match="train.device='cuda' but no CUDA device"):
        setup(TrainConfig(device="cuda"))


@pytest.mark.parametrize("argv,needle", [
    (["generate", "--threads", "100000"], "--threads 100000"), (["generate", "--threads", "-1"], "--threads -1"),
    (["generate", "--best-of", "100000"], "best_of=100000"), (["generate", "--num-beams", "100000"], "num_beams"),
    (["generate", "--seed", "18446744073709551616"], "seed=18446744073709551616"),
])
def test_cli_bounds_are_one_line_exit_2(argv: list[str], needle: str, capsys) -> None:
    assert main([*argv, "--max-tokens", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genforge: error:") and needle in err[0], err


def test_models_stays_callable_after_the_models_subpackage_is_imported() -> None:
    import genforge.models.transformer  # noqa: F401  (what genforge.load imports)

    names = [m.name for m in genforge.models()]
    assert "shakespeare-char" in names and "shakespeare-chat" in names
    assert genforge.models.build_model is not None  # and it is still the subpackage


def test_the_samplers_import_from_genforge_sampling() -> None:
    from genforge.sampling import beam_search, best_of_n, generate_text, sample_next, stream_text, stream_tokens
    from genforge.sampling.tokens import stream_tokens as direct

    assert stream_tokens is direct
    assert all(callable(f) for f in (beam_search, best_of_n, generate_text, sample_next, stream_text))
