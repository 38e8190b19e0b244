"""``genforge chat``: a terminal chat with a chat model, with history, streaming and a few commands.

The history is a list of role messages; every turn renders the whole history with the model's chat
template (``template_for(model.meta)``), streams the reply until one of the template's stop strings, and
appends the cleaned reply. ``context_fit.fit_chat`` keeps the conversation inside the model's context:
the oldest exchanges are dropped (the system message stays), and ``max_tokens`` left unset means "what
fits". An explicit ``max_tokens`` may pass the context: the reply then slides the window, like
``genforge generate``. Commands::

    /reset              forget the conversation (the system prompt stays)
    /system [TEXT]      show or set the system prompt
    /params [k=v ...]   show or set sampling parameters (temperature, top_p, top_k, max_tokens, seed, ...)
    /help               this list
    /quit               leave (so does Ctrl-D)

``run_chat`` takes ``input_fn`` and ``output`` so that tests can script a whole session.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from ..codecs.chat_template import ChatTemplate, template_for
from ..errors import GenforgeError
from ..types import sampling_defaults
from .context_fit import fit_chat

# SamplingParams' defaults, except max_tokens: None = what fits the context (see context_fit)
DEFAULT_PARAMS: dict[str, Any] = {"max_tokens": None, **sampling_defaults("temperature", "top_p", "seed")}
PARAM_TYPES: dict[str, type] = {
    "max_tokens": int, "temperature": float, "top_k": int, "top_p": float, "min_p": float,
    "repetition_penalty": float, "frequency_penalty": float, "presence_penalty": float, "seed": int,
}
PROMPT = "you> "

HELP = """commands:
  /reset              forget the conversation (the system prompt stays)
  /system [TEXT]      show or set the system prompt
  /params [k=v ...]   show or set sampling parameters: {names}
                      (reply k after the start or /reset uses seed + k; seed=none: random;
                      max_tokens=auto: what fits the context)
  /help               this help
  /quit               leave (so does Ctrl-D)
a line starting with // sends the rest as a message beginning with /"""


