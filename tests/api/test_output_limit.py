"""Output limits: a request that names none gets the rest of the context (Codex sends none and
fails a turn cut short); a named one is clipped to the context; a prompt that fills the context is
a clear 400-class error."""

import json

import pytest

from kvyard.api import openai_chat, responses
from kvyard.errors import InvalidRequest
from kvyard.frontend.generation import output_limit


def test_no_limit_means_the_rest_of_the_context():
    assert output_limit(None, 1000, 4096) == 3096


def test_a_named_limit_is_clipped_to_the_context():
    assert output_limit(50, 1000, 4096) == 50
    assert output_limit(10_000, 1000, 4096) == 3096


@pytest.mark.parametrize("prompt", [4096, 5000])
def test_a_prompt_that_fills_the_context_is_rejected(prompt):
    with pytest.raises(InvalidRequest, match="shorten the conversation"):
        output_limit(None, prompt, 4096)


def chat(**fields):
    return json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}).encode()


@pytest.mark.parametrize(
    ("fields", "default", "expected"),
    [
        ({}, None, None),
        ({}, 64, 64),
        ({"max_tokens": 7}, None, 7),
        ({"max_completion_tokens": 9, "max_tokens": 7}, None, 9),
    ],
)
def test_chat_limit(fields, default, expected):
    assert openai_chat.decode_request(chat(**fields), default)[2].max_tokens == expected


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_chat_zero_limit_is_an_error_not_the_default(field):
    with pytest.raises(InvalidRequest, match="at least 1"):
        openai_chat.decode_request(chat(**{field: 0}), 64)


def test_responses_without_limit_uses_the_default():
    body = json.dumps({"model": "m", "input": "hi"}).encode()
    assert responses.decode_request(body, None)[2].max_tokens is None
    assert responses.decode_request(body, 32)[2].max_tokens == 32
