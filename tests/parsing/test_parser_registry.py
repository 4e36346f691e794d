"""The parser registry and the tokenizer check."""

from __future__ import annotations

import pytest

from kvyard.parsing import StreamParser, check_tokenizer, get_parser, parser_names


class FakeTokenizer:
    def __init__(self, tokens):
        self._vocab = {t: i for i, t in enumerate(tokens)}

    def get_vocab(self):
        return dict(self._vocab)


def test_every_family_is_registered():
    assert parser_names() == sorted(
        ["qwen3", "qwen3_coder", "deepseek_r1", "deepseek_v3", "nemotron", "harmony", "kimi_k2", "plain"]
    )
    for name in parser_names():
        cls = get_parser(name)
        assert issubclass(cls, StreamParser) and cls.name == name


def test_unknown_parser_fails_fast_with_the_known_names():
    with pytest.raises(ValueError, match="unknown parser 'qwen4'.*qwen3_coder"):
        get_parser("qwen4")


def test_tokenizer_lacking_delimiter_tokens_is_rejected_by_name():
    tok = FakeTokenizer(["hello", "<think>", "</think>"])
    with pytest.raises(ValueError) as err:
        check_tokenizer(get_parser("qwen3"), tok)
    assert "<tool_call>" in str(err.value) and "</tool_call>" in str(err.value)
    assert "<think>'" not in str(err.value)
    with pytest.raises(ValueError, match=r"<\|channel\|>"):
        check_tokenizer("harmony", tok)


def test_matching_tokenizer_passes():
    check_tokenizer(get_parser("qwen3"), FakeTokenizer(["<think>", "</think>", "<tool_call>", "</tool_call>"]))
    check_tokenizer(get_parser("plain"), FakeTokenizer([]))
    check_tokenizer(get_parser("nemotron"), FakeTokenizer([]))  # its tags may be plain text
