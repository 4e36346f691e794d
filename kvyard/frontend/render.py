"""Conversation -> prompt token ids, through the model's own chat template.

Pure given the tokenizer. ``to_template_messages`` maps kvyard's neutral conversation onto the
Hugging Face chat-template message shape; ``render`` applies the template and tokenizes the
result (no special tokens added twice); ``render_prompt`` returns just the ids.

Reasoning follows the replay *policy*, not the template. Templates carry their own history rule
(Qwen3's drops every ``reasoning_content`` before the last user query, and even strips a
``<think>`` block written into the content), so a policy that keeps more could not be expressed
through them. When the template's turn format can be learned (``turn_format``), ``render``:

1. passes the assistant messages to the template *without* ``reasoning_content``;
2. locates each assistant turn's span in the rendered text: from after the assistant header
   (``<|im_start|>assistant\\n``) to the turn's end token (``<|im_end|>``);
3. writes every ``ReasoningPart`` still in the conversation (``kvyard.policies.replay`` has
   already removed what the policy drops) at the start of its span in the template's own
   reasoning delimiters, exactly as the model generates it: ``<think>\\n`` + reasoning +
   ``\\n</think>\\n\\n`` + content (reasoning stripped of ``\\n``, content of leading ``\\n``, as the
   template does for the turn it keeps);
4. tokenizes piecewise at the span boundaries, and for a span whose message ``history`` knows
   (``kvyard.frontend.history``) uses the stored generated ids instead of tokenizing its text.

Piecewise tokenization is the same on every turn, so the prompt of turn N+1 starts with the
prompt of turn N followed by turn N's generated ids, when the earlier turns render the same.
The last piece, the generation prompt, is split after the assistant header: its tail
(``turn_tail``, e.g. ``<think>\\n\\n</think>\\n\\n`` with thinking off) belongs to the turn the model
generates and is stored with it.

The format is learned by rendering four probe conversations once per tokenizer: the assistant
header is the generation prompt (or its longest prefix that also precedes an earlier assistant
turn's text), the end marker the special token that follows that text, and the reasoning
delimiters the text around ``reasoning_content`` in the last turn. Per family: ChatML families
(Qwen3, GLM-style, Nemotron, Qwen3-Coder) are learned completely; templates that never render
``reasoning_content`` (DeepSeek-R1 drops all reasoning; gpt-oss reads ``thinking``) have no
reasoning delimiters, so their reasoning goes to the template as ``reasoning_content`` and the
template's own rule applies (for DeepSeek-R1 and gpt-oss that rule is the profile's policy), while
token-exact splicing still works. When the format cannot be learned, or the rendered text does not
have exactly one header per assistant message plus the generation prompt (e.g. a message quotes
the header text), ``render`` falls back to the template's own rendering tokenized whole.

Cost: one template render and one tokenizer call per piece (2 per assistant turn + 2); the probe
(4 renders) once per tokenizer.
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

from kvyard.conversation import Conversation, ReasoningPart, TextPart, ToolCallPart, ToolResultPart
from kvyard.errors import InvalidRequest
from kvyard.frontend.history import turn_key

RESERVED_PREFIX = "kvyard_"
"""``template_kwargs`` keys with this prefix are kvyard's (e.g. ``kvyard_replay``), never the template's."""


class _Lookup(Protocol):
    def get(self, key: str) -> Sequence[int] | None: ...


class TurnFormat(msgspec.Struct, frozen=True):
    """How the chat template frames one assistant turn."""

    header: str
    """Opens an assistant turn, e.g. ``<|im_start|>assistant\\n``."""
    end: str
    """Ends it: the stop token the model generates, e.g. ``<|im_end|>``."""
    think_open: str | None = None
    """Opens kept reasoning, e.g. ``<think>\\n``; None when the template never renders reasoning."""
    think_close: str | None = None
    """Closes it, e.g. ``\\n</think>\\n\\n``."""


class RenderedPrompt(msgspec.Struct):
    text: str
    """The prompt text (spliced spans as their text; the ids are what counts)."""
    ids: list[int]
    turn_tail: list[int] = msgspec.field(default_factory=list)
    """The prompt's last ids after the assistant header: the start of the turn the model generates."""
    turns: int = 0
    """Assistant turns located in the text (0 when the template's own rendering was used whole)."""
    spliced: int = 0
    """Assistant turns rendered as their stored generated ids."""
    template_s: float = 0.0
    """Seconds spent in the chat template (for tracing)."""
    tokenize_s: float = 0.0
    """Seconds spent tokenizing (for tracing)."""


