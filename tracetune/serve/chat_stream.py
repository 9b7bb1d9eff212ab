"""Streamed text of one choice → OpenAI ``delta`` objects: content pieces, tool-call deltas, legacy function_call.

When calls can occur (tools or functions offered), the text is watched for the chat format's call blocks
(``<tool_call>{"name": …, "arguments": {…}}</tool_call>``, :mod:`tracetune.chat.format`): text that may be the
start of a block is held back; a block becomes a tool call (first delta: ``index``, ``id``, ``type``, ``name``,
``arguments: ""``; then ``arguments`` fragments) or, for legacy ``functions``, a ``function_call`` delta pair. A
block that does not parse stays content, as in the non-streamed answer. Content is stripped at both ends, as
:func:`~tracetune.chat.format.parse_assistant` strips it, so the streamed pieces join to the same content.

``progressive`` (a constraint guarantees the canonical block): the arguments are streamed as they are generated,
fragment by fragment; otherwise a call is sent once its block closes (it must parse first).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from tracetune.chat.format import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, parse_assistant

Delta = dict[str, Any]
_HEADER = re.compile(r'\s*\{"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"arguments"\s*:\s*')


def new_call_id() -> str:
    """An id in the form the chat format's parser gives (``call_`` + 24 hex)."""
    return f"call_{uuid.uuid4().hex[:24]}"


class DeltaBuilder:
    """Deltas of one streamed choice. :meth:`feed` each new text piece; :meth:`finish` at the end."""

    def __init__(
        self, *, parse_calls: bool, legacy: bool = False, parallel: bool = True, progressive: bool = False
    ) -> None:
        self.parse_calls = parse_calls
        self.legacy = legacy
        self.parallel = parallel and not legacy
        self.progressive = progressive
        self.calls = 0  # calls sent
        self._buf = ""
        self._in_block = False
        self._started = False  # some content was sent (leading whitespace is dropped until then)
        self._ws = ""  # trailing whitespace held back (sent only if more content follows)
        # progressive state of the current block
        self._header_sent = False
        self._scan = 0  # characters of the block body already streamed as arguments
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._args_done = False

    def feed(self, text: str) -> list[Delta]:
        if not self.parse_calls:
            return [{"content": text}] if text else []
        self._buf += text
        out: list[Delta] = []
        while True:
            if not self._in_block:
                at = self._buf.find(TOOL_CALL_OPEN)
                if at == -1:
                    keep = _partial_suffix(self._buf, TOOL_CALL_OPEN)
                    self._content(self._buf[: len(self._buf) - keep], out)
                    self._buf = self._buf[len(self._buf) - keep :]
                    return out
                self._content(self._buf[:at], out)
                self._buf = self._buf[at + len(TOOL_CALL_OPEN) :]
                self._open_block()
                continue
            if self.progressive and self._accepting_calls():
                self._progress(out)
            end = self._buf.find(TOOL_CALL_CLOSE, self._scan if self._header_sent else 0)
            if end == -1 or (self._header_sent and not self._args_done):
                return out
            body, self._buf = self._buf[:end], self._buf[end + len(TOOL_CALL_CLOSE) :]
            self._close_block(body, out)

    def finish(self) -> list[Delta]:
        """What is still held back: an unfinished block or a partial marker goes out as content."""
        if not self.parse_calls:
            return []
        out: list[Delta] = []
        if self._in_block:
            if not self._header_sent:
                self._content(TOOL_CALL_OPEN + self._buf, out)
        else:
            self._content(self._buf, out)
        self._buf = ""
        return out

    def finish_reason(self, engine_reason: str) -> str:
        if self.calls and engine_reason == "stop":
            return "function_call" if self.legacy else "tool_calls"
        return engine_reason

    # -- content -----------------------------------------------------------------------------------------------

    def _content(self, text: str, out: list[Delta]) -> None:
        if not self._started:
            text = text.lstrip()
        if not text:
            return
        core = text.rstrip()
        if not core:
            self._ws += text
            return
        out.append({"content": self._ws + core})
        self._ws = text[len(core) :]
        self._started = True

    # -- blocks ------------------------------------------------------------------------------------------------

    def _accepting_calls(self) -> bool:
        return self.parallel or self.calls == 0 or self._header_sent

    def _open_block(self) -> None:
        self._in_block = True
        self._header_sent = self._args_done = self._in_string = self._escape = False
        self._scan = self._depth = 0

    def _close_block(self, body: str, out: list[Delta]) -> None:
        self._in_block = False
        if self._header_sent:
            return  # streamed already
        parsed = parse_assistant(TOOL_CALL_OPEN + body + TOOL_CALL_CLOSE)
        if parsed["errors"] or not parsed["tool_calls"]:
            self._content(TOOL_CALL_OPEN + body + TOOL_CALL_CLOSE, out)
            return
        for call in parsed["tool_calls"]:
            if not self._accepting_calls():
                return  # one call only (legacy functions, parallel_tool_calls=false): later ones are dropped
            fn = call["function"]
            self._call_header(fn["name"], out)
            self._arguments(fn["arguments"], out)

    def _call_header(self, name: str, out: list[Delta]) -> None:
        if self.legacy:
            out.append({"function_call": {"name": name, "arguments": ""}})
        else:
            head = {"index": self.calls, "id": new_call_id(), "type": "function"}
            out.append({"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]})
        self.calls += 1

    def _arguments(self, fragment: str, out: list[Delta]) -> None:
        if not fragment:
            return
        if self.legacy:
            out.append({"function_call": {"arguments": fragment}})
        else:
            out.append({"tool_calls": [{"index": self.calls - 1, "function": {"arguments": fragment}}]})

    def _progress(self, out: list[Delta]) -> None:
        """Stream the arguments of the current block as far as they were generated."""
        if not self._header_sent:
            match = _HEADER.match(self._buf)
            if match is None or match.end() == len(self._buf):
                return  # (at the end: whitespace before the arguments may go on)
            self._call_header(json.loads(match.group(1)), out)
            self._header_sent = True
            self._scan = match.end()
        if self._args_done:
            return
        start = self._scan
        for pos in range(start, len(self._buf)):
            ch = self._buf[pos]
            if self._in_string:
                if self._escape:
                    self._escape = False
                elif ch == "\\":
                    self._escape = True
                elif ch == '"':
                    self._in_string = False
            elif ch == '"':
                self._in_string = True
            elif ch in "{[":
                self._depth += 1
            elif ch in "}]":
                self._depth -= 1
                if self._depth == 0:
                    self._args_done = True
                    self._scan = pos + 1
                    self._arguments(self._buf[start : self._scan], out)
                    return
        self._scan = len(self._buf)
        self._arguments(self._buf[start:], out)


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of ``text`` that is a proper beginning of ``marker``."""
    for k in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:k]):
            return k
    return 0
