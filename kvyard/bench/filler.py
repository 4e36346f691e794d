"""Deterministic filler text measured in *approximate tokens*.

Sizes in the benchmark are approximate tokens: ``CHARS_PER_TOKEN`` characters each (English
prose and code average about 4 characters per token with common BPE vocabularies; a small
trained vocabulary gives more tokens per character, so measure with the served tokenizer when
exact sizes matter). Text is drawn word by word from ``random.Random`` instances the caller
seeds, so equal seeds give equal text on every machine and Python version.
"""

from __future__ import annotations

import random

CHARS_PER_TOKEN = 4

_WORD_TEXT = """
the a to of and in is for that with on as it be this by are from or file code function
return value error test build run module class import type config path line string list call
result check update change model request server client cache prefix block token session user
tool agent output input read write edit search find create delete add fix should must when
then if else not all each new old first last next before after only project source directory
branch commit diff patch review plan step task note todo done
"""
_WORDS = tuple(_WORD_TEXT.split())

_CODE = (
    "def {n}(self, {m}):",
    "    return self.{n}.get({m!r}, None)",
    "for {m} in {n}_items:",
    "    if {m} is None: continue",
    "import {n}",
    "{n} = {m}({k})",
    "class {N}({M}):",
    "    \"\"\"{N} holds the {m}.\"\"\"",
    "raise ValueError(f\"bad {m}: {{{m}}}\")",
    "assert {n}.{m} == {k}",
)


def approx_tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def prose(rng: random.Random, tokens: int) -> str:
    """Sentences of common words, about ``tokens`` approximate tokens long."""
    target = max(tokens, 0) * CHARS_PER_TOKEN
    out: list[str] = []
    size = 0
    while size < target:
        n = rng.randint(6, 16)
        words = [rng.choice(_WORDS) for _ in range(n)]
        sentence = words[0].capitalize() + " " + " ".join(words[1:]) + ". "
        out.append(sentence)
        size += len(sentence)
    return "".join(out)[:target].rstrip()


def code(rng: random.Random, tokens: int) -> str:
    """Python-looking lines, about ``tokens`` approximate tokens long (tool results, file reads)."""
    target = max(tokens, 0) * CHARS_PER_TOKEN
    out: list[str] = []
    size = 0
    while size < target:
        n, m = rng.choice(_WORDS), rng.choice(_WORDS)
        line = rng.choice(_CODE).format(n=n, m=m, N=n.capitalize(), M=m.capitalize(), k=rng.randint(0, 999))
        out.append(line)
        size += len(line) + 1
    return "\n".join(out)[:target].rstrip()


def hex_id(rng: random.Random, digits: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(digits))
