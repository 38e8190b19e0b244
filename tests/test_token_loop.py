"""One token loop: the sampling modules form a chain without cycles, and the server's batch engine runs the
loop's own pieces over the declared ``BatchedStepModel`` interface, so its tokens are in-process generation's
(sliding and end of sequence included), for a Transformer and for an RNN, which the server now serves."""
from __future__ import annotations

import ast
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
from serving import running_server
from test_models import gpt, rnn
from test_sampling import GRULM
from test_sliding_window import trained_run

import genforge
from genforge.errors import GenforgeError
from genforge.sampling.tokens import stream_tokens
from genforge.serve.engine import BatchEngine, EngineRequest
from genforge.types import BatchedStepModel, SamplingParams

SRC = Path(genforge.__file__).resolve().parent


def _imports(path: Path) -> set[str]:
    """The sibling modules a ``sampling`` module imports (``from .x import ...``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            out.add(node.module or "")
    return out


def test_the_sampling_modules_import_each_other_without_cycles() -> None:
    graph = {p.stem: _imports(p) & {q.stem for q in (SRC / "sampling").glob("*.py")}
             for p in (SRC / "sampling").glob("*.py") if p.stem != "__init__"}
    assert graph["tokens"] <= {"processors"} and graph["search"] <= {"tokens"}
    assert "decode" not in set().union(*graph.values())  # decode only re-exports

    def reaches(a: str, b: str, seen: frozenset = frozenset()) -> bool:
        return any(n == b or (n not in seen and reaches(n, b, seen | {n})) for n in graph.get(a, ()))

    assert not [m for m in graph if reaches(m, m)]


def test_the_engine_knows_models_only_through_the_declared_interface() -> None:
    tree = ast.parse((SRC / "serve" / "engine.py").read_text())
    names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not names & {"k", "v", "pos", "rows", "hidden"}  # no KV-cache or hidden-state fields
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(m and "models" in m for m in modules)
    assert isinstance(gpt(), BatchedStepModel) and isinstance(rnn("gru"), BatchedStepModel)


def test_a_model_without_the_batched_interface_is_refused_in_one_line() -> None:
    with pytest.raises(GenforgeError) as e:
        BatchEngine(GRULM(11))
    assert "GRULM model cannot be served" in str(e.value) and "\n" not in str(e.value)


def run_engine(engine: BatchEngine, prompts: list[list[int]], params: list[SamplingParams],
               slides: list[bool | None] | None = None):
    """Submit every request at once; return each one's (tokens, finish reason)."""
    results: list[tuple[list[int], str | None]] = [([], None) for _ in prompts]
    done = threading.Semaphore(0)

    def on_done(i: int, reason: str, err) -> None:
        assert err is None, err
        results[i] = (results[i][0], reason)
        done.release()

    engine.start()
    try:
        for i, (prompt, p) in enumerate(zip(prompts, params)):
            engine.submit(EngineRequest(prompt, p, on_token=lambda t, lp, top, i=i: results[i][0].append(t),
                                        on_done=lambda r, e, i=i: on_done(i, r, e),
                                        slide=None if slides is None else slides[i]))
        for _ in prompts:
            assert done.acquire(timeout=60)
    finally:
        engine.stop()
    return results


MODELS = {"gpt-learned": lambda: gpt(), "gpt-rope": lambda: gpt(position="rope"), "lstm": lambda: rnn("lstm")}


@pytest.mark.parametrize("name", MODELS)
def test_engine_rows_equal_in_process_generation_past_the_context(name: str) -> None:
    """Rows of different lengths share the batch, join and leave it, and slide at different steps."""
    model = MODELS[name]()
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 50, (n,), generator=g).tolist() for n in (3, 17, 9, 30)]
    params = [SamplingParams(max_tokens=m, temperature=0.9, seed=s, presence_penalty=p)
              for m, s, p in ((70, 1, 0.0), (40, 2, 0.5), (90, 3, 0.0), (12, 4, 1.0))]
    engine = BatchEngine(model, max_batch=3, sliding_window=True)
    got = run_engine(engine, prompts, params)
    want = [([t for t, _ in stream_tokens(model, pr, p, slide=True)], "length") for pr, p in zip(prompts, params)]
    assert got == want
    assert engine.max_rows_seen == 3 and (engine.slides > 0) == name.startswith("gpt")


def test_engine_without_sliding_ends_rows_at_the_context() -> None:
    got = run_engine(BatchEngine(gpt()), [[1, 2, 3]], [SamplingParams(max_tokens=100, temperature=0)])
    assert len(got[0][0]) == 32 - 3 and got[0][1] == "length"


def test_each_request_chooses_whether_it_slides() -> None:
    model, prompt = gpt(), [1, 2, 3]
    p = SamplingParams(max_tokens=70, temperature=0.7, seed=9)
    sliding = [t for t, _ in stream_tokens(model, prompt, p, slide=True)]
    assert len(sliding) == 70
    for default in (False, True):
        got = run_engine(BatchEngine(model, sliding_window=default), [prompt] * 3, [p] * 3, [True, False, None])
        assert got[0] == (sliding, "length") and got[1] == (sliding[:32 - 3], "length")
        assert got[2] == got[0 if default else 1]  # unset: the engine's setting


def test_a_request_cancelled_before_it_is_admitted_ends_with_no_token() -> None:
    engine = BatchEngine(gpt())
    tokens, done = [], []
    req = EngineRequest([1, 2, 3], SamplingParams(max_tokens=5, temperature=0), on_token=lambda *a: tokens.append(a),
                        on_done=lambda reason, err: done.append((reason, err)))
    req.cancelled.set()
    engine.submit(req)
    engine.start()
    try:
        deadline = time.monotonic() + 30
        while not done and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        engine.stop()
    assert done == [("cancelled", None)] and tokens == [] and engine.steps == 0
    steps_of = run_engine(engine := BatchEngine(gpt()), [[1, 2]], [SamplingParams(max_tokens=6, temperature=0)])
    assert len(steps_of[0][0]) == 6 and engine.steps == 5  # one token from the prefill, then one per step


def test_engine_rows_end_at_the_end_of_sequence_token() -> None:
    model, prompt = gpt(), [4, 5, 6]
    p = SamplingParams(max_tokens=20, temperature=0)
    greedy = [t for t, _ in stream_tokens(model, prompt, p)]
    eos = greedy[5]
    assert [t for t, _ in stream_tokens(model, prompt, p, eos_id=eos)] == greedy[:greedy.index(eos) + 1]
    got = run_engine(BatchEngine(model, eos_id=eos), [prompt], [p])
    assert got == [(greedy[:greedy.index(eos)], "eos")]  # the end-of-sequence token is not handed over


@pytest.fixture(scope="module")
def rnn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_run(tmp_path_factory, "rnn", model={"kind": "rnn"}, max_steps=20)


def test_the_server_serves_an_rnn_like_in_process_generation(rnn_run: Path) -> None:
    from genforge.serve.app import ServeSettings

    tm = genforge.load(rnn_run)
    assert tm.meta["model"]["kind"] == "rnn"
    kw = dict(max_tokens=60, temperature=0.9, seed=5, frequency_penalty=0.3)
    with running_server(ServeSettings(models=[str(rnn_run)]), {str(rnn_run): tm}) as (_, url):
        r = httpx.post(url + "/v1/completions", json={"model": "run", "prompt": "ROMEO:\n", **kw}, timeout=60)
    assert r.status_code == 200, r.text
    want = tm.complete("ROMEO:\n", **kw)
    assert (r.json()["choices"][0]["text"], r.json()["choices"][0]["finish_reason"]) == (want.text, "length")