def to_template_messages(conv: Conversation) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if conv.system:
        messages.append({"role": "system", "content": conv.system})
    for msg in conv.messages:
        # Separate text blocks (e.g. Claude Code's <system-reminder> and the prompt) by a newline.
        text = "\n".join(p.text for p in msg.parts if isinstance(p, TextPart))
        if msg.role in ("system", "developer"):
            messages.append({"role": "system", "content": text})
        elif msg.role == "assistant":
            entry: dict[str, Any] = {"role": "assistant", "content": text}
            reasoning = "".join(p.text for p in msg.parts if isinstance(p, ReasoningPart) and not p.redacted)
            if reasoning:
                entry["reasoning_content"] = reasoning
            calls = [p for p in msg.parts if isinstance(p, ToolCallPart)]
            if calls:
                entry["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in calls
                ]
            messages.append(entry)
        else:
            results = [p for p in msg.parts if isinstance(p, ToolResultPart)]
            for r in results:
                messages.append({"role": "tool", "tool_call_id": r.tool_call_id, "content": r.content})
            if text or not results:
                messages.append({"role": "user", "content": text})
    return messages


def template_tools(conv: Conversation) -> list[dict[str, Any]] | None:
    if not conv.tools:
        return None
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in conv.tools
    ]


RENDERER_OPTIONS = frozenset(
    ("conversation", "tools", "documents", "chat_template", "add_generation_prompt", "continue_final_message", "tokenize",
     "padding", "truncation", "max_length", "return_tensors", "return_dict", "return_assistant_tokens_mask", "tokenizer_kwargs")
)  # fmt: skip
"""``apply_chat_template``'s own options: kvyard sets them, a request may not (a client-supplied
``chat_template`` would run the caller's Jinja; vLLM refuses it too unless told to trust it)."""


