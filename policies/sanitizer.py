"""Prompt sanitizer: an ordered rule set applied to a ``Conversation`` before rendering and hashing.

Why: anything that changes early in the prompt throws away the KV cache of everything after it.
Claude Code puts a per-request billing line first in ``system``::

    x-anthropic-billing-header: cc_version=2.1.197.c40; cc_entrypoint=sdk-cli;

(older versions add ``cch=<5 hex>;``, some add ``cc_workload=…;``). The default rule
``claude_billing_header`` drops that line, and only when it *leads* the system prompt.

Exact semantics of the default rule (tested in ``tests/policies/test_sanitizer.py``):

- It looks only at the *head* system text: ``conv.system`` when it is non-empty, else the first
  text part of the first message when that message's role is ``system`` or ``developer``.
- The text must start (offset 0, no leading whitespace) with ``x-anthropic-billing-header:``,
  then one or more ``key=value`` fields separated by ``;`` (spaces/tabs allowed around them), in
  any order, with or without a trailing ``;``; keys are ``[A-Za-z][A-Za-z0-9_]*``, values have no
  whitespace and no ``;``. Trailing spaces/tabs on the line are allowed.
- The line must end with ``\\n``, ``\\r\\n`` or the end of the text (the line *is* the whole
  block), or, right after a closing ``;``, run straight into non-whitespace text: that is the
  header block glued to the next system block by a decoder that joins blocks with ``""`` (as
  vLLM's own Anthropic endpoint does). Anything else on the line (``; prose``, ``=value prose``)
  means no match: the text stays.
- Removed: the line and exactly ONE line terminator (``\\r\\n`` or ``\\n``), or nothing more in
  the glued case. Everything after it is kept byte-exact, including further blank lines (so
  ``HEADER\\n\\nYou are…`` becomes ``\\nYou are…``). A system text that is only the line becomes
  ``""``; parts and messages are never dropped, so the conversation keeps its shape.
- The same text anywhere else (later in ``system``, in a user message, a tool result) stays.

Extra rules (``SanitizerRule``) are ``re.sub`` rules scoped to a kind of text; they run after the
default rule, in the configured order. ``scope`` picks which strings a rule sees:

- ``system_head``: the head system text defined above (one string at most);
- ``system``: ``conv.system`` and text parts of ``system``/``developer`` messages;
- ``user`` / ``assistant``: text parts of messages with that role;
- ``tool_result``: ``ToolResultPart.content`` in any message;
- ``all``: every string above (``system`` + ``user`` + ``assistant`` + ``tool_result``).

Reasoning parts, tool calls and tool definitions are never rewritten (they must replay
token-exactly).

Cost: one ``re.sub`` per (rule, string in scope); the default rule is an anchored match on one
string, i.e. O(length of the first line). ``sanitize`` is pure: it returns a new
``Conversation`` (unchanged messages are shared, not copied; treat them as immutable) and a
``{rule name: substitutions}`` dict with only the rules that fired, for the caller's metrics.
Prompt text is never logged here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kvyard.conversation import Conversation, Message, Part, TextPart, ToolResultPart

Scope = Literal["system_head", "system", "user", "assistant", "tool_result", "all"]

BILLING_RULE_NAME = "claude_billing_header"

_FIELD = r"[A-Za-z][A-Za-z0-9_]*=[^;\s]*"
# \A anchors at offset 0; the line ends at \r\n, \n, the end of the text (\Z), or glued text
# right after a closing ';' ((?<=;)(?=\S)).
BILLING_HEADER_REGEX = (
    r"\Ax-anthropic-billing-header:[ \t]*"
    rf"{_FIELD}(?:[ \t]*;[ \t]*{_FIELD})*[ \t]*;?[ \t]*"
    r"(?:\r\n|\n|\Z|(?<=;)(?=\S))"
)

_SYSTEM_ROLES = ("system", "developer")


class SanitizerRule(BaseModel):
    """One regex rule: every match of ``regex`` in the texts of ``scope`` becomes ``replacement``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="Unique rule name; the key under which firings are counted in metrics.",
    )
    regex: str = Field(
        min_length=1,
        description="Python `re` pattern (use inline flags such as (?m) or (?s) if needed).",
    )
    replacement: str = Field(
        default="",
        description="`re.sub` replacement; may reference groups (\\1, \\g<name>). Empty deletes.",
    )
    scope: Scope = Field(
        default="system",
        description=(
            "Which texts the rule sees: system_head (the leading system text only), system "
            "(system prompt and system/developer messages), user, assistant, tool_result, or all."
        ),
    )

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"invalid regex {value!r}: {err}") from None
        return value

    @model_validator(mode="after")
    def _replacement_fits_regex(self) -> SanitizerRule:
        compiled = re.compile(self.regex)
        if compiled.fullmatch("") is not None:
            raise ValueError(
                f"rule {self.name!r}: regex {self.regex!r} matches the empty string; "
                "it would fire on every text"
            )
        try:
            # Python compiles the replacement template before searching, so bad group
            # references fail here even on an empty subject.
            compiled.sub(self.replacement, "")
        except (re.error, IndexError) as err:
            raise ValueError(f"rule {self.name!r}: invalid replacement {self.replacement!r}: {err}") from None
        return self


