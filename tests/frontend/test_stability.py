"""The stability inspector locates where consecutive prompts of a session diverged."""

import pytest

from kvyard.conversation import Conversation, Message, TextPart
from kvyard.frontend.render import render
from kvyard.frontend.stability import StabilityTracker, locate

BLOCK = 8
SYSTEM = "You are a careful assistant. " * 12
FIRST = "Please summarise the following notes about rivers and stones. " * 6


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def observe(tracker, tokenizer, conv, fired=None):
    rendered = render(tokenizer, conv)
    return tracker.observe("s", rendered.ids, conv, rendered.text, tokenizer.decode, fired or {})


def conv(system=SYSTEM, first=FIRST, *more):
    messages = [Message("user", [TextPart(first)])]
    for i, text in enumerate(more):
        messages.append(Message("assistant" if i % 2 == 0 else "user", [TextPart(text)]))
    return Conversation(system=system, messages=messages)


def test_extension_reuses_everything_then_changes_are_located(tokenizer):
    tracker = StabilityTracker(BLOCK)
    first = observe(tracker, tokenizer, conv())
    assert first.first_divergent_block is None and first.previous_prompt_tokens == 0
    grown = observe(tracker, tokenizer, conv(SYSTEM, FIRST, "Rivers flow.", "Thanks, and stones?"), {"claude_billing_header": 1})
    assert grown.first_divergent_block is None
    assert grown.reused_blocks == first.prompt_tokens // BLOCK
    assert grown.sanitizer_rules_fired == {"claude_billing_header": 1}
    edited = observe(tracker, tokenizer, conv(SYSTEM, FIRST.replace("stones", "pebbles", 3), "Rivers flow."))
    assert edited.diverged_at == "messages[0].user.text"
    assert 0 < edited.reused_blocks == edited.first_divergent_block
    changed_system = observe(tracker, tokenizer, conv("Today is Tuesday. " + SYSTEM))
    assert changed_system.diverged_at in ("system", "template") and changed_system.reused_blocks <= 1
    assert [r.prompt_tokens for r in tracker.reports("s")] == [first.prompt_tokens, grown.prompt_tokens, edited.prompt_tokens, changed_system.prompt_tokens]


def test_locate_falls_back_to_template():
    c = Conversation(system="abc", messages=[Message("user", [TextPart("xyz")])])
    text = "<s>abc</s><u>xyz</u>"
    assert locate(text, c, 4) == "system"
    assert locate(text, c, 14) == "messages[0].user.text"
    assert locate(text, c, 8) == "template"


def test_sessions_are_bounded():
    tracker = StabilityTracker(4, sessions=2)
    for s in ("a", "b", "c"):
        tracker.observe(s, list(range(16)), Conversation(), "", lambda ids: "", {})
    assert tracker.reports("a") == [] and len(tracker.reports("c")) == 1