def template_kwargs_for_template(template_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """``template_kwargs`` without kvyard's own ``kvyard_*`` keys; a renderer option is refused."""
    kwargs = {k: v for k, v in (template_kwargs or {}).items() if not k.startswith(RESERVED_PREFIX)}
    refused = sorted(RENDERER_OPTIONS.intersection(kwargs))
    if refused:
        raise InvalidRequest(
            f"chat_template_kwargs may only set the chat template's own variables, not {', '.join(refused)} (kvyard renders the prompt)",
            param="chat_template_kwargs",
        )
    return kwargs


# --- turn format -----------------------------------------------------------------------------

_PROBE_USER, _PROBE_TEXT, _PROBE_NEXT, _PROBE_REASONING = (
    "kvyardprobeuser",
    "kvyardprobetext",
    "kvyardprobenext",
    "kvyardprobereasoning",
)
_FORMATS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def turn_format(tokenizer) -> TurnFormat | None:
    """The assistant-turn format of ``tokenizer``'s chat template, learned once (None: unknown)."""
    template = getattr(tokenizer, "chat_template", None)
    try:
        cached = _FORMATS.get(tokenizer)
    except TypeError:  # not weak-referenceable: probe every time
        return _probe(tokenizer)
    if cached is not None and cached[0] == template:
        return cached[1]
    fmt = _probe(tokenizer)
    _FORMATS[tokenizer] = (template, fmt)
    return fmt


def _probe(tokenizer) -> TurnFormat | None:
    user = {"role": "user", "content": _PROBE_USER}
    plain = {"role": "assistant", "content": _PROBE_TEXT}
    thought = {"role": "assistant", "content": _PROBE_TEXT, "reasoning_content": _PROBE_REASONING}
    follow = {"role": "user", "content": _PROBE_NEXT}
    try:
        base = tokenizer.apply_chat_template([user], tokenize=False, add_generation_prompt=False)
        gen = tokenizer.apply_chat_template([user], tokenize=False, add_generation_prompt=True)
        earlier = tokenizer.apply_chat_template([user, plain, follow], tokenize=False, add_generation_prompt=False)
        last = tokenizer.apply_chat_template([user, thought], tokenize=False, add_generation_prompt=False)
    except Exception:
        return None
    if not gen.startswith(base) or gen == base:
        return None
    at = earlier.find(_PROBE_TEXT)
    if at < 0:
        return None
    suffix = gen[len(base) :]
    header = next((suffix[:cut] for cut in range(len(suffix), 0, -1) if earlier[:at].endswith(suffix[:cut])), "")
    after = earlier[at + len(_PROBE_TEXT) :]
    added = getattr(tokenizer, "added_tokens_decoder", {}).values()
    specials = {getattr(tokenizer, "eos_token", None), *getattr(tokenizer, "all_special_tokens", [])}
    specials = {t for t in specials | {a.content for a in added if getattr(a, "special", False)} if t}
    end = max((t for t in specials if after.startswith(t)), key=len, default="")
    if not header or not end:
        return None
    think_open = think_close = None
    r, t = last.find(_PROBE_REASONING), last.rfind(_PROBE_TEXT)
    h = last.rfind(header, 0, r) if r >= 0 else -1
    if h >= 0 and r < t:
        think_open, think_close = last[h + len(header) : r], last[r + len(_PROBE_REASONING) : t]
        if not think_open or not think_close:
            think_open = think_close = None
    return TurnFormat(header=header, end=end, think_open=think_open, think_close=think_close)


# --- rendering -------------------------------------------------------------------------------


def _apply(tokenizer, messages: list[dict[str, Any]], conv: Conversation, kwargs: dict[str, Any]) -> str:
    try:
        return tokenizer.apply_chat_template(
            messages, tools=template_tools(conv), add_generation_prompt=True, tokenize=False, **kwargs
        )
    except Exception as exc:  # template errors are caused by the request's shape
        raise InvalidRequest(f"the chat template rejected this conversation: {exc}") from exc


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


class _Timed:
    """The tokenizer's two jobs here, each timed (the render and tokenize trace spans)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.template_s = self.tokenize_s = 0.0

    def apply(self, messages: list[dict[str, Any]], conv: Conversation, kwargs: dict[str, Any]) -> str:
        started = time.perf_counter()
        try:
            return _apply(self.tokenizer, messages, conv, kwargs)
        finally:
            self.template_s += time.perf_counter() - started

    def encode(self, text: str) -> list[int]:
        started = time.perf_counter()
        try:
            return _encode(self.tokenizer, text)
        finally:
            self.tokenize_s += time.perf_counter() - started

    def timed(self, rendered: RenderedPrompt) -> RenderedPrompt:
        rendered.template_s, rendered.tokenize_s = self.template_s, self.tokenize_s
        return rendered


def render(
    tokenizer,
    conv: Conversation,
    template_kwargs: dict[str, Any] | None = None,
    history: _Lookup | None = None,
) -> RenderedPrompt:
    """The prompt, ending with the assistant generation prompt; see the module docstring."""
    messages = to_template_messages(conv)
    if not messages:
        raise InvalidRequest("the conversation is empty: send at least one message")
    kwargs = template_kwargs_for_template(template_kwargs)
    fmt = turn_format(tokenizer)
    timed = _Timed(tokenizer)
    if fmt is not None:
        rendered = _render_turns(timed, conv, messages, kwargs, fmt, history)
        if rendered is not None:
            return timed.timed(rendered)
    text = timed.apply(messages, conv, kwargs)
    return timed.timed(RenderedPrompt(text=text, ids=timed.encode(text)))


def _render_turns(timed: _Timed, conv, messages, kwargs, fmt: TurnFormat, history) -> RenderedPrompt | None:
    reasoning: list[str] = []
    if fmt.think_open is not None:
        stripped = []
        for m in messages:
            if m["role"] == "assistant":
                m = dict(m)
                reasoning.append(m.pop("reasoning_content", ""))
            stripped.append(m)
        messages = stripped
    text = timed.apply(messages, conv, kwargs)
    turns = [m for m in conv.messages if m.role == "assistant"]
    if text.count(fmt.header) != len(turns) + 1:
        return None
    pieces: list[str] = []
    ids: list[int] = []
    spliced = 0
    cursor = 0
    for k, msg in enumerate(turns):
        start = text.index(fmt.header, cursor) + len(fmt.header)
        end = text.find(fmt.end, start)
        if end < 0:
            return None
        body = text[start:end]
        if reasoning and reasoning[k]:
            empty = fmt.think_open + fmt.think_close
            if body.startswith(empty):  # the template's empty block on a trailing assistant turn
                body = body[len(empty) :]
            body = fmt.think_open + reasoning[k].strip("\n") + fmt.think_close + body.lstrip("\n")
        before = text[cursor:start]
        pieces += [before, body]
        ids += timed.encode(before)
        key = turn_key(msg.parts) if history is not None else None
        stored = history.get(key) if key is not None else None
        if stored is not None:
            ids += list(stored)
            spliced += 1
        else:
            ids += timed.encode(body)
        cursor = end
    header_end = text.index(fmt.header, cursor) + len(fmt.header)
    if fmt.end in text[header_end:]:
        return None
    head, tail = text[cursor:header_end], text[header_end:]
    tail_ids = timed.encode(tail)
    ids += timed.encode(head) + tail_ids
    return RenderedPrompt(
        text="".join(pieces) + head + tail, ids=ids, turn_tail=tail_ids, turns=len(turns), spliced=spliced
    )


def render_prompt(
    tokenizer, conv: Conversation, template_kwargs: dict[str, Any] | None = None, *, history: _Lookup | None = None
) -> list[int]:
    """Token ids of the prompt, ending with the assistant generation prompt."""
    return render(tokenizer, conv, template_kwargs, history).ids


def render_prompt_exact(
    tokenizer, conv: Conversation, template_kwargs: dict[str, Any] | None, history: _Lookup | None
) -> list[int]:
    """``render_prompt`` with the assistant turns ``history`` knows spliced in as their generated ids."""
    return render(tokenizer, conv, template_kwargs, history).ids


def dumps_arguments(arguments: dict[str, Any]) -> str:
    return json.dumps(arguments, ensure_ascii=False)
