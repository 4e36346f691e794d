"""Parser benchmark: kvyard's streaming parsers against vLLM's own reasoning + tool parsers.

Both systems get identical token streams of realistic agent turns, per model family, and are
judged on three things:

* **interleaving preserved** — the sequence of reasoning / tool-call / text segments they return
  equals the script's (kinds, tool names and the stripped text of every reasoning and text
  segment, in order; whitespace-only runs are framing and ignored on both sides);
* **tool calls recovered** — ``n/N`` calls with the right name and arguments (parsed JSON equal to
  the script's), matched in order;
* **throughput** — chunks per second through the parser, per CPU-second of the parsing thread
  (``time.thread_time``, so time descheduled by other jobs does not count); median of several
  timed samples; parser construction excluded (measured apart), one new parser per stream as in
  serving.

Streams. Each family's output is tokenized by a character-level tokenizer (``tokenizers`` BPE with
no merges, built here in milliseconds) that has the family's delimiters as single special tokens,
as the real vocabularies do; gpt-oss uses the real ``o200k_harmony`` encoding from
``openai_harmony`` (vLLM's harmony parser reads token ids, so they must be the model's). A chunk is
``(delta_text, delta_token_ids)`` where the text is decoded incrementally (prefix decode, an
incomplete UTF-8 tail held back), as vLLM's detokenizer does. Chunkings: ``token`` (one token per
chunk: one character, or one whole special token; one o200k token for harmony), ``4 tokens``
(about 4 characters; vLLM's ``--stream-interval 4``) and ``one`` (the whole output at once).

vLLM side (imported from the installed vLLM, 0.32): the ``Parser`` class that the chat completions
server builds (``ParserManager.get_parser(tool_parser_name, reasoning_parser_name,
enable_auto_tools=True, is_harmony=…, tokenizer=…)``), instantiated per stream with
``(tokenizer, request.tools, chat_template_kwargs=…)``; ``adjust_request`` applied once as the
renderer does; then ``parse_delta(delta_text, delta_token_ids, request, prompt_token_ids,
finished=…)`` per chunk, exactly the call sequence of
``vllm/entrypoints/openai/chat_completion/serving.py``. That method runs the reasoning parser's
streaming extraction and then the tool parser's ``extract_tool_calls_streaming`` on the content.
Its ``DeltaMessage``s are turned into segments in arrival order; one ``DeltaMessage`` has no order
among its fields, so its parts are read as reasoning, then content, then tool calls.

kvyard side: ``get_parser(family)(tool_names=…, tool_schemas=…, reasoning_started=…,
drop_framing_whitespace=True)`` (what the frontend builds), ``feed(delta_text)`` per chunk, then
``finish()``.

Run: ``python benchmarks/parsers.py [--quick] [--output benchmarks/results/parsers.md]``.
``--quick`` times one sample per cell; ``--kvyard-only`` skips vLLM (no vLLM import, seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import string
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kvyard.parsing import (
    ReasoningDelta,
    TextDelta,
    ToolCallComplete,
    get_parser,
)

# --------------------------------------------------------------------------------------------
# The scripts: what the model "said", as segments.
# --------------------------------------------------------------------------------------------

Seg = tuple  # ("think", text) | ("text", text) | ("tool", name, args)

TOOLS: dict[str, dict[str, Any]] = {
    "get_weather": {
        "description": "Current weather and a forecast for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
    "read_file": {
        "description": "Read a file of the workspace.",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "max_lines": {"type": "integer"}},
            "required": ["path"],
        },
    },
    "run_shell": {
        "description": "Run a shell command.",
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string"}, "timeout": {"type": "integer"}},
            "required": ["command"],
        },
    },
}

_R1 = (
    "The user wants to know whether the retry loop in src/client.py can spin forever. "
    "I should read the file first; if attempts < max_retries is checked after the sleep, "
    "a failing call with max_retries = 0 never exits."
)
_R2 = (
    "The loop is `while True:` and it only breaks on success. With {\"max_retries\": 0} "
    "the counter is never compared, so yes, it spins. Let me run the test to confirm."
)
_R3 = "The test hung for 30 s and was killed: confirmed. Now I can answer with the fix."
_T_FINAL = (
    "Yes: `while True:` in `fetch()` never checks `max_retries`, so a permanent error loops "
    "forever (the test timed out after 30 s). Fix: `for attempt in range(max_retries + 1):` "
    "and re-raise after the last attempt."
)
_CALL_READ = ("tool", "read_file", {"path": "src/client.py", "max_lines": 200})
_CALL_TEST = ("tool", "run_shell", {"command": "pytest tests/test_client.py -k retry -x", "timeout": 30})
_CALL_W1 = ("tool", "get_weather", {"city": "Tokyo", "days": 3})
_CALL_W2 = ("tool", "get_weather", {"city": "São Paulo", "days": 1})

CASES: dict[str, list[Seg]] = {
    "plain answer": [
        ("think", "Simple arithmetic: 17 * 3 = 51, and 51 < 60, so it fits in one hour."),
        ("text", "17 × 3 = 51 minutes, which is under an hour (< 60 min)."),
    ],
    "think → call": [("think", _R1), _CALL_READ],
    "parallel calls": [
        ("think", "Two cities, independent lookups: call get_weather twice in parallel."),
        _CALL_W1,
        _CALL_W2,
    ],
    "resumed after call": [("think", _R1), _CALL_READ, ("think", _R2), ("text", _T_FINAL)],
    "interleaved": [("think", _R1), _CALL_READ, ("think", _R2), _CALL_TEST, ("think", _R3), ("text", _T_FINAL)],
}

CHUNKINGS = ("token", "4 tokens", "one")
SAMPLES = 7  # timed samples per cell in full mode (quick: 1)

# --------------------------------------------------------------------------------------------
# Families: output format, tokenizer specials, prompt, and the matching vLLM parser names.
# --------------------------------------------------------------------------------------------


def _args_json(args: dict[str, Any]) -> str:
    return json.dumps(args, ensure_ascii=False)


def _groups(segs: list[Seg]) -> list[list[Seg]]:
    """Consecutive tool segments grouped (one section / block of parallel calls)."""
    out: list[list[Seg]] = []
    for seg in segs:
        if seg[0] == "tool" and out and out[-1][0][0] == "tool":
            out[-1].append(seg)
        else:
            out.append([seg])
    return out


def render_qwen3(segs: list[Seg], xml: bool = False) -> str:
    out = []
    for pos, group in enumerate(_groups(segs)):
        kind = group[0][0]
        if kind == "think":
            out.append(f"<think>\n{group[0][1]}\n</think>\n\n")
        elif kind == "text":
            out.append(group[0][1])
        else:
            calls = []
            for _, name, args in group:
                if xml:
                    params = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in args.items())
                    calls.append(f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>")
                else:
                    body = json.dumps({"name": name, "arguments": args}, ensure_ascii=False)
                    calls.append(f"<tool_call>\n{body}\n</tool_call>")
            out.append("\n".join(calls))
            if pos + 1 < len(_groups(segs)):
                out.append("\n")
    return "".join(out)


def render_qwen3_coder(segs: list[Seg]) -> str:
    return render_qwen3(segs, xml=True)


DS_CALLS_BEGIN, DS_CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
DS_CALL_BEGIN, DS_CALL_END, DS_SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"


def render_deepseek_r1(segs: list[Seg]) -> str:
    """R1-0528: the prompt opened ``<think>\\n``; calls typed ``function`` with a fenced JSON body."""
    out = []
    for pos, group in enumerate(_groups(segs)):
        kind = group[0][0]
        if kind == "think":
            out.append(("" if pos == 0 else "<think>\n") + f"{group[0][1]}\n</think>\n\n")
        elif kind == "text":
            out.append(group[0][1])
        else:
            calls = [
                f"{DS_CALL_BEGIN}function{DS_SEP}{name}\n```json\n{_args_json(args)}\n```{DS_CALL_END}"
                for _, name, args in group
            ]
            out.append(DS_CALLS_BEGIN + "\n".join(calls) + DS_CALLS_END)
    return "".join(out)


def render_deepseek_v31(segs: list[Seg]) -> str:
    """V3.1 thinking mode: the prompt opened ``<think>``; calls ``NAME<sep>{json}``, no fence."""
    out = []
    for pos, group in enumerate(_groups(segs)):
        kind = group[0][0]
        if kind == "think":
            out.append(("" if pos == 0 else "<think>") + f"{group[0][1]}</think>")
        elif kind == "text":
            out.append(group[0][1])
        else:
            calls = [f"{DS_CALL_BEGIN}{name}{DS_SEP}{_args_json(args)}{DS_CALL_END}" for _, name, args in group]
            out.append(DS_CALLS_BEGIN + "".join(calls) + DS_CALLS_END)
    return "".join(out)


def render_nemotron(segs: list[Seg]) -> str:
    out = []
    for group in _groups(segs):
        kind = group[0][0]
        if kind == "think":
            out.append(f"<think>\n{group[0][1]}\n</think>\n\n")
        elif kind == "text":
            out.append(group[0][1])
        else:
            body = json.dumps([{"name": n, "arguments": a} for _, n, a in group], ensure_ascii=False)
            out.append(f"<TOOLCALL>{body}</TOOLCALL>\n")
    return "".join(out)


def render_kimi_k2(segs: list[Seg]) -> str:
    out = []
    index = 0
    for group in _groups(segs):
        kind = group[0][0]
        if kind == "think":
            out.append(f"<think>{group[0][1]}</think>")
        elif kind == "text":
            out.append(group[0][1])
        else:
            calls = []
            for _, name, args in group:
                calls.append(
                    f"<|tool_call_begin|>functions.{name}:{index}<|tool_call_argument_begin|>"
                    f"{_args_json(args)}<|tool_call_end|>"
                )
                index += 1
            out.append("<|tool_calls_section_begin|>" + "".join(calls) + "<|tool_calls_section_end|>")
    return "".join(out)


def render_harmony(segs: list[Seg]) -> str:
    """gpt-oss: the prompt ends with ``<|start|>assistant``; every later message opens its own."""
    out = []
    for pos, seg in enumerate(segs):
        start = "" if pos == 0 else "<|start|>assistant"
        if seg[0] == "think":
            out.append(f"{start}<|channel|>analysis<|message|>{seg[1]}<|end|>")
        elif seg[0] == "text":
            out.append(f"{start}<|channel|>final<|message|>{seg[1]}<|return|>")
        else:
            _, name, args = seg
            out.append(
                f"{start}<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>{_args_json(args)}<|call|>"
            )
    return "".join(out)


@dataclass(frozen=True)
class VllmSetup:
    reasoning: str
    tool: str
    harmony: bool = False
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        return f"`--reasoning-parser {self.reasoning} --tool-call-parser {self.tool}`"


@dataclass(frozen=True)
class Family:
    name: str  # kvyard parser name
    render: Callable[[list[Seg]], str]
    specials: tuple[str, ...]  # single tokens in the char-level tokenizer
    prompt: str  # the end of the rendered prompt (prompt_token_ids for vLLM)
    reasoning_started: bool = False
    vllm: VllmSetup | None = None
    no_vllm: str = ""  # why there is no vLLM counterpart


QWEN_SPECIALS = ("<think>", "</think>", "<tool_call>", "</tool_call>", "<|im_start|>", "<|im_end|>", "<|endoftext|>")
DS_SPECIALS = (
    "<think>", "</think>", DS_CALLS_BEGIN, DS_CALLS_END, DS_CALL_BEGIN, DS_CALL_END, DS_SEP,
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
)  # fmt: skip
KIMI_SPECIALS = (
    "<think>", "</think>", "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>",
    "<|tool_call_begin|>", "<|tool_call_end|>", "<|tool_call_argument_begin|>",
    "<|im_user|>", "<|im_assistant|>", "<|im_middle|>", "<|im_end|>",
)  # fmt: skip
HARMONY_SPECIALS = (
    "<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|constrain|>", "<|return|>", "<|call|>",
)  # fmt: skip
_QUESTION = "Can the retry loop in src/client.py spin forever? Also: weather in Tokyo and São Paulo?"

FAMILIES: list[Family] = [
    Family(
        "qwen3",
        render_qwen3,
        QWEN_SPECIALS,
        f"<|im_start|>user\n{_QUESTION}<|im_end|>\n<|im_start|>assistant\n",
        vllm=VllmSetup("qwen3", "hermes"),
    ),
    Family(
        "qwen3_coder",
        render_qwen3_coder,
        QWEN_SPECIALS,
        f"<|im_start|>user\n{_QUESTION}<|im_end|>\n<|im_start|>assistant\n",
        vllm=VllmSetup("qwen3", "qwen3_coder"),
    ),
    Family(
        "deepseek_r1",
        render_deepseek_r1,
        DS_SPECIALS,
        f"<｜begin▁of▁sentence｜><｜User｜>{_QUESTION}<｜Assistant｜><think>\n",
        reasoning_started=True,
        vllm=VllmSetup("deepseek_r1", "deepseek_v3"),
    ),
    Family(
        "deepseek_v3",
        render_deepseek_v31,
        DS_SPECIALS,
        f"<｜begin▁of▁sentence｜><｜User｜>{_QUESTION}<｜Assistant｜><think>",
        reasoning_started=True,
        vllm=VllmSetup("deepseek_v3", "deepseek_v31", chat_template_kwargs={"thinking": True}),
    ),
    Family(
        "nemotron",
        render_nemotron,
        ("<think>", "</think>", "<TOOLCALL>", "</TOOLCALL>"),
        "",
        no_vllm=(
            "vLLM 0.32 registers no tool parser for `<TOOLCALL>[…]</TOOLCALL>` "
            "(its `nemotron_v3` parser is Nemotron 3's XML format)"
        ),
    ),
    Family(
        "harmony",
        render_harmony,
        HARMONY_SPECIALS,
        f"<|start|>user<|message|>{_QUESTION}<|end|><|start|>assistant",
        vllm=VllmSetup("openai_gptoss", "openai", harmony=True),
    ),
    Family(
        "kimi_k2",
        render_kimi_k2,
        KIMI_SPECIALS,
        f"<|im_user|>user<|im_middle|>{_QUESTION}<|im_end|><|im_assistant|>assistant<|im_middle|>",
        vllm=VllmSetup("kimi_k2", "kimi_k2"),
    ),
]

# --------------------------------------------------------------------------------------------
# Tokenizers and token streams
# --------------------------------------------------------------------------------------------


def char_tokenizer(specials: Sequence[str]):
    """A ``tokenizers.Tokenizer`` with one id per character and one per special token."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    chars = set(string.printable)
    for seg in (s for case in CASES.values() for s in case):
        chars |= set(json.dumps(seg, ensure_ascii=False))
    chars |= set(_QUESTION) | set("×ãé")
    vocab = {c: i for i, c in enumerate(sorted(chars))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tok


@dataclass
class Codec:
    """A family's token ids: ``encode``/``decode``, and the tokenizer vLLM's parsers are built with."""

    encode: Callable[[str], list[int]]
    decode: Callable[[Sequence[int]], str]
    raw: Any  # the char-level tokenizers.Tokenizer
    _hf: Any = None

    def hf_tokenizer(self):
        """The char-level tokenizer as ``PreTrainedTokenizerFast`` (vLLM side only: imports transformers)."""
        if self._hf is None:
            from transformers import PreTrainedTokenizerFast

            self._hf = PreTrainedTokenizerFast(tokenizer_object=self.raw, clean_up_tokenization_spaces=False)
        return self._hf


_CODECS: dict[str, Codec] = {}


def codec_for(family: Family) -> Codec:
    """The family's codec, cached. gpt-oss ids come from the real ``o200k_harmony`` encoding."""
    if family.name not in _CODECS:
        raw = char_tokenizer(family.specials)
        if family.name == "harmony":
            from openai_harmony import HarmonyEncodingName, load_harmony_encoding

            enc = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
            codec = Codec(lambda text: enc.encode(text, allowed_special="all"), lambda ids: enc.decode(list(ids)), raw)
        else:
            codec = Codec(
                lambda text: raw.encode(text, add_special_tokens=False).ids,
                lambda ids: raw.decode(list(ids), skip_special_tokens=False),
                raw,
            )
        _CODECS[family.name] = codec
    return _CODECS[family.name]


Chunk = tuple[str, tuple[int, ...]]


def token_stream(family: Family, text: str) -> tuple[list[int], list[str]]:
    """Token ids of ``text`` and each token's incremental text (an incomplete UTF-8 tail waits)."""
    codec = codec_for(family)
    encode, decode = codec.encode, codec.decode
    ids = encode(text)
    pieces = []
    emitted = ""
    for k in range(1, len(ids) + 1):
        prefix = decode(ids[:k])
        if prefix.endswith("\ufffd") and k < len(ids):
            pieces.append("")
            continue
        pieces.append(prefix[len(emitted) :])
        emitted = prefix
    if emitted != text:
        raise RuntimeError(f"{family.name}: token stream does not decode back to the script")
    return ids, pieces


def chunked(ids: list[int], pieces: list[str], chunking: str) -> list[Chunk]:
    size = {"token": 1, "4 tokens": 4, "one": max(1, len(ids))}[chunking]
    return [
        ("".join(pieces[i : i + size]), tuple(ids[i : i + size])) for i in range(0, len(ids), size)
    ]


# --------------------------------------------------------------------------------------------
# Segments: what each system returned, in order
# --------------------------------------------------------------------------------------------


@dataclass
class Result:
    segments: list[tuple] = field(default_factory=list)  # ("reasoning"|"text", str) | ("tool", name, args|None)
    error: str = ""


def expected_segments(case: list[Seg]) -> list[tuple]:
    out = []
    for seg in case:
        if seg[0] == "think":
            out.append(("reasoning", seg[1]))
        elif seg[0] == "text":
            out.append(("text", seg[1]))
        else:
            out.append(("tool", seg[1], seg[2]))
    return normalize(out)


def normalize(segments: list[tuple]) -> list[tuple]:
    """Drop whitespace-only reasoning/text, merge adjacent ones of a kind, strip their text."""
    merged: list[list] = []
    for seg in segments:
        if seg[0] in ("reasoning", "text"):
            if merged and merged[-1][0] == seg[0]:
                merged[-1][1] += seg[1]
                continue
            merged.append([seg[0], seg[1]])
        else:
            merged.append(list(seg))
    out = []
    for seg in merged:
        if seg[0] in ("reasoning", "text"):
            if seg[1].strip():
                out.append((seg[0], seg[1].strip()))
        else:
            out.append(tuple(seg))
    # dropping a blank run may make two runs of one kind adjacent
    final: list[tuple] = []
    for seg in out:
        if final and seg[0] in ("reasoning", "text") and final[-1][0] == seg[0]:
            final[-1] = (seg[0], final[-1][1] + seg[1])
        else:
            final.append(seg)
    return final


def kvyard_segments(events: list[Any]) -> list[tuple]:
    segs: list[tuple] = []
    for e in events:
        if isinstance(e, ReasoningDelta):
            segs.append(("reasoning", e.text))
        elif isinstance(e, TextDelta):
            segs.append(("text", e.text))
        elif isinstance(e, ToolCallComplete):
            segs.append(("tool", e.name, e.arguments))
    return segs


def vllm_segments(messages: list[Any]) -> list[tuple]:
    """Segments from vLLM ``DeltaMessage``s; within one message: reasoning, content, tool calls."""
    segs: list[list] = []
    by_index: dict[int, list] = {}
    raw_args: dict[int, str] = {}
    for m in messages:
        if m is None:
            continue
        if m.reasoning:
            segs.append(["reasoning", m.reasoning])
        if m.content:
            segs.append(["text", m.content])
        for tc in m.tool_calls or []:
            fn = tc.function
            if tc.index not in by_index:
                seg = ["tool", None, None]
                by_index[tc.index] = seg
                raw_args[tc.index] = ""
                segs.append(seg)
            seg = by_index[tc.index]
            if fn is not None and fn.name:
                seg[1] = fn.name
            if fn is not None and fn.arguments:
                raw_args[tc.index] += fn.arguments
    for index, seg in by_index.items():
        try:
            seg[2] = json.loads(raw_args[index])
        except ValueError:
            seg[2] = raw_args[index]  # a str: not valid JSON
    return [tuple(s) for s in segs]


def signature(segments: list[tuple]) -> str:
    """``R T(read_file) X`` — the shape of a segment list, for notes."""
    parts = []
    for seg in segments:
        if seg[0] == "reasoning":
            parts.append("R")
        elif seg[0] == "text":
            parts.append("X")
        else:
            parts.append(f"T({seg[1]})")
    return " ".join(parts) or "∅"


@dataclass
class Verdict:
    order: bool
    calls_ok: int
    calls_total: int
    note: str = ""


# Markup of any family (tags, special tokens, XML call syntax); script content has none of these.
_MARKUP = re.compile(r"</?[A-Za-z_]+>|<[|｜][^<>]*[|｜]>|<function=|<parameter=")


def _label(segments: list[tuple], i: int) -> str:
    kind = segments[i][0]
    n = sum(1 for s in segments[: i + 1] if s[0] == kind)
    return {"reasoning": "R", "text": "X", "tool": "T"}[kind] + str(n)


def explain(expected: list[tuple], got: list[tuple]) -> str:
    """What went wrong, briefly: where each expected segment ended up, lost calls, leaked markup."""
    if not got:
        return "nothing returned"
    problems = []
    for i, want in enumerate(expected):
        if want[0] == "tool":
            continue
        label = _label(expected, i)
        homes = [g[0] for g in got if g[0] != "tool" and want[1] in g[1]]
        if want[0] in homes:
            continue
        if homes:
            problems.append(f"{label} → {homes[0]}")
        elif want[1] in "".join(g[1] for g in got if g[0] != "tool"):
            problems.append(f"{label} split across kinds")
        else:
            problems.append(f"{label} lost")
    calls_want = [s for s in expected if s[0] == "tool"]
    calls_got = [s for s in got if s[0] == "tool"]
    for i, want in enumerate(calls_want):
        if i >= len(calls_got):
            problems.append(f"T{i + 1} lost")
        elif calls_got[i][1] != want[1]:
            problems.append(f"T{i + 1} named {calls_got[i][1]!r}")
        elif isinstance(calls_got[i][2], str):
            problems.append(f"T{i + 1} arguments not JSON (…{calls_got[i][2][-24:]!r})")
        elif calls_got[i][2] != want[2]:
            problems.append(f"T{i + 1} arguments {json.dumps(calls_got[i][2], ensure_ascii=False)[:40]}")
    if len(calls_got) > len(calls_want):
        problems.append(f"{len(calls_got) - len(calls_want)} extra call(s)")
    leaked = sorted({m for g in got if g[0] != "tool" for m in _MARKUP.findall(g[1])})
    if leaked:
        problems.append("markup in output: " + " ".join(f"`{m}`" for m in leaked[:3]))
    if not problems:
        problems.append(f"every part recovered, order differs: {signature(got)}")
    return "; ".join(problems)


def judge(case: list[Seg], result: Result) -> Verdict:
    expected = expected_segments(case)
    calls_expected = [s for s in expected if s[0] == "tool"]
    if result.error:
        return Verdict(False, 0, len(calls_expected), f"error: {result.error}")
    got = normalize(result.segments)
    calls_got = [s for s in got if s[0] == "tool"]
    ok = sum(1 for i, want in enumerate(calls_expected) if i < len(calls_got) and calls_got[i][1:] == want[1:])
    order = [(s[0], s[1]) for s in got] == [(s[0], s[1]) for s in expected]
    note = "" if order and ok == len(calls_expected) else explain(expected, got)
    return Verdict(order, ok, len(calls_expected), note)


# --------------------------------------------------------------------------------------------
# The two systems
# --------------------------------------------------------------------------------------------


# CPU time of the parsing thread: on a shared VM, time spent descheduled is not the parser's.
cpu_clock = time.thread_time


def kvyard_factory(family: Family) -> Callable[[], Any]:
    cls = get_parser(family.name)
    names = set(TOOLS)
    schemas = {n: t["parameters"] for n, t in TOOLS.items()}

    def make():
        return cls(
            tool_names=names,
            tool_schemas=schemas,
            reasoning_started=family.reasoning_started,
            drop_framing_whitespace=True,
        )

    return make


def kvyard_run(make: Callable[[], Any], chunks: list[Chunk]) -> tuple[Result, float]:
    parser = make()
    events: list[Any] = []
    start = cpu_clock()
    for text, _ in chunks:
        events += parser.feed(text)
    events += parser.finish()
    elapsed = cpu_clock() - start
    return Result(kvyard_segments(events)), elapsed


@dataclass
class VllmHarness:
    parser_cls: Any
    tokenizer: Any
    request: Any
    prompt_ids: list[int]
    chat_template_kwargs: dict[str, Any]

    def make(self):
        return self.parser_cls(
            self.tokenizer, self.request.tools, chat_template_kwargs=self.chat_template_kwargs, model_config=None
        )


def vllm_harness(family: Family) -> VllmHarness:
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.parser.parser_manager import ParserManager

    setup = family.vllm
    assert setup is not None
    codec = codec_for(family)
    tokenizer = codec.hf_tokenizer()
    parser_cls = ParserManager.get_parser(
        tool_parser_name=setup.tool,
        reasoning_parser_name=setup.reasoning,
        enable_auto_tools=True,
        model_name=f"bench/{family.name}",
        is_harmony=setup.harmony,
        tokenizer=tokenizer,
    )
    request = ChatCompletionRequest(
        model=f"bench/{family.name}",
        messages=[{"role": "user", "content": _QUESTION}],
        tools=[{"type": "function", "function": {"name": n, **t}} for n, t in TOOLS.items()],
        tool_choice="auto",
        stream=True,
        chat_template_kwargs=setup.chat_template_kwargs or None,
    )
    prompt_ids = codec.encode(family.prompt)
    harness = VllmHarness(parser_cls, tokenizer, request, prompt_ids, dict(setup.chat_template_kwargs))
    request = harness.make().adjust_request(request)  # once, as vLLM's renderer does
    harness.request = request
    return harness


def vllm_run(harness: VllmHarness, chunks: list[Chunk]) -> tuple[Result, float]:
    try:
        parser = harness.make()
    except Exception as exc:  # noqa: BLE001 - recorded in the table
        return Result(error=f"constructor: {type(exc).__name__}: {exc}"[:120]), 0.0
    request, prompt_ids = harness.request, harness.prompt_ids
    last = len(chunks) - 1
    out = []
    start = cpu_clock()
    try:
        for i, (text, ids) in enumerate(chunks):
            out.append(
                parser.parse_delta(
                    delta_text=text,
                    delta_token_ids=list(ids),
                    request=request,
                    prompt_token_ids=prompt_ids,
                    finished=i == last,
                )
            )
    except Exception as exc:  # noqa: BLE001 - recorded in the table
        return Result(error=f"{type(exc).__name__}: {exc}"[:120]), 0.0
    elapsed = cpu_clock() - start
    return Result(vllm_segments(out)), elapsed


# --------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------


@dataclass
class Cell:
    family: str
    case: str
    chunking: str
    system: str  # "kvyard" | "vLLM"
    chunks: int
    verdict: Verdict | None
    chunks_per_s: float | None  # None: not measured (error or no counterpart)


def measure(run: Callable[[list[Chunk]], tuple[Result, float]], chunks: list[Chunk], samples: int, min_s: float):
    """Median chunks/s over ``samples`` samples of at least ``min_s`` each (one parser per stream)."""
    result, elapsed = run(chunks)
    if result.error or samples == 0:
        return result, None
    rates = []
    reps = max(1, int(min_s / max(elapsed, 1e-7)))
    for _ in range(samples):
        total = 0.0
        for _ in range(reps):
            total += run(chunks)[1]
        rates.append(len(chunks) * reps / total)
    return result, statistics.median(rates)


@dataclass
class Benchmark:
    cells: list[Cell]
    setup_us: dict[tuple[str, str], float]  # (family, system) -> median parser construction, µs


def setup_cost(make: Callable[[], Any], n: int) -> float | None:
    """Median µs to construct one parser (vLLM builds one per request, kvyard one per stream)."""
    times = []
    for _ in range(n):
        start = cpu_clock()
        try:
            make()
        except Exception:  # noqa: BLE001 - the table shows the error already
            return None
        times.append(cpu_clock() - start)
    return statistics.median(times) * 1e6


def run_benchmark(
    *,
    quick: bool = False,
    with_vllm: bool = True,
    families: Sequence[str] | None = None,
    chunkings: Sequence[str] = CHUNKINGS,
    samples: int | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> Benchmark:
    """Every (family, case, chunking) for kvyard and, where it has a counterpart, vLLM."""
    samples = (1 if quick else SAMPLES) if samples is None else samples
    min_s = 0.003 if quick else 0.03
    cells: list[Cell] = []
    setup_us: dict[tuple[str, str], float] = {}
    for family in FAMILIES:
        if families is not None and family.name not in families:
            continue
        harness = None
        harness_error = ""
        if with_vllm and family.vllm is not None:
            try:
                harness = vllm_harness(family)
            except Exception as exc:  # noqa: BLE001 - recorded in the table
                harness_error = f"{type(exc).__name__}: {exc}"[:120]
        make_kvyard = kvyard_factory(family)
        if samples:
            n = 20 if quick else 200
            setup_us[(family.name, "kvyard")] = setup_cost(make_kvyard, n)
            if harness is not None:
                setup_us[(family.name, "vLLM")] = setup_cost(harness.make, n)
        for case_name, case in CASES.items():
            ids, pieces = token_stream(family, family.render(case))
            for chunking in chunkings:
                chunks = chunked(ids, pieces, chunking)
                result, rate = measure(lambda c, m=make_kvyard: kvyard_run(m, c), chunks, samples, min_s)
                cells.append(Cell(family.name, case_name, chunking, "kvyard", len(chunks), judge(case, result), rate))
                if not with_vllm:
                    continue
                if harness is None:
                    verdict = Verdict(False, 0, 0, harness_error and f"error: {harness_error}")
                    cells.append(Cell(family.name, case_name, chunking, "vLLM", len(chunks), verdict if harness_error else None, None))
                    continue
                result, rate = measure(lambda c, h=harness: vllm_run(h, c), chunks, samples, min_s)
                cells.append(Cell(family.name, case_name, chunking, "vLLM", len(chunks), judge(case, result), rate))
            log(f"{family.name:12s} {case_name}")
    return Benchmark(cells, setup_us)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _fmt_rate(rate: float | None) -> str:
    if rate is None:
        return "—"
    if rate >= 100_000:
        return f"{rate / 1000:,.0f}k"
    return f"{rate:,.0f}"


def _geomean(values: list[float]) -> float | None:
    values = [v for v in values if v]
    if not values:
        return None
    return statistics.geometric_mean(values)


# Mechanisms behind the vLLM columns, read from vLLM 0.32's source (printed only for 0.32.x).
WHY_VLLM_0_32 = [
    "## Why vLLM 0.32 loses segments (read from its source)",
    "",
    "- **Reasoning never resumes.** `DelegatingParser.parse_delta` (`vllm/parser/abstract_parser.py`) "
    "sets `StreamState.reasoning_ended` once and never clears it: after the first end of reasoning, "
    "every later token goes to the tool parser as content. A second `<think>…</think>` comes back as "
    "text, tags included (qwen3_coder, deepseek), or is dropped by the tool parser (below). This is "
    "the `resumed after call` and `interleaved` failure in every `<think>` family.",
    "- **`hermes`** (Qwen3 JSON calls) streams as content only the text before the first "
    "`<tool_call>` (`_extract_content(current_text)`): reasoning and text after a call are lost.",
    "- **`kimi_k2`** keeps its grammar in a tool state after `<|tool_calls_section_end|>` on purpose "
    "(\"trailing model text after native tool calls is suppressed\", `vllm/parser/kimi_k2.py`): "
    "everything after the first tool section is lost.",
    "- **`deepseek_v3` / `deepseek_v31` tool parsers** track calls by counting begin/end token ids "
    "in the previous vs. the current output; a delta that opens and closes a call matches none of "
    "their branches (`one`: calls lost), and with `deepseek_v31` the end of the arguments that "
    "arrives in the same delta as `<｜tool▁call▁end｜>` is dropped (`4 tokens`: arguments not valid "
    "JSON). Per-token deltas are fine; `--stream-interval` > 1 and multi-token decode steps "
    "(speculative decoding, MTP) produce such deltas.",
    "- **harmony** (gpt-oss) is correct per token and per 4 tokens. With `one`, all parts arrive in "
    "one `DeltaMessage`, whose `reasoning`, `content` and `tool_calls` fields have no order among "
    "them: a limit of the Chat Completions delta shape rather than of the harmony parser.",
    "- **`one` chunk** is the limit case of a large delta (vLLM's server streams one engine step at "
    "a time); it is here because the issue requires kvyard's events to be the same for every "
    "chunking.",
    "- **nemotron**: vLLM 0.32 has no parser for `<TOOLCALL>[…]</TOOLCALL>`; kvyard is measured alone.",
    "",
]


def report(bench: Benchmark, *, command: str, quick: bool, wall_s: float) -> str:
    import vllm  # only for its version; report() runs after the vLLM side

    cells = bench.cells
    index = {(c.family, c.case, c.chunking, c.system): c for c in cells}
    fams = [f for f in FAMILIES if any(c.family == f.name for c in cells)]
    chunkings = [k for k in CHUNKINGS if any(c.chunking == k for c in cells)]
    lines = [
        "# Parser benchmark: kvyard vs vLLM's own reasoning + tool parsers",
        "",
        "```",
        command,
        "```",
        "",
        f"vLLM {vllm.__version__} (installed package), Python {platform.python_version()} on "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.1f}; "
        f"{'quick mode (1 timed sample per cell)' if quick else f'{SAMPLES} timed samples of ≥ 30 ms CPU per cell, median'}; "
        f"whole run {wall_s:.0f} s.",
        "",
        "**Noise:** measured on a shared 2-CPU VM while engine tests ran on the same machine. "
        "Throughput counts the parsing thread's CPU time, which removes most of the scheduling "
        "noise, but caches and frequency are shared: expect ±20–30% run to run. The correctness "
        "columns are deterministic.",
        "",
        "How: see the module docstring of `benchmarks/parsers.py`. In short: identical token "
        "streams `(delta_text, delta_token_ids)` go to kvyard's `StreamParser.feed` and to the "
        "`Parser.parse_delta` that vLLM's chat completions server builds from "
        "`--reasoning-parser`/`--tool-call-parser`. Chunkings: `token` = one token per chunk (one "
        "character or one whole special token; one o200k token for gpt-oss), `4 tokens` (≈4 "
        "characters), `one` = the whole output in one chunk. Interleaving = the sequence of "
        "reasoning / tool / text segments (with tool names and stripped texts) equals the "
        "script's. A vLLM `DeltaMessage` has no order among its fields; its parts are read as "
        "reasoning, content, tool calls.",
        "",
        "vLLM parsers per family: "
        + "; ".join(
            f"{f.name}: {f.vllm.label()}"
            + (f" with `chat_template_kwargs={json.dumps(f.vllm.chat_template_kwargs)}`" if f.vllm and f.vllm.chat_template_kwargs else "")
            if f.vllm
            else f"{f.name}: none — {f.no_vllm}"
            for f in fams
        )
        + ".",
        "",
        "## Summary per family",
        "",
        f"Correctness over {len(CASES)} cases × {len(chunkings)} chunkings per family.",
        "",
        "| family | vLLM parsers | order preserved, kvyard | order preserved, vLLM | tool calls recovered, kvyard | tool calls recovered, vLLM |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for f in fams:
        row = [f.name, f"`{f.vllm.reasoning}` + `{f.vllm.tool}`" if f.vllm else "none"]
        judged = {
            system: [c for c in cells if c.family == f.name and c.system == system and c.verdict is not None]
            for system in ("kvyard", "vLLM")
        }
        for system in ("kvyard", "vLLM"):
            cs = judged[system]
            row.append(f"{sum(c.verdict.order for c in cs)}/{len(cs)}" if cs else "n/a")
        for system in ("kvyard", "vLLM"):
            cs = judged[system]
            row.append(
                f"{sum(c.verdict.calls_ok for c in cs)}/{sum(c.verdict.calls_total for c in cs)}" if cs else "n/a"
            )
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "Throughput: chunks per CPU-second of the parsing thread (`time.thread_time`), geometric "
        "mean over the family's cases (each case: median of the timed samples); ratio = kvyard / "
        "vLLM. Setup: median CPU µs to construct one parser (both build one per request/stream; "
        "not in the chunks/s; vLLM's harmony parser builds its `StreamableParser` on the first "
        "chunk, so that part is in its chunks/s). vLLM's `one` numbers for deepseek are fast "
        "partly because it returns little or nothing for them (see the per-case table).",
        "",
        "| family | setup µs, kvyard | setup µs, vLLM | "
        + " | ".join(f"`{k}` kvyard | `{k}` vLLM | `{k}` ratio" for k in chunkings)
        + " |",
        "| --- | ---: | ---: | " + " | ".join("---: | ---: | ---:" for _ in chunkings) + " |",
    ]
    summary_ratio: dict[str, list[float]] = {k: [] for k in chunkings}
    for f in fams:
        row = [f.name]
        for system in ("kvyard", "vLLM"):
            us = bench.setup_us.get((f.name, system))
            row.append(f"{us:,.0f}" if us is not None else "—")
        for k in chunkings:
            kv = _geomean([c.chunks_per_s for c in cells if c.family == f.name and c.system == "kvyard" and c.chunking == k])
            vl = _geomean([c.chunks_per_s for c in cells if c.family == f.name and c.system == "vLLM" and c.chunking == k])
            ratio = kv / vl if kv and vl else None
            if ratio:
                summary_ratio[k].append(ratio)
            row += [_fmt_rate(kv), _fmt_rate(vl), f"{ratio:.1f}×" if ratio else "—"]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "Across families (geometric mean of the per-family ratios): "
        + ", ".join(f"`{k}` {statistics.geometric_mean(v):.1f}×" for k, v in summary_ratio.items() if v)
        + ".",
        "",
        "## Per case",
        "",
        "Order: one mark per chunking (" + ", ".join(f"`{k}`" for k in chunkings) + "), ✓ preserved, ✗ not. "
        "Calls: recovered with the right name and arguments, worst chunking. Chunks/s: `token` chunking.",
        "",
        "| family | case | tokens | kvyard order | kvyard calls | kvyard chunks/s | vLLM order | vLLM calls | vLLM chunks/s | what went wrong (per chunking) |",
        "| --- | --- | ---: | :---: | ---: | ---: | :---: | ---: | ---: | --- |",
    ]
    for f in fams:
        for case_name in CASES:
            row_cells = {
                (k, s): index.get((f.name, case_name, k, s)) for k in chunkings for s in ("kvyard", "vLLM")
            }
            kv0 = row_cells[(chunkings[0], "kvyard")]
            if kv0 is None:
                continue
            row = [f.name, case_name, str(kv0.chunks if chunkings[0] == "token" else "")]
            notes: list[str] = []
            for system in ("kvyard", "vLLM"):
                cs = [row_cells[(k, system)] for k in chunkings]
                if any(c is None or c.verdict is None for c in cs):
                    row += ["n/a", "n/a", "—"]
                    continue
                row.append("".join("✓" if c.verdict.order else "✗" for c in cs))
                worst = min(cs, key=lambda c: c.verdict.calls_ok)
                row.append(f"{worst.verdict.calls_ok}/{worst.verdict.calls_total}")
                row.append(_fmt_rate(cs[0].chunks_per_s))
                grouped: dict[str, list[str]] = {}
                for c in cs:
                    if c.verdict.note:
                        grouped.setdefault(c.verdict.note, []).append(f"`{c.chunking}`")
                prefix = "kvyard " if system == "kvyard" else ""
                notes += [f"{prefix}{', '.join(ks)}: {n}" for n, ks in grouped.items()]
            note = " · ".join(notes)
            row.append(note.replace("|", "\\|").replace("\n", "\\n"))
            lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "Expected shapes (R = reasoning, T = tool call, X = text; R2 = the script's second "
        "reasoning segment, and so on): "
        + "; ".join(f"{name}: {signature(expected_segments(case))}" for name, case in CASES.items())
        + ". `→ text`: the segment came back as the other kind; `lost`: nowhere in the output; "
        "`markup in output`: delimiters surfaced as reasoning or text.",
        "",
    ]
    if vllm.__version__.startswith("0.32."):
        lines += WHY_VLLM_0_32
    lines += [
        "## Throughput, every chunking (chunks per CPU-second, median)",
        "",
        "| family | case | " + " | ".join(f"`{k}` kvyard | `{k}` vLLM" for k in chunkings) + " |",
        "| --- | --- | " + " | ".join("---: | ---:" for _ in chunkings) + " |",
    ]
    for f in fams:
        for case_name in CASES:
            row = [f.name, case_name]
            for k in chunkings:
                for s in ("kvyard", "vLLM"):
                    c = index.get((f.name, case_name, k, s))
                    row.append(_fmt_rate(c.chunks_per_s) if c else "—")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one timed sample per cell")
    ap.add_argument("--kvyard-only", action="store_true", help="skip vLLM (no vLLM import)")
    ap.add_argument("--family", action="append", help="only these families (repeatable)")
    ap.add_argument("--output", type=Path, help="write the markdown report here")
    args = ap.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    command = "python benchmarks/parsers.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    start = time.perf_counter()
    bench = run_benchmark(
        quick=args.quick,
        with_vllm=not args.kvyard_only,
        families=args.family,
        log=lambda s: print(f"[{time.perf_counter() - start:6.1f}s] {s}", file=sys.stderr, flush=True),
    )
    wall = time.perf_counter() - start
    cells = bench.cells
    if args.kvyard_only:
        bad = [c for c in cells if not (c.verdict.order and c.verdict.calls_ok == c.verdict.calls_total)]
        for c in cells:
            print(f"{c.family:12s} {c.case:20s} {c.chunking:9s} order={'yes' if c.verdict.order else 'NO'} "
                  f"calls={c.verdict.calls_ok}/{c.verdict.calls_total} {_fmt_rate(c.chunks_per_s)} chunks/s {c.verdict.note}")
        return 1 if bad else 0
    text = report(bench, command=command, quick=args.quick, wall_s=wall)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
