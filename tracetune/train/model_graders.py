"""Model graders, as OpenAI specifies them: ``score_model`` (a model scores the sample: a number in ``range``) and
``label_model`` (a model labels it: the reward is 1 for one of ``passing_labels``).

The grader's ``input`` (chat messages whose contents are templates, rendered by :mod:`tracetune.train.graders`)
goes to ``{base_url}/chat/completions`` of a :class:`ModelEndpoint` — any OpenAI-compatible server: tracetune
itself by default (the base model or any fine-tuned one it serves), or another one
(``TRACETUNE_GRADER_BASE_URL`` / ``TRACETUNE_GRADER_API_KEY``). The answer is constrained to JSON
(``response_format`` ``json_schema``: ``{"result": number}``, or ``{"result": one of the labels}``), which
tracetune's own serving enforces while decoding, so even a small local model answers in a shape that parses.

A score is mapped from ``range`` onto [0, 1] (and clamped), so that a ``multi`` formula and training see rewards
of one scale. What goes wrong while grading is a :class:`RunError` with OpenAI's flag:
``model_grader_server_error`` (unreachable, an HTTP error: its details say which), ``model_grader_parse_error``
(an answer that is not the JSON asked for), ``model_grader_refusal_error`` (the model refused).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tracetune.errors import InvalidInput
from tracetune.train.grader_sandbox import RunError

if TYPE_CHECKING:
    from tracetune.config import Settings

MODEL_TYPES = ("score_model", "label_model")
ROLES = ("system", "developer", "user", "assistant")
SAMPLING_PARAMS = ("temperature", "top_p", "seed", "max_completions_tokens", "reasoning_effort")
DEFAULT_MAX_TOKENS = 32  # {"result": …} needs a handful of tokens
API_KEY_ENV = "TRACETUNE_GRADER_API_KEY"


@dataclass(frozen=True)
class ModelEndpoint:
    """An OpenAI-compatible API (``base_url`` ends in ``/v1``) the model graders call."""

    base_url: str
    api_key: str | None = None
    timeout_s: float = 300.0

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /chat/completions``; the response body. Raises ``RunError(model_grader_server_error)``."""
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        url = f"{self.base_url.rstrip('/')}/chat/completions"
        try:
            response = httpx.post(url, json=body, headers=headers, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise RunError("model_grader_server_error", f"{url}: {exc}", "model_grader_server_error_details") from exc
        if response.status_code >= 400:
            raise RunError(
                "model_grader_server_error",
                f"{url} answered {response.status_code}: {response.text[:500]}",
                "model_grader_server_error_details",
            )
        try:
            out = response.json()
        except ValueError as exc:
            raise RunError("model_grader_server_error", f"{url} answered with no JSON", "details") from exc
        return out if isinstance(out, dict) else {}


def endpoint_from_settings(settings: Settings, api_key: str | None = None) -> ModelEndpoint:
    """The grader endpoint ``settings`` name: ``grader_base_url``, else this tracetune server's own ``/v1``; the
    key ``grader_api_key``, else ``api_key`` (the caller's own, on the graders API)."""
    base_url = settings.grader_base_url or f"{own_url(settings)}/v1"
    return ModelEndpoint(base_url, settings.grader_api_key or api_key)


def own_url(settings: Settings) -> str:
    """This tracetune server's root URL, as its own process reaches it (``http://HOST:PORT``)."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"


def validate_model_grader(grader: Mapping[str, Any], where: str, check_template: Callable[[str, str], None]) -> None:
    """The fields of a score_model / label_model grader; raises :class:`InvalidInput` naming the field.
    ``check_template(text, field)`` checks one template."""
    model = grader.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidInput("model must name the model that grades (one tracetune serves, or the endpoint's)",
                           field=f"{where}.model")  # fmt: skip
    messages = grader.get("input")
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("input must be a non-empty list of chat messages", field=f"{where}.input")
    for i, message in enumerate(messages):
        at = f"{where}.input[{i}]"
        if not isinstance(message, Mapping) or message.get("role") not in ROLES:
            raise InvalidInput(f"a message needs a role, one of {', '.join(ROLES)}", field=f"{at}.role")
        for j, text in enumerate(_texts(message.get("content"), f"{at}.content")):
            check_template(text, f"{at}.content" if isinstance(message.get("content"), str) else f"{at}.content[{j}]")
    params = grader.get("sampling_params") or {}
    if not isinstance(params, Mapping):
        raise InvalidInput("sampling_params must be an object", field=f"{where}.sampling_params")
    for key in params:
        if key not in SAMPLING_PARAMS:
            raise InvalidInput(f"unknown sampling parameter {key!r}; expected {', '.join(SAMPLING_PARAMS)}",
                               field=f"{where}.sampling_params.{key}")  # fmt: skip
    if grader["type"] == "score_model":
        lo, hi = score_range(grader, where)
        if not lo < hi:
            raise InvalidInput("range must be [low, high] with low < high", field=f"{where}.range")
        return
    labels = grader.get("labels")
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) and x for x in labels):
        raise InvalidInput("labels must list at least two labels", field=f"{where}.labels")
    passing = grader.get("passing_labels")
    if not isinstance(passing, list) or not passing or any(x not in labels for x in passing):
        raise InvalidInput("passing_labels must list some of the labels", field=f"{where}.passing_labels")


def score_range(grader: Mapping[str, Any], where: str = "grader") -> tuple[float, float]:
    given = grader.get("range", [0, 1])
    if (
        not isinstance(given, list | tuple)
        or len(given) != 2
        or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in given)
    ):
        raise InvalidInput("range must be two numbers [low, high]", field=f"{where}.range")
    return float(given[0]), float(given[1])


def _texts(content: Any, field: str) -> list[str]:
    """A message content's texts: a string, or a list of text parts (``{"type": "input_text", "text": …}``)."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list) and all(isinstance(p, Mapping) and isinstance(p.get("text"), str) for p in content):
        return [p["text"] for p in content]
    raise InvalidInput("content must be a string or a list of text parts", field=field)


@dataclass
class ModelGrade:
    """What the grading model said: the reward, the model that answered and the tokens it used."""

    reward: float
    model: str | None
    usage: dict[str, Any] | None


def grade_with_model(grader: Mapping[str, Any], render: Any, endpoint: ModelEndpoint | None) -> ModelGrade:
    """Ask the grading model (``render(text)`` fills a template in); raises :class:`RunError`."""
    if endpoint is None:
        raise RunError(
            "model_grader_server_error",
            "no model endpoint to grade with: set TRACETUNE_GRADER_BASE_URL (or run the grader on a tracetune server)",
            "model_grader_server_error_details",
        )
    messages = [
        {"role": m["role"], "content": "".join(render(t) for t in _texts(m["content"], "content"))}
        for m in grader["input"]
    ]
    labels = grader.get("labels")
    result: dict[str, Any] = (
        {"type": "number"} if grader["type"] == "score_model" else {"type": "string", "enum": labels}
    )
    params = dict(grader.get("sampling_params") or {})
    body: dict[str, Any] = {
        "model": grader["model"],
        "messages": messages,
        "temperature": params.get("temperature", 0.0),
        "max_tokens": params.get("max_completions_tokens", DEFAULT_MAX_TOKENS),
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "grade",
                "strict": True,
                "schema": {
                    "type": "object", "properties": {"result": result}, "required": ["result"],
                    "additionalProperties": False,
                },
            },
        },
    }  # fmt: skip
    for key in ("top_p", "seed", "reasoning_effort"):
        if key in params:
            body[key] = params[key]
    response = endpoint.complete(body)
    try:
        message = response["choices"][0]["message"]
    except (KeyError, IndexError, TypeError) as exc:
        raise RunError("model_grader_parse_error", "the grading model's response has no message") from exc
    if message.get("refusal"):
        raise RunError("model_grader_refusal_error", f"the grading model refused: {message['refusal']}")
    text = message.get("content") or ""
    try:
        value = json.loads(text)["result"]
    except (ValueError, KeyError, TypeError) as exc:
        raise RunError("model_grader_parse_error", f"not the JSON asked for: {text[:200]!r}") from exc
    if grader["type"] == "label_model":
        if value not in (labels or ()):
            raise RunError("model_grader_parse_error", f"{value!r} is not one of the labels")
        reward = float(value in grader["passing_labels"])
    else:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise RunError("model_grader_parse_error", f"the score {value!r} is not a number")
        lo, hi = score_range(grader)
        reward = min(1.0, max(0.0, (float(value) - lo) / (hi - lo)))
    return ModelGrade(reward, response.get("model"), response.get("usage"))
