"""One rule, one place: the context fit (``serve.context_fit``) and the sampling defaults every surface shares.

The context fit decides ``max_tokens`` and which chat turns to keep for ``genforge generate``,
``genforge chat`` and the server (completions, chat, the studio); ``SamplingParams`` is the one rule
and the one default of each sampling parameter for the CLI, chat, the server's schema and the studio.
"""
from __future__ import annotations

import pytest

import genforge
from genforge.cli import build_parser, main
from genforge.codecs.chat_template import SHAKESPEARE
from genforge.serve.chat_cli import DEFAULT_PARAMS
from genforge.serve.context_fit import MIN_REPLY_TOKENS, ContextLengthError, fit_chat, fit_max_tokens
from genforge.serve.schemas import ChatRequest, CompletionRequest
from genforge.types import SAMPLING_RANGES, SamplingParamError, SamplingParams, sampling_defaults


def encode(text: str) -> list[int]:  # one token per byte: easy to count
    return list(text.encode())


def conversation(turns: int, system: str | None = "Be brief.") -> list[dict]:
    msgs = [{"role": "system", "content": system}] if system is not None else []
    for i in range(turns):
        msgs += [{"role": "user", "content": f"How dost thou, friend {i}?"},
                 {"role": "assistant", "content": f"Well, I thank thee; and thou, good sir {i}?"}]
    return msgs + [{"role": "user", "content": "Farewell."}]


# --- fit_max_tokens ----------------------------------------------------------------------------------
def test_max_tokens_none_is_all_the_room_and_an_explicit_value_must_fit():
    assert fit_max_tokens(10, 256, None) == 246
    assert fit_max_tokens(10, 256, 246) == 246
    with pytest.raises(ContextLengthError) as e:
        fit_max_tokens(210, 256, 60)
    for number in ("210 tokens", "max_tokens is 60", "270 in all", "context is 256", "lower max_tokens to 46"):
        assert number in str(e.value)
    with pytest.raises(ContextLengthError, match="no room for a reply"):
        fit_max_tokens(256, 256, None)
    with pytest.raises(ContextLengthError, match="at most 255 tokens"):
        fit_max_tokens(300, 256, 1)


# --- fit_chat ----------------------------------------------------------------------------------------
def test_without_dropping_the_whole_conversation_is_kept_or_refused():
    msgs = conversation(2)
    w = fit_chat(msgs, SHAKESPEARE.render, encode, 1000)
    assert w.dropped == 0 and w.prompt == SHAKESPEARE.render(msgs) and w.max_tokens == 1000 - len(w.prompt_ids)
    with pytest.raises(ContextLengthError, match="conversation has"):
        fit_chat(msgs, SHAKESPEARE.render, encode, 1000, max_tokens=990)


@pytest.mark.parametrize("max_tokens", [None, 40, 120])
@pytest.mark.parametrize("system", ["Be brief.", None])
def test_dropping_keeps_the_system_message_and_drops_the_fewest_oldest_turns(max_tokens, system):
    msgs = conversation(8, system)
    context = 256
    w = fit_chat(msgs, SHAKESPEARE.render, encode, context, max_tokens, drop_oldest=True)
    want = max_tokens if max_tokens is not None else context // 2
    assert len(w.prompt_ids) + want <= context and w.prompt_ids == encode(w.prompt)
    assert w.max_tokens == (context - len(w.prompt_ids) if max_tokens is None else max_tokens)
    assert w.dropped > 0
    head = msgs[:1] if system else []
    assert w.messages == head + msgs[len(head) + w.dropped:]  # the oldest ones left out, nothing else
    assert w.messages[len(head)]["role"] == "user"  # the kept part starts with a user turn
    if system:
        assert w.prompt.startswith("SYSTEM.\nBe brief.\n\n")
    # the fewest drops: keeping one more exchange would not fit (a linear search agrees)
    more = head + msgs[len(head) + w.dropped - 2:]
    assert len(encode(SHAKESPEARE.render(more))) + want > context


def test_a_long_last_message_shortens_the_reply_then_is_refused():
    msgs = [{"role": "user", "content": "x" * 150}]
    w = fit_chat(msgs, SHAKESPEARE.render, encode, 256, 100, drop_oldest=True)
    assert w.max_tokens == 256 - len(w.prompt_ids) >= MIN_REPLY_TOKENS
    with pytest.raises(ContextLengthError, match="that message is too long"):
        fit_chat([{"role": "user", "content": "x" * 240}], SHAKESPEARE.render, encode, 256, drop_oldest=True)


