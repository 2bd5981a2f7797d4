"""The street-address recogniser reads one long line of addresses once, not once per address.

Before, each address's town/postcode tail was matched again from that address to the end of
the line, through every address after it: on one 32,768-character line of "12 Main Street,
Springfield, " its expressions matched 18.6 million characters (0.68 s, the slowest of
Semtrace's own steps), and a busy host could refuse the prompt as `unredactable`.
The work is counted in characters matched (no clock), so the test fails on the old code.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from typing import Any

import pytest

from appliance.redact.addresses import StreetAddressRecognizer
from appliance.redact.budget import TimedPattern

STREET = "12 Main Street, Springfield, "
# The tail expression before the change, matched from each address: the reference.
OLD_TAIL = re.compile(r"(?:,[ \t]*(?:[A-Z0-9][\w'’.\-]*(?:[ \t]+[A-Z0-9][\w'’.\-]*){0,3}))+")


def _line(chars: int) -> str:
    return (STREET * (chars // len(STREET) + 1))[:chars]


def _matched_chars(monkeypatch: pytest.MonkeyPatch, text: str) -> tuple[list[Any], int]:
    """The recogniser's spans on `text`, and how many characters its expressions matched."""
    total = 0
    real = TimedPattern._call

    def counted(matches: Iterator[Any]) -> Iterator[Any]:
        nonlocal total
        for m in matches:
            total += m.end() - m.start()
            yield m

    def call(self: TimedPattern, method: str, text: str, pos: int, endpos: int | None) -> Any:
        nonlocal total
        result = real(self, method, text, pos, endpos)
        if method == "finditer":
            return counted(result)
        if method == "findall":
            total += sum(len(x) if isinstance(x, str) else 0 for x in result)
        elif result is not None and hasattr(result, "end"):
            total += result.end() - result.start()
        return result

    monkeypatch.setattr(TimedPattern, "_call", call)
    spans = list(StreetAddressRecognizer().spans(text, None))
    return spans, total


def test_one_long_line_of_addresses_is_read_in_linear_work(
        monkeypatch: pytest.MonkeyPatch) -> None:
    work = {}
    for chars in (8192, 32768):
        text = _line(chars)
        spans, work[chars] = _matched_chars(monkeypatch, text)
        # every address found, each redacted through the rest of the line as before
        assert len(spans) == text.count("Street")
        assert all(end == len(text) for _, end, _ in spans)
        # old code: 1,170,729 and 18,567,553 characters matched (143 and 567 per
        # character); now 21,720 and 86,952 (2.7 per character)
        assert work[chars] <= 10 * chars
    assert work[32768] <= 5 * work[8192]  # old code: 15.9 times


def test_tail_ends_are_those_of_the_old_expression() -> None:
    from appliance.redact.addresses import _Tails

    rng = random.Random(138)
    words = ["12", "5B", "Main", "Street", "Springfield", "NY", "10001", "de", "the", "O'Neil",
             "St.", "x-Ray", "Hauptstraße", "Mitte"]
    seps = [" ", ", ", ",", ",\t", "\t", "\n", ". ", " , ", ",  "]
    for _ in range(2000):
        text = "".join(rng.choice(words) + rng.choice(seps) for _ in range(rng.randint(1, 60)))
        tails = _Tails(text)
        for pos in rng.sample(range(len(text) + 1), min(len(text) + 1, 30)):
            old = OLD_TAIL.match(text, pos)
            assert tails.run_end(pos) == (old.end() if old else pos), (text, pos)


class _Counting(str):
    """A text that counts the characters its searches and slices read (no clock)."""

    read = 0

    def rfind(self, sub: Any, start: Any = None, end: Any = None) -> int:  # type: ignore[override]
        found = super().rfind(sub, start, end)
        lo, hi = start or 0, len(self) if end is None else end
        _Counting.read += hi - (found if found >= 0 else lo)
        return found

    def find(self, sub: Any, start: Any = None, end: Any = None) -> int:  # type: ignore[override]
        found = super().find(sub, start, end)
        lo, hi = start or 0, len(self) if end is None else end
        _Counting.read += (found if found >= 0 else hi) - lo
        return found

    def __getitem__(self, key: Any) -> str:
        part = super().__getitem__(key)
        _Counting.read += len(part)
        return part


def _extend_back_old(text: str, start: int) -> int:
    """`_extend_back` before the change (the line read back to its start): the reference."""
    from appliance.redact.addresses import HOUSE_NUMBER_BEFORE, STREET_LINE, _line_at

    number = HOUSE_NUMBER_BEFORE.search(text, max(0, start - 8), start)
    if number:
        start = number.start()
    line_start, _ = _line_at(text, start)
    if line_start > 0 and not text[line_start:start].strip(" \t>?"):
        prev_start, _ = _line_at(text, line_start - 1)
        if STREET_LINE.fullmatch(text, prev_start, line_start - 1):
            line = text[prev_start:line_start]
            start = prev_start + len(line) - len(line.lstrip(" \t>?"))
    return start


def test_an_address_start_is_found_without_reading_back_its_whole_line() -> None:
    """Whether an address starts its line (to take in the street line above) is read from
    the indent before it, not from the line's start and end: on one long line of addresses
    that was read again for each address. Characters read, no clock: the old code read
    2,318,336 on the 8,192-character line (283 addresses) and 37,027,840 on the 32,768 one
    (1,130), 16 times as many; now 846 and 3,387 (three per address)."""
    from appliance.redact.addresses import _extend_back

    read = {}
    for chars in (8192, 32768):
        text = _line(chars)
        starts = [s for s, _, _ in StreetAddressRecognizer().spans(text, None)]
        counted = _Counting(text)
        _Counting.read = 0
        assert [_extend_back(counted, s) for s in starts] == starts
        read[chars] = _Counting.read
        assert read[chars] <= 4 * chars
    assert read[32768] <= 5 * read[8192]


def test_address_starts_are_those_of_the_old_code() -> None:
    from appliance.redact.addresses import _extend_back

    rng = random.Random(141)
    words = ["12", "5B", "Main", "Street", "Allika 46", "Suite 282", "Tallinn 10115", "de",
             "O'Neil", "x-Ray", "Hauptstraße", "20789"]
    seps = [" ", ", ", "\n", "\n  ", "\n> ", "\n>? ", "\t", " >", "\n\n", "? "]
    for _ in range(2000):
        text = "".join(rng.choice(words) + rng.choice(seps) for _ in range(rng.randint(1, 40)))
        for pos in rng.sample(range(len(text) + 1), min(len(text) + 1, 30)):
            assert _extend_back(text, pos) == _extend_back_old(text, pos), (text, pos)
