"""gpt-oss harmony: messages with a header, a channel and an optional recipient.

The prompt ends with ``<|start|>assistant``; the model writes messages such as::

    <|channel|>analysis<|message|>reasoning<|end|>
    <|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Tokyo"}<|call|>
    <|start|>assistant<|channel|>final<|message|>answer<|return|>

States and delimiters::

    BETWEEN  <|channel|> or <|start|> opens a HEADER; whitespace is framing; other text, and any
             other harmony token, is malformed text.
    HEADER   (also the initial state: the prompt's ``<|start|>assistant`` header goes on, so a
             recipient may come first, `` to=functions.f<|channel|>commentary json<|message|>``)
             buffered until <|message|>, then classified: a recipient (``to=X``, in the role or
             after the channel) makes a tool call named X without ``functions.``; else channel
             ``analysis`` is reasoning; anything else (``final``, a ``commentary`` preamble, no
             channel) is text. <|start|> or <|end|>/<|call|>/<|return|> before <|message|>:
             the raw header (and that end token) is malformed text.
    BODY     reasoning and text stream; a tool body is buffered. <|end|>, <|call|>, <|return|>
             close the message (ReasoningEnd for analysis; the tool body must be a JSON object,
             else the raw message is malformed text); <|start|>/<|channel|> close it too and
             open the next header.

End of stream: ``<|call|>`` and ``<|return|>`` are stop tokens that a detokenizer may drop, so an
open message is closed as if its end token had come (a tool body is validated as usual); an open
header is malformed text. Analysis is always reasoning: gpt-oss cannot turn reasoning off, and the
channel is unambiguous, so ``reasoning_enabled``/``reasoning_started`` do not apply.
"""

from __future__ import annotations

import re

from kvyard.parsing.base import Delimiters, GapText, StreamParser
from kvyard.parsing.jsoncalls import decode_arguments

START = "<|start|>"
END = "<|end|>"
MESSAGE = "<|message|>"
CHANNEL = "<|channel|>"
CONSTRAIN = "<|constrain|>"
RETURN = "<|return|>"
CALL = "<|call|>"

_ENDS = (END, CALL, RETURN)
_BETWEEN = Delimiters((START, CHANNEL, MESSAGE, CONSTRAIN, *_ENDS))
_HEADER = Delimiters((MESSAGE, START, *_ENDS))
_BODY = Delimiters((START, CHANNEL, *_ENDS))

_RECIPIENT = re.compile(r"to=([^\s<]+)")
_CHANNEL_NAME = re.compile(r"\s*([A-Za-z0-9_]+)")

BETWEEN, HEADER, REASONING, TEXT, TOOL = range(5)


class HarmonyParser(StreamParser):
    name = "harmony"
    special_tokens = (START, END, MESSAGE, CHANNEL, CONSTRAIN, RETURN, CALL)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._gap = GapText()
        self._header: list[str] = []
        self._body: list[str] = []
        self._raw_header = ""
        self._tool = ""
        self._open_header("")  # the prompt ended with <|start|>assistant: the header goes on

    def _enter(self, state: int) -> None:
        self._state = state
        self._delims = _HEADER if state == HEADER else (_BETWEEN if state == BETWEEN else _BODY)

    def _open_header(self, opener: str) -> None:
        self._gap.close()
        self._header = [opener]
        self._enter(HEADER)

    def _header_failed(self, end: str) -> None:
        raw = "".join(self._header) + end
        if raw and not raw.isspace():
            self._malformed(raw)

    def _classify_header(self) -> None:
        header = "".join(self._header)
        self._raw_header = header + MESSAGE
        recipient = _RECIPIENT.search(header)
        if recipient:
            self._tool = recipient.group(1).removeprefix("functions.")
            self._body = []
            self._enter(TOOL)
            return
        channel = ""
        at = header.find(CHANNEL)
        if at != -1:
            match = _CHANNEL_NAME.match(header, at + len(CHANNEL))
            channel = match.group(1) if match else ""
        self._enter(REASONING if channel == "analysis" else TEXT)

    def _close_message(self, end: str) -> None:
        state = self._state
        if state == REASONING:
            self._reasoning_end()
        elif state == TOOL:
            body = "".join(self._body)
            self._body = []
            self._emit_calls(decode_arguments(self._tool, body), self._raw_header + body + end)
        self._enter(BETWEEN)

    def _content(self, text: str) -> None:
        state = self._state
        if state == TEXT:
            self._text(text)
        elif state == REASONING:
            self._reasoning(text)
        elif state == TOOL:
            self._body.append(text)
        elif state == HEADER:
            self._header.append(text)
        else:
            self._gap.add(self, text)

    def _delimiter(self, delim: str) -> None:
        state = self._state
        if state == BETWEEN:
            if delim == START or delim == CHANNEL:
                self._open_header(delim)
            else:
                self._gap.close()
                self._malformed(delim)
        elif state == HEADER:
            if delim == MESSAGE:
                self._classify_header()
            elif delim == START:
                self._header_failed("")
                self._open_header(delim)
            else:
                self._header_failed(delim)
                self._enter(BETWEEN)
        elif delim in _ENDS:
            self._close_message(delim)
        else:  # <|start|> or <|channel|> without an end token: close, then open the next header
            self._close_message("")
            self._open_header(delim)

    def _end_of_stream(self) -> None:
        state = self._state
        if state == HEADER:
            self._header_failed("")
        elif state != BETWEEN:
            self._close_message("")
        self._gap.close()
        self._enter(BETWEEN)