def test_sliding_keeps_an_explicit_max_tokens_and_clears_at_most_half_the_context():
    assert fit_max_tokens(10, 256, 1000, slide=True) == 1000  # only the prompt must fit
    assert fit_max_tokens(10, 256, None, slide=True) == 246  # unset: what fits, as without sliding
    with pytest.raises(ContextLengthError):
        fit_max_tokens(300, 256, 5, slide=True)
    msgs = conversation(8)
    w = fit_chat(msgs, SHAKESPEARE.render, encode, 256, 1000, drop_oldest=True, slide=True)
    assert w.max_tokens == 1000 and w.dropped > 0
    assert len(w.prompt_ids) + 128 <= 256  # dropped only what clears half the context for the reply
    half = fit_chat(msgs, SHAKESPEARE.render, encode, 256, 128, drop_oldest=True)
    assert (w.dropped, w.prompt) == (half.dropped, half.prompt)
    long_msg = [{"role": "user", "content": "x" * 150}]  # without sliding the reply would be shortened
    w = fit_chat(long_msg, SHAKESPEARE.render, encode, 256, 300, drop_oldest=True, slide=True)
    assert w.max_tokens == 300


def test_a_long_conversation_is_fitted_with_few_renders():
    """Binary search over where the kept part starts: a 1 MB request costs a few renders, not thousands."""
    msgs = conversation(2000)
    renders = []

    def render(m):
        renders.append(len(m))
        return SHAKESPEARE.render(m)

    w = fit_chat(msgs, render, encode, 256, drop_oldest=True)
    assert w.dropped >= 3990 and len(renders) <= 16


# --- one rule, one default -----------------------------------------------------------------------------
def test_every_surface_takes_the_sampling_defaults_from_sampling_params():
    defaults = sampling_defaults()
    assert defaults["temperature"] == 0.8 and defaults["top_p"] == 1.0
    for name in ("temperature", "top_p", "seed"):
        assert DEFAULT_PARAMS[name] == defaults[name]  # genforge chat
        assert CompletionRequest.model_fields[name].default == defaults[name]  # the server
        assert ChatRequest.model_fields[name].default == defaults[name]
    assert DEFAULT_PARAMS["max_tokens"] is None and CompletionRequest.model_fields["max_tokens"].default is None
    args = build_parser().parse_args(["generate"])  # unset flags: SamplingParams decides
    assert all(getattr(args, k) is None for k in ("max_tokens", "temperature", "top_p", "top_k", "seed"))


@pytest.mark.parametrize("name,bad", [("temperature", 2.01), ("temperature", -0.1), ("temperature", float("nan")),
                                      ("temperature", True), ("top_p", 0.0), ("top_p", 1.5), ("min_p", 1.0),
                                      ("presence_penalty", 2.5), ("max_tokens", 0), ("top_k", 1.5),
                                      ("seed", 2**64), ("repetition_penalty", float("inf"))])
def test_one_rule_names_the_parameter(name, bad):
    with pytest.raises(SamplingParamError, match=f"sampling parameter {name}=") as e:
        SamplingParams(**{name: bad})
    assert e.value.param == name and SAMPLING_RANGES[name].describe() in str(e.value)


def test_the_edges_of_each_range_are_allowed():
    SamplingParams(temperature=0, top_p=1, min_p=0, presence_penalty=-2, frequency_penalty=2, seed=-(2**63))
    SamplingParams(temperature=2, top_p=1e-9, seed=2**64 - 1, max_tokens=1)


def test_generate_without_max_tokens_fills_the_context(capsys):
    prompt = "ROMEO.\n"
    assert main(["generate", "--prompt", prompt, "--temperature", "0", "--no-stream"]) == 0
    out = capsys.readouterr().out
    tm = genforge.load("shakespeare-char")
    assert out == prompt + tm.generate(prompt, max_tokens=tm.context_length - len(prompt), temperature=0) + "\n"
    assert len(out) - 1 == tm.context_length  # char-level: one character per token


def test_generate_refuses_a_bad_value_before_loading_the_model(capsys):
    assert main(["generate", "--model", "no-such-model", "--temperature", "3"]) == 2  # not "no model named"
    err = capsys.readouterr().err
    assert err.startswith("genforge: error: sampling parameter temperature=3.0 is invalid") and err.count("\n") == 1
