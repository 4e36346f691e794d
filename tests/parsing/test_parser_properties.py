"""Property tests: for every family, every chunking of one output gives the same events.

Scripts (think / text / tool segments in any order, so reasoning resumes after tool calls) are
rendered in each family's real format; random cut points, one character per chunk and a single
chunk must all give exactly the script's events once adjacent deltas are merged. Random garbage
built from each family's delimiters and their prefixes must never raise, must be chunking
invariant too, and must lose no character.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parsing_support import (
    CALL_CLOSE,
    FAMILIES,
    content,
    feed_chunks,
    is_subsequence,
    make,
    render,
    run,
    segments_for,
    split_at,
    streamed_text,
)

from kvyard.parsing import TextDelta, ToolCallComplete, get_parser, merge_deltas

SETTINGS = settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("family", FAMILIES)
@SETTINGS
@given(data=st.data())
def test_script_roundtrip_for_every_chunking(family, data):
    segments = data.draw(segments_for(family), label="segments")
    started = family not in ("plain", "harmony") and data.draw(st.booleans(), label="reasoning_started")
    if started and (not segments or segments[0][0] != "think"):
        segments = [("think", data.draw(content, label="first thought")), *segments]
    text, expected = render(family, segments, reasoning_started=started)
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=25), label="cuts")
    random_chunks = split_at(text, cuts)

    for chunks in (random_chunks, list(text), [text]):
        events, parser = run(family, chunks, reasoning_started=started)
        assert events == expected, chunks
        assert parser.malformed == 0

    # Streaming dispatch: each call completes in the feed whose chunk ends its closing delimiter.
    outs = feed_chunks(make(family, reasoning_started=started), random_chunks)
    completed = 0
    consumed = ""
    for chunk, out in zip(random_chunks, outs[:-1], strict=True):
        consumed += chunk
        for event in out:
            if isinstance(event, ToolCallComplete):
                completed += 1
                ends = [consumed.rfind(c) + len(c) for c in CALL_CLOSE[family] if c in consumed]
                assert ends and max(ends) > len(consumed) - len(chunk)
    assert not any(isinstance(e, ToolCallComplete) for e in outs[-1])
    assert completed == sum(1 for s in segments if s[0] == "tool")

    # Framing mode drops exactly the whitespace-only text runs, for any chunking.
    framed, _ = run(family, random_chunks, reasoning_started=started, drop_framing_whitespace=True)
    kept = [e for e in expected if not (isinstance(e, TextDelta) and e.text.isspace())]
    assert framed == merge_deltas(kept)


def _garbage(family: str):
    cls = get_parser(family)
    delims = set(cls.special_tokens) | {"<think>", "</think>", "<tool_call>", "</tool_call>"}
    delims |= {"<TOOLCALL>", "</TOOLCALL>"}
    for attr in ("think", "section", "call"):
        delims |= set(getattr(cls, attr, None) or ())
    delims |= set(getattr(cls, "reasoning_exits", ()))
    delims = sorted(delims)
    prefixes = sorted({d[:k] for d in delims for k in range(1, len(d))})
    bodies = ['{"name": "get_weather", "arguments": {"a": 1}}', '[{"name": "run_shell", "arguments": {}}]',
              "functions.run_shell:0", "function", '\n```json\n{"x": 2}\n```', "<function=read_file>",
              "<parameter=path>\nx\n</parameter>", "</function>", "analysis", "final",
              "commentary to=functions.get_weather ", "json", '{"q": "v"}']
    # Whole valid blocks too, so garbage mixes real calls and reasoning with broken structure.
    samples = [("think", "hmm"), ("text", "hi"), ("tool", "get_weather", {"a": 1}), ("tool", "run_shell", {})]
    if family == "qwen3_coder":
        samples[2:] = [("tool", "get_weather", {"a": "v1"}), ("tool", "run_shell", {})]
    blocks = [render(family, [seg])[0] for seg in samples if family != "plain" or seg[0] == "text"]
    if family == "harmony":
        blocks += ["<|start|>assistant" + b for b in blocks]
    piece = st.one_of(
        st.sampled_from(delims),
        st.sampled_from(prefixes),
        st.sampled_from(bodies),
        st.sampled_from(blocks),
        st.text(alphabet="ab \n>{}", max_size=4),
    )
    return st.lists(piece, max_size=25).map("".join)


@pytest.mark.parametrize("family", FAMILIES)
@SETTINGS
@given(data=st.data())
def test_garbage_is_chunking_invariant_and_never_raises(family, data):
    text = data.draw(_garbage(family), label="text")
    started = data.draw(st.booleans(), label="reasoning_started")
    names = data.draw(st.sampled_from([None, {"get_weather"}, set()]), label="tool_names")
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=25), label="cuts")
    results = []
    for chunks in (split_at(text, cuts), list(text), [text]):
        events, parser = run(family, chunks, reasoning_started=started, tool_names=names)
        results.append((events, parser.malformed))
        assert is_subsequence(streamed_text(events), text)
    assert results[0] == results[1] == results[2]


@pytest.mark.parametrize("family", ["qwen3", "qwen3_coder", "nemotron", "plain"])
@SETTINGS
@given(data=st.data())
def test_nothing_is_lost_when_no_structure_is_valid(family, data):
    """No reasoning, no tools offered: every character, delimiters included, comes out as text."""
    text = data.draw(_garbage(family), label="text")
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=25), label="cuts")
    events, _ = run(family, split_at(text, cuts), reasoning_enabled=False, tool_names=set())
    assert all(isinstance(e, TextDelta) for e in events)
    assert "".join(e.text for e in events) == text
