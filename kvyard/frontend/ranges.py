"""Regexes for numeric intervals, as JSON writes numbers, for forced tool calls (``forcing``).

Plain dialect only (character classes, ``(…|…)``, ``?``, ``*``, ``{n}``, ``{n,}``), which every
structured-output backend of vLLM reads. Integers are matched in canonical JSON form (``0``, ``-7``,
``42``; no leading zeros, no ``-0``). Decimals are matched without exponent: an optional ``-``,
a canonical integer part and an optional fraction of one or more digits (trailing zeros allowed).
An empty interval raises ``EmptyRange``.

The building block is the classic digit-by-digit split: the strings of one length between ``lo``
and ``hi`` are those sharing ``lo``'s first digit with a tail >= ``lo``'s tail, those starting with a
digit strictly between with any tail, and those sharing ``hi``'s first digit with a tail <=
``hi``'s tail; each tail is split the same way, so the regex grows linearly with the digit count.
Fractions compare the same way, digit by digit from the left, as ``0.F``.
"""

from __future__ import annotations

from decimal import Decimal


class EmptyRange(ValueError):
    """The interval holds no value of its kind."""


def integer_range_regex(lo: int | None, hi: int | None) -> str:
    """Canonical JSON integers n with lo <= n <= hi (None: unbounded on that side).

    Negatives are ``-`` before the magnitudes ``[max(1, -hi), -lo]``; the rest are the naturals
    ``[max(0, lo), hi]``."""
    if lo is not None and hi is not None and lo > hi:
        raise EmptyRange(f"no integer n with {lo} <= n <= {hi}")
    parts = []
    if lo is None or lo < 0:
        parts.append("-" + _naturals(1 if hi is None or hi >= 0 else -hi, None if lo is None else -lo))
    if hi is None or hi >= 0:
        parts.append(_naturals(0 if lo is None else max(lo, 0), hi))
    return _alt(parts)


def decimal_range_regex(lo: Decimal | None, hi: Decimal | None) -> str:
    """JSON numbers without exponent whose exact decimal value x has lo <= x <= hi.

    Negatives are ``-`` before the magnitudes ``[max(0, -hi), -lo]`` (so ``-0.0`` stands for 0 when
    0 is in range); the rest are the non-negative decimals ``[max(0, lo), hi]``."""
    if lo is not None and hi is not None and lo > hi:
        raise EmptyRange(f"no number x with {lo} <= x <= {hi}")
    parts = []
    if lo is None or lo < 0:
        parts.append("-" + _nonneg_decimals(Decimal(0) if hi is None or hi >= 0 else -hi, None if lo is None else -lo))
    if hi is None or hi >= 0:
        parts.append(_nonneg_decimals(Decimal(0) if lo is None else max(lo, Decimal(0)), hi))
    return _alt(parts)


