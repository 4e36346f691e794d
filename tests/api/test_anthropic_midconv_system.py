"""Claude Code sends a `role: "system"` message inside `messages` (its environment block); kvyard
keeps it in place instead of rejecting the request."""

import json

from kvyard.api import anthropic
from kvyard.conversation import TextPart
from kvyard.frontend.render import render_prompt

BODY = {
    "model": "claude-opus-5-5",
    "max_tokens": 64,
    "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332.abc; cc_entrypoint=sdk-cli;"}, {"type": "text", "text": "You are Claude Code."}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "<system-reminder>ctx</system-reminder>"}, {"type": "text", "text": "say hi"}]},
        {"role": "system", "content": [{"type": "text", "text": "# Environment\nYou run in /repo", "cache_control": {"type": "ephemeral"}}]},
    ],
}


def test_mid_conversation_system_message_is_kept_in_place(tiny_model):
    from transformers import AutoTokenizer

    _, conv, _ = anthropic.decode_request(json.dumps(BODY).encode())
    assert [m.role for m in conv.messages] == ["user", "system"]
    assert conv.messages[1].parts == [TextPart("# Environment\nYou run in /repo")]
    text = AutoTokenizer.from_pretrained(tiny_model).decode(render_prompt(AutoTokenizer.from_pretrained(tiny_model), conv))
    assert text.index("say hi") < text.index("# Environment")
