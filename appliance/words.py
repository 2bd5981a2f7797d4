"""Counts said as words, for every command and screen: `1 record`, `3 records`."""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """`1 turn`, `11 turns` (`many`: the plural where it is not `word` + s, e.g. `vault
    entries`): a count with its noun, where "11 turn(s)" made the reader do the grammar."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"