def _alt(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else "(" + "|".join(parts) + ")"


def _digit_class(a: int, b: int) -> str:
    return str(a) if a == b else f"[{a}-{b}]"


def _any_digits(n: int) -> str:
    return "" if n == 0 else "[0-9]" if n == 1 else f"[0-9]{{{n}}}"


def _same_length(lo: str, hi: str) -> str:
    """Digit strings s of len(lo) == len(hi) with lo <= s <= hi: the digit-by-digit split."""
    if not lo:
        return ""
    if lo[0] == hi[0]:
        return lo[0] + _same_length(lo[1:], hi[1:])
    n = len(lo) - 1
    first, last = int(lo[0]), int(hi[0])
    parts, tail = [], None
    if lo[1:] != "0" * n:
        parts.append(lo[0] + _same_length(lo[1:], "9" * n))
        first += 1
    if hi[1:] != "9" * n:
        tail = hi[0] + _same_length("0" * n, hi[1:])
        last -= 1
    if first <= last:
        parts.append(_digit_class(first, last) + _any_digits(n))
    if tail is not None:
        parts.append(tail)
    return _alt(parts)


def _naturals(a: int, b: int | None) -> str:
    """Canonical decimal naturals in [a, b] (b None: unbounded): one ``_same_length`` per length,
    from a (or 10…0) to b (or 9…9); unbounded adds every longer number."""
    if b is not None and a > b:
        raise EmptyRange(f"no natural n with {a} <= n <= {b}")
    la = len(str(a))
    lb = len(str(b)) if b is not None else la
    parts = [
        _same_length(str(a) if n == la else "1" + "0" * (n - 1), str(b) if b is not None and n == lb else "9" * n)
        for n in range(la, lb + 1)
    ]
    if b is None:
        parts.append(f"[1-9][0-9]{{{la},}}")
    return _alt(parts)


def _split(d: Decimal) -> tuple[int, str]:
    """Integer part and fraction digits (trailing zeros dropped) of d >= 0."""
    whole, _, frac = format(d, "f").partition(".")
    return int(whole), frac.rstrip("0")


def _nonneg_decimals(a: Decimal, b: Decimal | None) -> str:
    """Decimals x with a <= x <= b (b None: unbounded), 0 <= a: integer part a's with fraction >= a's,
    any fraction on the integer parts strictly between, integer part b's with fraction <= b's."""
    ia, fa = _split(a)
    if b is not None:
        ib, fb = _split(b)
        if ia == ib:
            return str(ia) + (rf"\.{_fraction_between(fa, fb)}" if fa else _fraction_at_most(fb))
    parts, start = [], ia
    if fa:
        parts.append(rf"{ia}\.{_fraction_at_least(fa)}")
        start += 1
    any_fraction = r"(\.[0-9]+)?"
    if b is None:
        parts.append(_naturals(start, None) + any_fraction)
    else:
        if start <= ib - 1:
            parts.append(_naturals(start, ib - 1) + any_fraction)
        parts.append(str(ib) + _fraction_at_most(fb))
    return _alt(parts)


def _zeros(a: int, b: int) -> str:
    """From a to b zeros."""
    return ("0" * a if a < 4 else f"0{{{a}}}") if a == b else f"0{{{a},{b}}}"


def _fraction_at_least(d: str) -> str:
    """Non-empty digit strings F with 0.F >= 0.d (d non-empty, no trailing zero). A run of k leading
    zeros in d is one step (fewer zeros then a non-zero digit, or the k zeros then the rest), so
    the nesting follows the significant digits only."""
    k = len(d) - len(d.lstrip("0"))
    if k:
        return _alt([_zeros(0, k - 1) + "[1-9][0-9]*", _zeros(k, k) + _fraction_at_least(d[k:])])
    head, rest = int(d[0]), d[1:]
    parts = [_digit_class(head + 1, 9) + "[0-9]*"] if head < 9 else []
    parts.append(d[0] + (_fraction_at_least(rest) if rest else "[0-9]*"))
    return _alt(parts)


def _fraction_at_most_nonempty(d: str) -> str:
    """Non-empty digit strings F with 0.F <= 0.d (d without trailing zero; empty means 0). A run of
    k leading zeros in d is one step: up to k zeros and stop, or the k zeros then the rest."""
    if not d:
        return "0+"
    k = len(d) - len(d.lstrip("0"))
    if k:
        return _alt(([_zeros(1, k - 1)] if k > 1 else []) + [_zeros(k, k) + f"({_fraction_at_most_nonempty(d[k:])})?"])
    head, rest = int(d[0]), d[1:]
    parts = [_digit_class(0, head - 1) + "[0-9]*"]
    parts.append(d[0] + (f"({_fraction_at_most_nonempty(rest)})?" if rest else "0*"))
    return _alt(parts)


def _fraction_at_most(d: str) -> str:
    """An optional fraction ``.F`` (absent = 0) with 0.F <= 0.d."""
    return rf"(\.{_fraction_at_most_nonempty(d)})?"


def _fraction_between(lo: str, hi: str) -> str:
    """Non-empty digit strings F with 0.lo <= 0.F <= 0.hi (lo non-empty, both without trailing zero)."""
    if lo[0] == hi[0]:
        if len(lo) == 1:
            return lo + (f"({_fraction_at_most_nonempty(hi[1:])})?" if hi[1:] else "0*")
        return lo[0] + _fraction_between(lo[1:], hi[1:])
    first, last = int(lo[0]), int(hi[0])
    parts = [lo[0] + (_fraction_at_least(lo[1:]) if lo[1:] else "[0-9]*")]
    if first + 1 <= last - 1:
        parts.append(_digit_class(first + 1, last - 1) + "[0-9]*")
    parts.append(hi[0] + (f"({_fraction_at_most_nonempty(hi[1:])})?" if hi[1:] else "0*"))
    return _alt(parts)
