"""Parsers by family name, and the fail-fast check that a tokenizer fits a family.

Model profiles name a parser (``qwen3``, ``harmony``...); ``get_parser`` resolves it or raises a
``ValueError`` listing the known names. ``check_tokenizer`` raises when the model's vocabulary
lacks a delimiter the family needs as a single special token: with such a tokenizer the model
cannot emit the delimiter as one token and the profile names the wrong parser.
"""

from __future__ import annotations

from typing import Any

from kvyard.parsing.base import StreamParser
from kvyard.parsing.families.deepseek import DeepSeekR1Parser, DeepSeekV3Parser
from kvyard.parsing.families.harmony import HarmonyParser
from kvyard.parsing.families.kimi_k2 import KimiK2Parser
from kvyard.parsing.families.nemotron import NemotronParser
from kvyard.parsing.families.plain import PlainParser
from kvyard.parsing.families.qwen3 import Qwen3Parser
from kvyard.parsing.families.qwen3_coder import Qwen3CoderParser

_PARSERS: dict[str, type[StreamParser]] = {
    cls.name: cls
    for cls in (
        Qwen3Parser,
        Qwen3CoderParser,
        DeepSeekR1Parser,
        DeepSeekV3Parser,
        NemotronParser,
        HarmonyParser,
        KimiK2Parser,
        PlainParser,
    )
}


def parser_names() -> list[str]:
    """The registered family names, sorted."""
    return sorted(_PARSERS)


def get_parser(name: str) -> type[StreamParser]:
    """The parser class registered as ``name``."""
    try:
        return _PARSERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown parser {name!r}; known parsers: {', '.join(parser_names())}") from None


def check_tokenizer(parser_cls: type[StreamParser] | str, tokenizer: Any) -> None:
    """Raise ``ValueError`` naming the special tokens ``tokenizer``'s vocabulary lacks."""
    if isinstance(parser_cls, str):
        parser_cls = get_parser(parser_cls)
    needed = parser_cls.special_tokens
    if not needed:
        return
    vocab = tokenizer.get_vocab()
    missing = [token for token in needed if token not in vocab]
    if missing:
        raise ValueError(
            f"parser {parser_cls.name!r} needs the special tokens {missing} but the tokenizer's "
            "vocabulary lacks them; set the model profile's parser to the model's family"
        )
