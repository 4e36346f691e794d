"""``replay``: the function behind ``kvyard parse``."""

from __future__ import annotations

import json

import msgspec
import pytest

from kvyard.parsing import Event, merge_deltas, replay

SCRIPT = [
    "<think>",
    "Check Tokyo",
    "</think>\n\n",
    '<tool_call>\n{"name": "get_weather", ',
    '"arguments": {"city": "東京"}}\n</tool_',
    "call>",
    "It is sunny.",
]


def merged(dicts):
    return merge_deltas([msgspec.convert(d, Event) for d in dicts])


def lines(chunks):
    return [json.dumps({"text": c}) for c in chunks]


def test_text_lines_give_event_dicts_in_order():
    out = list(replay(lines(SCRIPT) + [""], "qwen3"))
    assert out == [
        {"type": "reasoning_delta", "text": "Check Tokyo"},
        {"type": "reasoning_end"},
        {"type": "text_delta", "text": "\n\n"},
        {"type": "tool_call_start", "index": 0, "id": "call_0", "name": "get_weather"},
        {"type": "tool_call_args_delta", "index": 0, "delta": '{"city": "東京"}'},
        {
            "type": "tool_call_complete",
            "index": 0,
            "id": "call_0",
            "name": "get_weather",
            "arguments": {"city": "東京"},
            "raw_arguments": '{"city": "東京"}',
        },
        {"type": "text_delta", "text": "It is sunny."},
        {"type": "stream_end", "malformed": 0, "tool_calls": 1},
    ]


def test_replay_reports_malformed_and_takes_parser_options():
    out = list(replay(lines(SCRIPT), "qwen3", tool_names={"other"}))
    assert out[-1] == {"type": "stream_end", "malformed": 1, "tool_calls": 0}
    out = list(replay(lines(["x</think>y"]), "qwen3", reasoning_started=True))
    assert out[:2] == [{"type": "reasoning_delta", "text": "x"}, {"type": "reasoning_end"}]


@pytest.mark.parametrize(
    "bad,message",
    [
        ("not json", "line 1: not JSON"),
        ('{"txt": "a"}', "line 1: expected"),
        ('{"token_ids": [1, "a"]}', "line 1: expected"),
        ('{"token_ids": [1, 2]}', "token_ids need the model's tokenizer"),
    ],
)
def test_bad_lines_fail_with_the_line_number(bad, message):
    with pytest.raises(ValueError, match=message):
        list(replay([bad], "qwen3"))


def test_unknown_parser_name():
    with pytest.raises(ValueError, match="unknown parser"):
        list(replay([], "nope"))


@pytest.fixture(scope="module")
def tokenizer():
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    specials = ["<think>", "</think>", "<tool_call>", "</tool_call>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(["Check Tokyo weather", '{"name": "get_weather"}'] * 20, trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, additional_special_tokens=specials)


def test_token_id_lines_match_text_lines(tokenizer):
    text = "".join(SCRIPT)
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) > len(SCRIPT)  # 東京 is several byte-level tokens: exercised mid-character
    token_lines = [json.dumps({"token_ids": [i]}) for i in ids]
    by_token = list(replay(token_lines, "qwen3", tokenizer))
    by_text = list(replay(lines([text]), "qwen3"))
    assert by_token[-1] == by_text[-1] == {"type": "stream_end", "malformed": 0, "tool_calls": 1}
    assert merged(by_token[:-1]) == merged(by_text[:-1])
    assert len(by_token) > len(by_text)  # it really streamed token by token


def test_tokenizer_of_another_family_is_rejected(tokenizer):
    with pytest.raises(ValueError, match="kimi_k2"):
        list(replay([], "kimi_k2", tokenizer))
