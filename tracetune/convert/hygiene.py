"""Dataset hygiene over ``ChatSession`` dicts (``types.py``): duplicates, PII scrubbing, human corrections.

**Duplicates.** ``Deduper().seen(session)`` answers ``"exact"``, ``"normalized"`` or ``None`` and remembers the
session. It keeps one 16-byte BLAKE2b digest per unique key, never the sessions:

* exact key — canonical JSON (sorted keys) of ``messages`` + ``tools`` + ``functions``;
* normalized key — per message: role (``developer`` counts as ``system``), text content (all-text part lists
  joined) case-folded with punctuation removed and whitespace collapsed (``normalize_text``), tool/function calls
  as name + arguments parsed and re-serialised with sorted keys (call ids ignored), ``name`` of function
  messages; plus the tools offered in canonical JSON.

**PII.** ``scrub_session(session, kinds)`` replaces, in message text content (strings and text parts) and in
the string values of tool-call / function-call arguments (re-serialised, so arguments stay valid JSON):

* ``email`` → ``<EMAIL>``: ``local@domain.tld``;
* ``card`` → ``<CARD_NUMBER>``: 13-19 digits starting 2-6, single spaces/dashes allowed, Luhn-valid;
* ``ip`` → ``<IP_ADDRESS>``: dotted-quad IPv4 not glued to a word (``v1.2.3.4`` stays); IPv6 that ``ipaddress``
  accepts, with at least two non-empty groups (``::1`` stays);
* ``phone`` → ``<PHONE>``: 7-15 digits in separated groups: ``+`` prefixed (8+ digits), a ``(555)`` area code,
  or 3+ groups, all after the first of 2+ digits (two groups only as ``0…`` trunk + number); not dates
  (``2024-01-15``, ``15.01.2024``), not thousands (``1 234 567``), not bare digit runs (``4155552671`` stays:
  ids and timestamps look the same).

Input that is not ``ChatSession``-shaped raises ``InvalidInput(code="malformed_session")`` everywhere here.

Why regexes and not a library: the candidates on PyPI do not fit an offline, fast, dependency-light exporter.
presidio needs spaCy models downloaded at run time; scrubadub (last release 2023) pulls scikit-learn, a pinned
textblob, dateparser and faker, and its name detection needs NLP models; datafog's light core is itself a set of
regexes (no Luhn check) plus an opt-in telemetry module. None scrubs inside tool-call JSON. Precompiled regexes
with validation callbacks (Luhn, ``ipaddress``, shape rules) are fast and table-tested in
``tests/convert/test_hygiene.py``. Names and street addresses are out of scope (they need NER).

**Corrections.** ``apply_correction(session, correction)`` replaces the final assistant message with a human
correction (LangSmith feedback ``correction``) and drops any message after it (tool results of the old calls).
Accepted ``correction`` shapes:

1. ``str`` — the corrected text: ``{"role": "assistant", "content": text}``;
2. a dict with any of ``role``/``type``/``lc``/``content``/``tool_calls``/``function_call`` — one assistant
   message in any form ``messages.message_from_any`` reads (OpenAI role dict, LangChain lc-serialized or plain
   dict); without ``role``/``type`` it is taken as the assistant's (``tool_calls`` may then be OpenAI calls or
   LangChain parsed calls ``{"name", "args"}``); id-less calls get ``call_correction_<k>``; a role other than
   assistant, or a message ``message_from_any`` refuses, raises ``InvalidInput`` (``code`` = its reason);
3. otherwise, the first of these keys that is present: ``outputs``, ``output``, ``message`` (resolved again by
   these rules), ``choices`` (an OpenAI response: the first choice's ``message``), ``generations`` (a
   LangChain LLM output, flat or ``[[...]]``: the first generation's ``message``, else its ``text``).

Anything else raises ``InvalidInput(field="correction…")``. The corrected message carries no ``weight``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable
from typing import Any, cast

import orjson

from tracetune.chat.types import ChatMessage, ChatSession
from tracetune.convert.messages import ConversionError, message_from_any
from tracetune.convert.records import chat_session_shape
from tracetune.errors import InvalidInput

# ── duplicates ────────────────────────────────────────────────────────────────────────────────────────────

_NOT_WORD_OR_SPACE = re.compile(r"[^\w\s]+")


def normalize_text(text: str) -> str:
    """Case-folded, punctuation removed, whitespace collapsed to single spaces."""
    return " ".join(_NOT_WORD_OR_SPACE.sub("", text.casefold()).split())


def _digest(value: Any) -> bytes:
    return hashlib.blake2b(orjson.dumps(value, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


def exact_key(session: ChatSession) -> bytes:
    """Digest of the canonical JSON of messages + tools + functions."""
    return _digest([session.get("messages"), session.get("tools"), session.get("functions")])


def _canonical_arguments(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return normalize_text(arguments)
    return arguments


def _normalized_content(content: Any) -> Any:
    if isinstance(content, str):
        return normalize_text(content)
    if isinstance(content, list):
        if all(isinstance(p, dict) and p.get("type") == "text" for p in content):
            return normalize_text(" ".join(str(p.get("text", "")) for p in content))
        return [
            _normalized_content(p.get("text", "")) if isinstance(p, dict) and p.get("type") == "text" else p
            for p in content
        ]
    return content


def normalized_key(session: ChatSession) -> bytes:
    """Digest of the normalised conversation (see the module docstring)."""
    parts: list[Any] = []
    for m in session.get("messages") or ():
        role = m.get("role")
        calls = [
            [tc.get("function", {}).get("name"), _canonical_arguments(tc.get("function", {}).get("arguments"))]
            for tc in m.get("tool_calls") or ()
        ]
        fc = m.get("function_call")
        if fc:
            calls.append([fc.get("name"), _canonical_arguments(fc.get("arguments"))])
        name = m.get("name") if role == "function" else None
        parts.append(["system" if role == "developer" else role, _normalized_content(m.get("content")), calls, name])
    return _digest([parts, session.get("tools"), session.get("functions")])


class Deduper:
    """Streaming duplicate detector; memory is one 16-byte digest per unique exact and normalized key."""

    __slots__ = ("_exact", "_normalized", "counts")

    def __init__(self) -> None:
        self._exact: set[bytes] = set()
        self._normalized: set[bytes] = set()
        self.counts: dict[str, int] = {"exact": 0, "normalized": 0}

    def seen(self, session: ChatSession) -> str | None:
        """``"exact"``/``"normalized"`` when an earlier session matched, else ``None``; remembers this one."""
        with chat_session_shape:
            key = exact_key(session)
            if key in self._exact:
                self.counts["exact"] += 1
                return "exact"
            norm = normalized_key(session)
        self._exact.add(key)
        if norm in self._normalized:
            self.counts["normalized"] += 1
            return "normalized"
        self._normalized.add(norm)
        return None

    def __len__(self) -> int:  # distinct exact keys seen
        return len(self._exact)


# ── PII ───────────────────────────────────────────────────────────────────────────────────────────────────

PII_KINDS = ("email", "card", "ip", "phone")  # the order they are applied in
PLACEHOLDERS = {"email": "<EMAIL>", "card": "<CARD_NUMBER>", "ip": "<IP_ADDRESS>", "phone": "<PHONE>"}

_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,63}(?![\w-])")
_CARD = re.compile(r"(?<!\d)[2-6]\d(?:[ -]?\d){11,17}(?!\d)")
_IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\w|\.\d)"
)
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:])")
_PHONE = re.compile(
    r"(?<![\w+.\-/:])(?=[+(\d][\d ().\-]{6})"
    r"(?:\+ ?)?(?:\(\d{1,4}\) ?\d{1,8}|\d{1,8})(?:[ .\-](?:\(\d{1,4}\) ?\d{1,8}|\d{1,8}))*"
    r"(?![\w/:])"
)
_DIGIT_RUNS = re.compile(r"\d+")
_HEX_GROUPS = re.compile(r"[0-9A-Fa-f]+")
_HAS_DIGIT = re.compile(r"\d").search


_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_ok(digits: str) -> bool:
    """Luhn checksum of a string of ASCII digits."""
    total = sum(map(int, digits[-1::-2])) + sum(_LUHN_DOUBLED[int(d)] for d in digits[-2::-2])
    return total % 10 == 0


def phone_shape_ok(candidate: str) -> bool:
    """Whether a run of digit groups looks like a phone number (rules in the module docstring)."""
    groups = _DIGIT_RUNS.findall(candidate)
    n = sum(map(len, groups))
    if n < 7 or n > 15:
        return False
    if candidate[0] == "+":
        return n >= 8
    if len(groups) < 2 or any(len(g) < 2 for g in groups[1:]):
        return False
    paren = "(" in candidate
    if len(groups) == 2:
        return paren or (" " in candidate and groups[0][0] == "0")
    if paren:
        return True
    lengths = [len(g) for g in groups]
    if len(lengths) == 3:
        year_first = lengths[0] == 4 and lengths[1] <= 2 and lengths[2] <= 2
        year_last = lengths[0] <= 2 and lengths[1] <= 2 and lengths[2] == 4
        if year_first or year_last:
            return False  # a date
    return not (lengths[0] <= 2 and all(x == 3 for x in lengths[1:]))  # thousands separators


class _Scrubber:
    """Replaces PII in strings for one set of kinds and counts what it replaced."""

    __slots__ = ("counts", "kinds")

    def __init__(self, kinds: frozenset[str], counts: dict[str, int]) -> None:
        self.kinds = kinds
        self.counts = counts

    def _card(self, m: re.Match[str]) -> str:
        digits = m.group().replace(" ", "").replace("-", "")
        if not luhn_ok(digits):
            return m.group()
        self.counts["card"] += 1
        return PLACEHOLDERS["card"]

    def _ipv4(self, m: re.Match[str]) -> str:
        self.counts["ip"] += 1
        return PLACEHOLDERS["ip"]

    def _ipv6(self, m: re.Match[str]) -> str:
        text = m.group()
        if len(_HEX_GROUPS.findall(text)) < 2:
            return text
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            return text
        self.counts["ip"] += 1
        return PLACEHOLDERS["ip"]

    def _phone(self, m: re.Match[str]) -> str:
        if not phone_shape_ok(m.group()):
            return m.group()
        self.counts["phone"] += 1
        return PLACEHOLDERS["phone"]

    def text(self, text: str) -> str:
        kinds = self.kinds
        if "email" in kinds and "@" in text:
            text, n = _EMAIL.subn(PLACEHOLDERS["email"], text)
            self.counts["email"] += n
        if "ip" in kinds and ("::" in text or text.count(":") >= 7):
            text = _IPV6.sub(self._ipv6, text)
        if not _HAS_DIGIT(text):
            return text
        if "card" in kinds:
            text = _CARD.sub(self._card, text)
        if "ip" in kinds and "." in text:
            text = _IPV4.sub(self._ipv4, text)
        if "phone" in kinds:
            text = _PHONE.sub(self._phone, text)
        return text

    def json_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.json_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json_value(v) for v in value]
        return value

    def arguments(self, arguments: str) -> str:
        try:
            parsed = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return self.text(arguments)  # not JSON to begin with: scrub it as text
        scrubbed = self.json_value(parsed)
        return arguments if scrubbed == parsed else orjson.dumps(scrubbed).decode()


def _scrub_function(function: Any, scrub: _Scrubber) -> Any:
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        return function
    new = scrub.arguments(arguments)
    return function if new == arguments else {**function, "arguments": new}


def _scrub_message(message: ChatMessage, scrub: _Scrubber) -> ChatMessage:
    new: dict[str, Any] = dict(message)
    content = message.get("content")
    if isinstance(content, str):
        new["content"] = scrub.text(content)
    elif isinstance(content, list):
        new["content"] = [
            {**p, "text": scrub.text(p["text"])} if isinstance(p, dict) and isinstance(p.get("text"), str) else p
            for p in content
        ]
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        new["tool_calls"] = [
            {**tc, "function": _scrub_function(tc["function"], scrub)}
            if isinstance(tc, dict) and isinstance(tc.get("function"), dict)
            else tc
            for tc in calls
        ]
    fc = message.get("function_call")
    if isinstance(fc, dict):
        new["function_call"] = _scrub_function(fc, scrub)
    return message if new == message else cast(ChatMessage, new)


def scrub_session(session: ChatSession, kinds: Iterable[str] = PII_KINDS) -> tuple[ChatSession, dict[str, int]]:
    """Replace PII of ``kinds`` with placeholders; returns (new session, {kind: replacements}).

    The input is not modified; unchanged messages are shared with it, and the session itself is returned when
    nothing was replaced. Unknown kinds raise ``InvalidInput(field="kinds")``.
    """
    wanted = frozenset(kinds)
    unknown = wanted.difference(PII_KINDS)
    if unknown:
        raise InvalidInput(f"unknown PII kind(s) {sorted(unknown)}; expected some of {PII_KINDS}", field="kinds")
    counts = {k: 0 for k in PII_KINDS if k in wanted}
    scrub = _Scrubber(wanted, counts)
    with chat_session_shape:
        new_messages = [_scrub_message(m, scrub) for m in session.get("messages") or ()]
    if not any(counts.values()):
        return session, counts
    return cast(ChatSession, {**session, "messages": new_messages}), counts


# ── corrections ───────────────────────────────────────────────────────────────────────────────────────────

_MESSAGE_KEYS = ("role", "type", "lc", "content", "tool_calls", "function_call")
_WRAPPER_KEYS = ("outputs", "output", "message")


def _with_call_ids(message: dict[str, Any]) -> dict[str, Any]:
    """Give id-less tool calls ``call_correction_<k>`` (people writing corrections rarely invent ids)."""
    calls = message.get("tool_calls")
    if not isinstance(calls, list) or all(not isinstance(c, dict) or c.get("id") for c in calls):
        return message
    calls = [
        {**c, "id": f"call_correction_{k}"} if isinstance(c, dict) and not c.get("id") else c
        for k, c in enumerate(calls)
    ]
    return {**message, "tool_calls": calls}


def _message(obj: dict[str, Any], field: str) -> ChatMessage:
    msg = _with_call_ids(obj)
    if "role" not in msg and "type" not in msg and "lc" not in msg:
        calls = msg.get("tool_calls")
        parsed_calls = isinstance(calls, list) and any(isinstance(c, dict) and "function" not in c for c in calls)
        msg = {**msg, "type": "ai"} if parsed_calls else {**msg, "role": "assistant"}
    try:
        message = message_from_any(msg)
    except ConversionError as exc:
        raise InvalidInput(exc.detail, field=field, code=exc.reason) from None
    if message["role"] != "assistant":
        raise InvalidInput(f"a correction must be an assistant message, not {message['role']!r}", field=field)
    message.pop("weight", None)
    return message


def correction_message(correction: Any, field: str = "correction") -> ChatMessage:
    """The assistant message a feedback ``correction`` stands for (shapes in the module docstring)."""
    if isinstance(correction, str):
        return {"role": "assistant", "content": correction}
    if not isinstance(correction, dict):
        raise InvalidInput("a correction must be text or an object", field=field)
    if not any(k in correction for k in _MESSAGE_KEYS):
        for key in _WRAPPER_KEYS:
            if key in correction:
                return correction_message(correction[key], f"{field}.{key}")
        choices = correction.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            return correction_message(choices[0].get("message"), f"{field}.choices[0].message")
        generations = correction.get("generations")
        if isinstance(generations, list) and generations:
            first, where = generations[0], f"{field}.generations[0]"
            if isinstance(first, list) and first:
                first, where = first[0], f"{where}[0]"
            if isinstance(first, dict) and first.get("message") is not None:
                return correction_message(first["message"], f"{where}.message")
            if isinstance(first, dict) and isinstance(first.get("text"), str):
                return {"role": "assistant", "content": first["text"]}
        raise InvalidInput(
            "unrecognised correction: expected text, an assistant message, or outputs/content/tool_calls", field=field
        )
    return _message(correction, field)


def apply_correction(session: ChatSession, correction: Any) -> ChatSession:
    """The session with its final assistant message replaced by ``correction`` (input not modified)."""
    message = correction_message(correction)
    with chat_session_shape:
        messages = session.get("messages") or []
        for i in range(len(messages) - 1, -1, -1):
            if messages[i].get("role") == "assistant":
                return cast(ChatSession, {**session, "messages": [*messages[:i], message]})
    raise InvalidInput("the session has no assistant message to correct", field="messages")
