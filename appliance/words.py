"""Counts said as words, for every command and screen: `1 record`, `3 records`."""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """`1 turn`, `11 turns` (`many`: the plural where it is not `word` + s, e.g. `vault
    entries`): a count with its noun, where "11 turn(s)" made the reader do the grammar."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def named(word: str, items: list[str], many: str | None = None) -> str:
    """`tenant acme`, `tenants acme, globex`: a list with its noun, by how many it names."""
    return f"{word if len(items) == 1 else many or word + 's'} {', '.join(items)}"


def ranges(word: str, spec: str, many: str | None = None) -> str:
    """`partition 3`, `partitions 3-5`, `partitions 0-2,7`: ranges with their noun, by how
    many they name (a spec that does not parse keeps the plural)."""
    count = 0
    try:
        for part in spec.split(","):
            lo, _, hi = part.partition("-")
            count += int(hi) - int(lo) + 1 if hi.strip() else 1
    except ValueError:
        count = 2
    return f"{word if count == 1 else many or word + 's'} {spec}"
