"""Chat templates: how a list of role messages becomes the one prompt string a text model continues.

A template is the only place that knows a chat model's special strings (its role headers and the turn
separator). Our chat models are fine-tuned character models, so the template is written in the base
corpus's own format: a speaker line ("USER.") then the speech, and a blank line between speeches::

    SYSTEM.
    Answer as a Shakespeare character.

    USER.
    How now, good fellow?

    ASSISTANT.

Message content is data, never structure: ``render`` collapses blank lines inside content (so it can
never end a turn) and breaks any content line that equals a role header (``ASSISTANT.`` becomes
``ASSISTANT:``), so a user cannot forge a turn. Importing this module does not import torch.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import GenforgeError

ROLES = ("system", "user", "assistant")
DEFAULT_TEMPLATE = "shakespeare"


@dataclass(frozen=True)
class ChatTemplate:
    """Role headers + turn separator; ``render`` messages, ``stop_strings`` and ``clean_reply`` replies."""

    name: str
    system_header: str  # written before the system message, e.g. "SYSTEM.\n"
    user_header: str  # e.g. "USER.\n"
    assistant_header: str  # e.g. "ASSISTANT.\n"; a generation prompt ends with it
    turn_end: str = "\n\n"  # after every message; must contain a blank line ("\n\n")
    default_system: str = ""  # used when the messages have no system message ("" = no system turn)

    def __post_init__(self) -> None:
        headers = (self.system_header, self.user_header, self.assistant_header)
        if any(not h.strip() or not h.endswith("\n") or "\n" in h[:-1] for h in headers):
            raise GenforgeError(f"chat template {self.name!r}: each role header must be one non-empty line "
                                "ending with a newline, e.g. 'USER.\\n'")
        if len({h.strip().casefold() for h in headers}) != 3:
            raise GenforgeError(f"chat template {self.name!r}: the three role headers must differ")
        if "\n\n" not in self.turn_end or self.turn_end.strip():
            raise GenforgeError(f"chat template {self.name!r}: turn_end must be whitespace containing a blank "
                                "line ('\\n\\n'), so content (whose blank lines are collapsed) cannot end a turn")

    # -- structure ------------------------------------------------------------------------------------
    def header(self, role: str) -> str:
        """The header line written before a message of ``role``."""
        if role == "system":
            return self.system_header
        if role == "user":
            return self.user_header
        if role == "assistant":
            return self.assistant_header
        raise GenforgeError(f"role {role!r} is unknown: allowed {', '.join(map(repr, ROLES))}")

    def special_strings(self) -> tuple[str, ...]:
        """Every string with structural meaning (the headers and the turn separator)."""
        return (self.system_header, self.user_header, self.assistant_header, self.turn_end)

    def stop_strings(self) -> tuple[str, ...]:
        """What ends an assistant reply: the turn separator, or a role header on the next line."""
        return (self.turn_end,) + tuple("\n" + h for h in (self.user_header, self.system_header,
                                                           self.assistant_header))

    def neutralise(self, content: str) -> str:
        """Content as data: newlines normalised, blank lines collapsed, header-like lines broken, trimmed."""
        text = content.replace("\r\n", "\n").replace("\r", "\n")
        headers = {h.strip().casefold() for h in (self.system_header, self.user_header, self.assistant_header)}
        lines = []
        for line in text.split("\n"):
            line = line.rstrip()
            if not line.strip():
                continue  # a blank line would end the turn
            if line.strip().casefold() in headers:
                line = line.strip().rstrip(".") + ":"  # "ASSISTANT." -> "ASSISTANT:": no longer a header
            lines.append(line)
        out = "\n".join(lines).strip()
        while self.turn_end in out:  # defence in depth; cannot happen once blank lines are gone
            out = out.replace(self.turn_end, "\n")
        return out

    def clean_reply(self, text: str) -> str:
        """A generated reply as it goes into the history: cut at the first stop string, whitespace stripped."""
        cut = min((i for i in (text.find(s) for s in self.stop_strings()) if i >= 0), default=-1)
        if cut >= 0:
            text = text[:cut]
        return text.strip()

    # -- rendering ------------------------------------------------------------------------------------
    def validate(self, messages: Any, add_generation_prompt: bool = True) -> list[tuple[str, str]]:
        """Check ``messages`` and return ``(role, neutralised content)`` pairs; raise ``GenforgeError``."""
        if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)) or not messages:
            raise GenforgeError("messages must be a non-empty list of {'role': 'system'|'user'|'assistant', "
                                "'content': str} objects")
        out: list[tuple[str, str]] = []
        for i, m in enumerate(messages):
            if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
                raise GenforgeError(f"message {i} must be an object with 'role' and 'content', got "
                                    f"{_short(m)}")
            role, content = m["role"], m["content"]
            if role not in ROLES:
                raise GenforgeError(f"message {i}: role {_short(role)} is unknown: allowed 'system', 'user', "
                                    "'assistant'")
            if not isinstance(content, str):
                raise GenforgeError(f"message {i} ({role}): content must be a string, got {type(content).__name__}")
            if role == "system" and i != 0:
                raise GenforgeError(f"message {i}: a system message may only come first (at most one per "
                                    "conversation)")
            text = self.neutralise(content)
            if role != "system" and not text:
                raise GenforgeError(f"message {i} ({role}) is empty: give it some text")
            out.append((role, text))
        if add_generation_prompt and out[-1][0] != "user":
            raise GenforgeError(f"the last message must be from the user to generate a reply (got "
                                f"{out[-1][0]!r})")
        return out

    def render(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True) -> str:
        """The prompt text for ``messages``; ends with the assistant header when ``add_generation_prompt``.

        Without a system message the template's ``default_system`` is used; an explicit system message
        with empty content means no system turn. Without ``add_generation_prompt`` the text ends with
        ``turn_end`` (a whole transcript, as used for fine-tuning).
        """
        turns = self.validate(messages, add_generation_prompt)
        if turns[0][0] != "system":
            turns.insert(0, ("system", self.neutralise(self.default_system)))
        parts = [self.header(role) + text + self.turn_end for role, text in turns
                 if not (role == "system" and not text)]
        if add_generation_prompt:
            parts.append(self.assistant_header)
        return "".join(parts)

    def check_codec(self, codec: Any) -> None:
        """Raise ``GenforgeError`` unless ``codec`` can encode every special string and the default system."""
        for s in (*self.special_strings(), self.default_system):
            try:
                codec.encode(s)
            except GenforgeError as e:
                raise GenforgeError(f"chat template {self.name!r} does not fit the model's vocabulary: {e}") from None


def _short(value: Any, n: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


SHAKESPEARE = ChatTemplate(
    name="shakespeare",
    system_header="SYSTEM.\n",
    user_header="USER.\n",
    assistant_header="ASSISTANT.\n",
    turn_end="\n\n",
    default_system="Answer as a Shakespeare character.",
)

TEMPLATES: dict[str, ChatTemplate] = {SHAKESPEARE.name: SHAKESPEARE}


def template_for(meta: Mapping[str, Any] | None) -> ChatTemplate:
    """The template a model was fine-tuned with (``meta["chat_template"]``), else the default one.

    An unknown template name is a ``GenforgeError`` (the model needs a newer genforge).
    """
    name = meta.get("chat_template") if isinstance(meta, Mapping) else None
    if not name:
        return TEMPLATES[DEFAULT_TEMPLATE]
    if name not in TEMPLATES:
        raise GenforgeError(f"the model uses chat template {name!r}, which this genforge does not know "
                            f"(known: {', '.join(sorted(TEMPLATES))}); upgrade genforge")
    return TEMPLATES[name]
