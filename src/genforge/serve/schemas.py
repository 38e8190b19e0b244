"""Request bodies of the OpenAI-compatible API and the OpenAI error shape.

The pydantic models check types and give the OpenAPI schema; the ranges of the sampling parameters
are ``SamplingParams``'s (shown in the schema from ``SAMPLING_RANGES``, checked once by
``SamplingParams`` itself: ``sampling_params`` turns its error into a 400 naming the parameter).
``APIError`` builds every error response, so all have OpenAI's body ``{"error": {message, type, param,
code}}``.
"""
from __future__ import annotations

from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..types import SAMPLING_RANGES, SamplingParamError, SamplingParams, sampling_defaults

DEFAULTS = sampling_defaults()


def not_a_bool(value):
    """pydantic's lax mode reads true as 1; a boolean where a number belongs is a client bug."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


def _sampling(name: str, description: str, default: Any = ...) -> Any:
    """A sampling parameter's field: its default and documented range are ``SamplingParams``'s."""
    rule = SAMPLING_RANGES[name]
    default = DEFAULTS[name] if default is ... else default
    return Field(default=default, description=f"{description}; {rule.describe()}",
                 json_schema_extra=rule.json_schema())


class APIError(Exception):
    """Raised anywhere in a handler; rendered as an OpenAI error response."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type_: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type_

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class RetrieveOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index: str = Field(min_length=1, max_length=128, description="an index made with `genforge index add`")
    k: int = Field(default=4, ge=1, le=20, description="passages to retrieve")
    filters: dict[str, str] | None = Field(default=None, description="only passages tagged key=value")


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=256)
    max_tokens: int | None = _sampling("max_tokens", "new tokens at most; omitted or null: as many as fit the "
                                       "model's context", None)
    temperature: float = _sampling("temperature", "sampling temperature")
    top_p: float = _sampling("top_p", "nucleus sampling: keep the smallest set of tokens with this much probability")
    n: int = Field(default=1, ge=1, description="choices to generate (at most the server's --max-n)")
    stop: str | list[str] | None = Field(default=None, description="stop sequences; never part of the output")
    seed: int | None = _sampling("seed", "same seed and parameters: same text")
    presence_penalty: float = _sampling("presence_penalty", "subtracted from a token's logit once it appeared")
    frequency_penalty: float = _sampling("frequency_penalty", "subtracted from a token's logit per appearance")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, max_length=256)
    genforge_sliding_window: bool | None = Field(default=None, description=(
        "genforge: an explicit max_tokens may pass the model's context, generation then slides the window "
        "(re-reads its most recent tokens); null: the server's --sliding-window setting"))
    genforge_retrieve: str | RetrieveOptions | Literal[False] | None = Field(default=None, description=(
        "genforge: passages from this index (a name, or {index, k, filters}) enter the prompt, delimited; the "
        "response carries genforge_citations and genforge_grounding; false: none (null: the server's --retrieve)"))

    _numbers = field_validator("max_tokens", "temperature", "top_p", "n", "seed", "presence_penalty",
                               "frequency_penalty", mode="before")(not_a_bool)

    @field_validator("genforge_retrieve", mode="before")
    @classmethod
    def _retrieve(cls, value):
        """One clear message instead of one per member of the union."""
        if value is None or value is False or isinstance(value, str):
            return value
        if isinstance(value, dict):
            try:
                return RetrieveOptions.model_validate(value)
            except ValueError as e:
                err = e.errors()[0] if hasattr(e, "errors") else {"loc": (), "msg": str(e)}
                where = ".".join(str(x) for x in err["loc"])
                raise ValueError(f"{where + ': ' if where else ''}{err['msg']}") from None
        raise ValueError("must be an index name, an object {index, k, filters}, or false")

    def sampling_params(self) -> SamplingParams:
        """The request's ``SamplingParams`` (max_tokens 1 when omitted: the context fit decides it later).

        A value outside ``SamplingParams``'s rule is a 400 naming the parameter, before any model work.
        """
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        try:
            return SamplingParams(max_tokens=1 if self.max_tokens is None else self.max_tokens,
                                  temperature=self.temperature, top_p=self.top_p, stop=tuple(stops), seed=self.seed,
                                  presence_penalty=self.presence_penalty, frequency_penalty=self.frequency_penalty)
        except SamplingParamError as e:
            raise APIError(400, str(e), e.param, "invalid_value") from None


class CompletionRequest(_Sampling):
    prompt: str | list[str] = Field(description="text to continue (a list of strings: one completion each)")
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool = False

    _logprobs = field_validator("logprobs", mode="before")(not_a_bool)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str
    name: str | None = None


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    logprobs: bool = False
    genforge_fit_context: bool = Field(default=False, description=(
        "genforge: leave out the oldest messages (never the system message or the newest) until the prompt "
        "and the reply fit the model's context; the response's genforge_context says how many"))
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    _top_logprobs = field_validator("top_logprobs", mode="before")(not_a_bool)


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=256)
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = Field(default=None, max_length=256)
