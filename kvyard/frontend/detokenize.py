"""Incremental detokenization of engine output, special tokens kept (the parser needs them).

Uses the fast tokenizer's ``DecodeStream``: O(1) amortized per token, holds back only bytes of
an incomplete UTF-8 character.
"""

from __future__ import annotations

from tokenizers.decoders import DecodeStream


class Detokenizer:
    def __init__(self, tokenizer):
        self._backend = tokenizer.backend_tokenizer
        self._stream = DecodeStream(skip_special_tokens=False)

    def feed(self, token_ids: list[int]) -> str:
        """The text that these new tokens complete (may be empty)."""
        parts = []
        for token_id in token_ids:
            piece = self._stream.step(self._backend, token_id)
            if piece:
                parts.append(piece)
        return "".join(parts)