def parse_params(assignments: list[str], current: Mapping[str, Any]) -> dict[str, Any]:
    """``["temperature=0", "top_k=40"]`` -> the new full parameter dict; raise ``GenforgeError`` if bad.

    All or nothing: one bad value changes nothing. The result is checked as ``SamplingParams``.
    """
    from ..types import SamplingParams

    new = dict(current)
    for item in assignments:
        key, sep, raw = item.partition("=")
        key, raw = key.strip().replace("-", "_"), raw.strip()
        if not sep or not key:
            raise GenforgeError(f"{item!r} is not key=value, e.g. temperature=0.7")
        if key not in PARAM_TYPES:
            raise GenforgeError(f"unknown parameter {key!r}: allowed {', '.join(PARAM_TYPES)}")
        if key in ("seed", "max_tokens") and raw.lower() in ("none", "random", "auto", ""):
            new[key] = None
            continue
        try:
            value: Any = PARAM_TYPES[key](raw)
        except ValueError:
            kind = "an integer" if PARAM_TYPES[key] is int else "a number"
            raise GenforgeError(f"{key}={raw!r} is invalid: expected {kind}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise GenforgeError(f"{key}={raw!r} is invalid: expected a finite number")
        new[key] = value
    SamplingParams(**{k: v for k, v in new.items() if v is not None})  # the one rule; names a bad parameter
    return new


def format_params(params: Mapping[str, Any]) -> str:
    unset = {"max_tokens": "auto"}
    return " ".join(f"{k}={unset.get(k, 'none') if v is None else v}" for k, v in params.items())


class ChatSession:
    """One conversation with a loaded ``TextModel``: history, system prompt and sampling parameters."""

    def __init__(self, tm: Any, system: str | None = None, params: Mapping[str, Any] | None = None,
                 output: TextIO | None = None, name: str = "model", retrieve: Any = None, k: int = 4,
                 watermark: Any = None, safety: Any = None) -> None:
        self.tm = tm
        self.template: ChatTemplate = template_for(tm.meta)
        self.template.check_codec(tm.codec)
        self.out = output if output is not None else sys.stdout
        self.name = name
        self.context = int(tm.context_length)
        self.history: list[dict[str, str]] = []  # user/assistant messages, always whole exchanges
        self.system = self.template.default_system
        if system is not None:
            self._check_system(system)
            self.system = system
        unknown = [k for k in (params or {}) if k not in PARAM_TYPES]
        if unknown:
            raise GenforgeError(f"unknown sampling parameter {unknown[0]!r} for chat: allowed {', '.join(PARAM_TYPES)}")
        self.params = parse_params([], {**DEFAULT_PARAMS, **dict(params or {})})
        self._told_dropping = False
        self.turn = 0  # replies since the start or the last /reset: reply k uses seed + k
        self.watermark = watermark  # a sampling.watermark.WatermarkSettings marking every reply; None = off
        self.safety = safety  # a safety.filters.SafetyFilter: blocked messages refused, blocked replies cut
        self.retriever, self.k = None, k  # with an index: each message gets passages in the system message
        self.sources = ""  # this turn's sources block (never kept in the history)
        if retrieve is not None:
            from ..pipelines.retrieve import open_retriever

            self.retriever = open_retriever(retrieve)

    # -- output ---------------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # -- state ----------------------------------------------------------------------------------------
    def messages(self, extra: list[dict[str, str]] | None = None,
                 history: list[dict[str, str]] | None = None) -> list[dict[str, str]]:
        from ..pipelines.retrieve import with_sources

        hist = self.history if history is None else history
        return with_sources([{"role": "system", "content": self.system}, *hist, *(extra or [])], self.sources, "")

    def render(self, user_text: str) -> str:
        """The prompt the model would get for ``user_text`` with the current history (no trimming)."""
        return self.template.render(self.messages([{"role": "user", "content": user_text}]))

    def _check_system(self, text: str) -> None:
        self.tm.codec.encode(self.template.neutralise(text))  # DataError: a character outside the vocabulary

    def fit(self, user_text: str):
        """The ``ChatWindow`` for ``user_text`` after the history: oldest exchanges dropped to fit (a reply
        longer than the room left slides the window)."""
        return fit_chat(self.messages([{"role": "user", "content": user_text}]), self.template.render,
                        self.tm.codec.encode, self.context, self.params["max_tokens"], drop_oldest=True,
                        slide=True)

    # -- one turn -------------------------------------------------------------------------------------
    def send(self, user_text: str) -> str | None:
        """Generate and print a reply to ``user_text``; on success record the exchange and return the reply."""
        self.tm.codec.encode(self.template.neutralise(user_text))  # name a bad character by its place in the message
        if self.safety is not None:
            from ..safety.filters import refuse_input

            refuse_input(self.safety, [user_text], self.name)
        ctx = self._retrieve(user_text) if self.retriever is not None else None
        self.sources = ctx.block if ctx else ""
        try:
            window = self.fit(user_text)
        finally:
            self.sources = ""
        history = self.history[window.dropped:]
        if window.dropped and not self._told_dropping:
            self.say(f"(the conversation is longer than the model's {self.context}-token context: "
                     "the oldest exchanges are dropped from now on)")
            self._told_dropping = True
        seed = self.params["seed"]
        params = {**self.params, "max_tokens": window.max_tokens, "seed": None if seed is None else seed + self.turn}
        self.turn += 1
        pieces = self.tm.stream(window.prompt, stop=self.template.stop_strings(), watermark=self.watermark, **params)
        if self.safety is not None:
            from ..safety.filters import screened

            pieces = screened(pieces, self.safety, self.name)
        self.out.write(f"{self.name}> ")
        self.out.flush()
        text: list[str] = []
        shown = ""
        try:
            for piece in pieces:
                text.append(piece)
                if not shown:
                    piece = piece.lstrip()  # a reply that starts with a newline starts on the prompt line
                shown += piece
                self.out.write(piece)
                self.out.flush()
        finally:
            if not shown.endswith("\n"):
                self.out.write("\n")
            self.out.flush()
        reply = self.template.clean_reply("".join(text))
        if ctx is not None:
            self._show_grounding(reply, ctx)
        if not reply:
            self.say("(the model gave an empty reply; that exchange is not kept)")
            return None
        self.history = history + [{"role": "user", "content": user_text}, {"role": "assistant", "content": reply}]
        return reply

    def _retrieve(self, user_text: str):
        """The sources block for this message: room is what the system message and the message leave."""
        from ..pipelines.retrieve import context_budget, retrieve_context

        alone = self.template.render([{"role": "system", "content": self.system},
                                      {"role": "user", "content": user_text}])
        budget = context_budget(self.context, len(self.tm.codec.encode(alone)), self.params["max_tokens"])
        return retrieve_context(self.retriever, user_text, self.tm.codec, budget, k=self.k)

    def _show_grounding(self, reply: str, ctx) -> None:
        from ..pipelines.retrieve import ground
        from ..retrieval.context import sources_text

        supports, method = ground(reply, ctx)
        for s in supports:
            if s.supported is False:
                self.say(f"  [unsupported: {s.support:.2f}] {s.sentence}")
        self.say(sources_text(ctx.citations).rstrip())

    # -- commands -------------------------------------------------------------------------------------
    def command(self, line: str) -> bool:
        """Run a /command; return False when the session should end."""
        name, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        if name in ("/quit", "/exit"):
            return False
        if name == "/help":
            self.say(HELP.format(names=", ".join(PARAM_TYPES)))
        elif name == "/reset":
            self.history.clear()
            self._told_dropping = False
            self.turn = 0
            self.say("(conversation cleared)")
        elif name == "/system":
            if not rest:
                self.say(f"system: {self.system}" if self.system else "system: (none)")
            else:
                self._check_system(rest)
                self.system = rest
                self.say("(system prompt set)")
        elif name == "/params":
            if rest:
                new = parse_params(rest.split(), self.params)
                if new["seed"] != self.params["seed"]:
                    self.turn = 0
                self.params = new
            self.say(format_params(self.params))
        else:
            self.say(f"unknown command {name}: try /help")
        return True

    def handle(self, line: str) -> bool:
        """One line of input: a command or a message. Errors print one line; returns False to quit."""
        line = line.rstrip("\r\n")
        if not line.strip():
            return True
        try:
            if line.startswith("/") and not line.startswith("//"):
                return self.command(line)
            self.send(line[1:] if line.startswith("//") else line)
        except GenforgeError as e:
            self.say(f"error: {e}")
        except KeyboardInterrupt:
            self.say("(interrupted; that exchange is not kept)")
        except (RuntimeError, ValueError) as e:  # e.g. an out-of-memory error from torch
            self.say(f"error: generation failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return True


def run_chat(model_name: str | Path | Any, system: str | None = None, params: Mapping[str, Any] | None = None,
             input_fn: Callable[[str], str] = input, output: TextIO | None = None,
             load_kwargs: Mapping[str, Any] | None = None, retrieve: Any = None, k: int = 4,
             watermark: bool = False, watermark_settings: str | Path | None = None, safety: Any = None) -> int:
    """Chat in the terminal until /quit or end of input (Ctrl-D); returns the exit status (0).

    ``model_name`` is anything ``genforge.load`` takes (or an already loaded ``TextModel``);
    ``params`` are sampling parameters over ``DEFAULT_PARAMS``; ``retrieve`` names an index whose passages
    (``k`` per message) go into the system message, the reply then followed by its sources and any
    unsupported sentence; ``watermark`` marks every reply with the green-list watermark of the settings file
    ``watermark_settings`` (default ``$GENFORGE_HOME/watermark.json``); ``safety`` (a settings file, "default" or
    a ``SafetyFilter``) refuses blocked messages and cuts blocked replies; ``load_kwargs`` go to ``genforge.load``
    (``device``, ``quantize``). A model that cannot be loaded, or a bad ``system``/``params``, raises
    ``GenforgeError`` before the conversation starts.
    """
    out = output if output is not None else sys.stdout
    if hasattr(model_name, "stream") and hasattr(model_name, "codec"):
        tm, name = model_name, Path(str(getattr(model_name, "path", None) or "model")).name
    else:
        from ..pipelines import load

        tm, name = load(model_name, **dict(load_kwargs or {})), Path(str(model_name)).name
    if watermark_settings and not watermark:
        raise GenforgeError("--watermark-settings applies with --watermark")
    wfile = None
    if watermark:
        from ..safety.watermark import load_watermark

        wfile = load_watermark(watermark_settings, create=True)
        wfile.register(tm.codec, name)
    if safety is not None and not hasattr(safety, "check_input"):  # a settings file or "default"
        from ..safety.filters import load_filter

        safety = load_filter(safety)
    session = ChatSession(tm, system, params, out, name=name, retrieve=retrieve, k=k,
                          watermark=wfile.settings if wfile else None, safety=safety)
    if not tm.meta.get("chat_template"):
        session.say(f"note: {name} is not a chat model (its genforge.json names no chat_template); using the "
                    f"{session.template.name!r} template anyway, expect plain continuation")
    session.say(f"chatting with {name} ({session.context}-token context, {session.template.name!r} template; "
                f"{format_params(session.params)}). /help for commands, /quit or Ctrl-D to leave.")
    if wfile is not None:
        session.say(f"(replies are watermarked: gamma {wfile.settings.gamma:g}, delta {wfile.settings.delta:g}; "
                    f"settings {wfile.path})")
    if input_fn is input:
        try:
            import readline  # noqa: F401  (line editing and up-arrow history for input())
        except ImportError:
            pass
    while True:
        try:
            line = input_fn(PROMPT)
        except EOFError:
            out.write("\n")
            out.flush()
            return 0
        except KeyboardInterrupt:
            session.say("\n(use /quit or Ctrl-D to leave)")
            continue
        if not session.handle(line):
            return 0