class SanitizerConfig(BaseModel):
    """The sanitizer's rule set: built-in rules (optional) followed by ``rules`` in order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_rules: bool = Field(
        default=True,
        description=f"Run the built-in rules first ({BILLING_RULE_NAME}: drop Claude Code's "
        "leading billing-header line).",
    )
    rules: list[SanitizerRule] = Field(
        default_factory=list,
        description="Extra rules, applied in this order after the built-in ones.",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> SanitizerConfig:
        seen: set[str] = {BILLING_RULE_NAME} if self.default_rules else set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"duplicate sanitizer rule name {rule.name!r}; names must be unique")
            seen.add(rule.name)
        return self


class CompiledRule(msgspec.Struct, frozen=True):
    """A rule ready to run: ``pattern.subn(replacement, text)`` on every text in ``scope``."""

    name: str
    pattern: re.Pattern[str]
    replacement: str
    scope: Scope


BILLING_HEADER_RULE = CompiledRule(
    name=BILLING_RULE_NAME,
    pattern=re.compile(BILLING_HEADER_REGEX),
    replacement="",
    scope="system_head",
)
DEFAULT_RULES: tuple[CompiledRule, ...] = (BILLING_HEADER_RULE,)


def compile_rules(config: SanitizerConfig | None = None) -> tuple[CompiledRule, ...]:
    """The ordered rules for ``config`` (``None``: the defaults only). Call once at config load."""
    if config is None:
        return DEFAULT_RULES
    extra = tuple(CompiledRule(r.name, re.compile(r.regex), r.replacement, r.scope) for r in config.rules)
    return (DEFAULT_RULES if config.default_rules else ()) + extra


# -- applying -----------------------------------------------------------------------------


def _head_is_first_message(conv: Conversation) -> bool:
    """With an empty ``conv.system``, is the head system text the first part of message 0?"""
    if conv.messages and conv.messages[0].role in _SYSTEM_ROLES:
        parts = conv.messages[0].parts
        return bool(parts) and isinstance(parts[0], TextPart)
    return False


def _part_in_scope(role: str, part: object, scope: Scope) -> bool:
    if isinstance(part, TextPart):
        if scope == "all":
            return True
        if scope == "system":
            return role in _SYSTEM_ROLES
        return scope == role
    if isinstance(part, ToolResultPart):
        return scope in ("tool_result", "all")
    return False


def _sub_part(rule: CompiledRule, part: Part) -> tuple[Part, int]:
    """``part`` with ``rule`` applied to its text (TextPart.text, ToolResultPart.content)."""
    if isinstance(part, TextPart):
        text, n = rule.pattern.subn(rule.replacement, part.text)
        return (TextPart(text=text) if n else part), n
    if isinstance(part, ToolResultPart):
        text, n = rule.pattern.subn(rule.replacement, part.content)
        return (msgspec.structs.replace(part, content=text) if n else part), n
    return part, 0


def _apply_rule(conv: Conversation, rule: CompiledRule) -> tuple[Conversation, int]:
    fired = 0
    system = conv.system
    messages = conv.messages

    if rule.scope == "system_head":
        if system:
            system, fired = rule.pattern.subn(rule.replacement, system)
        elif _head_is_first_message(conv):
            first = messages[0]
            head, fired = _sub_part(rule, first.parts[0])
            if fired:
                messages = [Message(role=first.role, parts=[head, *first.parts[1:]]), *messages[1:]]
    else:
        if rule.scope in ("system", "all") and system:
            system, fired = rule.pattern.subn(rule.replacement, system)
        new_messages: list[Message] | None = None
        for index, message in enumerate(messages):
            new_parts: list[Part] | None = None
            for part_index, part in enumerate(message.parts):
                if not _part_in_scope(message.role, part, rule.scope):
                    continue
                new_part, n = _sub_part(rule, part)
                if n:
                    fired += n
                    if new_parts is None:
                        new_parts = list(message.parts)
                    new_parts[part_index] = new_part
            if new_parts is not None:
                if new_messages is None:
                    new_messages = list(messages)
                new_messages[index] = Message(role=message.role, parts=new_parts)
        if new_messages is not None:
            messages = new_messages

    if not fired:
        return conv, 0
    return Conversation(system=system, messages=messages, tools=conv.tools), fired


def sanitize(
    conv: Conversation, rules: Sequence[CompiledRule] | SanitizerConfig | None = None
) -> tuple[Conversation, dict[str, int]]:
    """Apply ``rules`` in order; return a new conversation and ``{rule: substitutions}`` (fired only).

    ``rules`` is the output of ``compile_rules`` (compile once, reuse), a ``SanitizerConfig``
    (compiled on the fly), or ``None`` for the default rules. The input is never mutated.
    """
    if rules is None:
        compiled: Sequence[CompiledRule] = DEFAULT_RULES
    elif isinstance(rules, SanitizerConfig):
        compiled = compile_rules(rules)
    else:
        compiled = rules
    fired: dict[str, int] = {}
    out = conv
    for rule in compiled:
        out, n = _apply_rule(out, rule)
        if n:
            fired[rule.name] = fired.get(rule.name, 0) + n
    if out is conv:
        out = Conversation(system=conv.system, messages=list(conv.messages), tools=list(conv.tools))
    return out, fired
