"""Incremental detokenization: token ids in, text deltas out, special tokens kept.

Each new id decodes a short window ``ids[prefix:]`` and compares it with ``ids[prefix:read]``;
the difference is the new text. Text is released only when it does not end in U+FFFD, so a
character split over several byte-level tokens comes out whole, and a window that starts mid-word
decodes the same way in both halves (sentencepiece's leading-space rule). Cost per token: two
decodes of a few tokens.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Any):
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def _decode(self, ids: list[int]) -> str:
        if not ids:
            return ""
        return self._tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def push(self, token_ids: Iterable[int]) -> str:
        """Text completed by ``token_ids`` (may be empty while a character is incomplete)."""
        pieces = []
        for token_id in token_ids:
            self._ids.append(int(token_id))
            before = self._decode(self._ids[self._prefix : self._read])
            after = self._decode(self._ids[self._prefix :])
            if len(after) > len(before) and not after.endswith("\ufffd"):
                pieces.append(after[len(before) :])
                self._prefix = self._read
                self._read = len(self._ids)
        return "".join(pieces)

    def flush(self) -> str:
        """Whatever is still pending at the end of the stream."""
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return after[len(before) :]
