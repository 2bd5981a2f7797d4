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
