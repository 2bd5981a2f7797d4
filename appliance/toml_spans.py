"""Pure: where the strings and comments of a TOML text are, and which key a string is the
value of, so that a value or a comment can be replaced in place, keeping the rest of the
file (its comments, order and layout) as the operator wrote it.

Only a lexer, not a parser: the caller parses the edited text again (tomllib) and keeps the
edit only when it reads back as intended.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# a bare key before `=` (at a line's start, or after `{` or `,` in an inline table)
_BARE_KEY = re.compile(r"(?:^|(?<=[\s{,]))([A-Za-z0-9_-]+)[ \t]*=[ \t]*$")
_EQUALS = re.compile(r"^[ \t]*=[ \t]*$")


@dataclass(frozen=True)
class Span:
    """`text[start:end]`: a string (quotes included) or a comment (`#` to the line's end)."""

    start: int
    end: int
    comment: bool


@dataclass(frozen=True)
class Value:
    """A string that is the value of `key`, and where its `key = ` begins."""

    key: str
    key_start: int
    span: Span


def spans(text: str) -> list[Span]:
    """The strings and comments of `text`, in order. ValueError for one left open (text
    tomllib read never has one)."""
    out: list[Span] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            end = _line_end(text, i)
            out.append(Span(i, end, True))
            i = end
        elif text.startswith(('"""', "'''"), i):
            end = _multi_line_end(text, i)
            out.append(Span(i, end, False))
            i = end
        elif c in "\"'":
            end = _single_line_end(text, i)
            out.append(Span(i, end, False))
            i = end
        else:
            i += 1
    return out


def values(text: str, found: list[Span]) -> list[Value]:
    """The strings of `found` that are a key's value (`key = "..."`, the key bare or
    quoted), in order."""
    out: list[Value] = []
    previous_end = 0
    for k, span in enumerate(found):
        gap = text[previous_end:span.start]
        previous_end = span.end
        if span.comment:
            continue
        if m := _BARE_KEY.search(gap):
            out.append(Value(m.group(1), span.start - len(gap) + m.start(1), span))
            continue
        before = found[k - 1] if k else None
        if (before is not None and not before.comment and _EQUALS.match(gap)
                and text[before.start] in "\"'" and not text.startswith(('"""', "'''"),
                                                                         before.start)
                and (before.start == 0 or text[before.start - 1] in " \t\r\n{,")):
            key = text[before.start + 1:before.end - 1]
            if "\\" not in key:  # an escaped key is not worth the guess: left alone
                out.append(Value(key, before.start, span))
    return out


def _line_end(text: str, i: int) -> int:
    end = text.find("\n", i)
    if end == -1:
        return len(text)
    return end - 1 if end > i and text[end - 1] == "\r" else end


def _single_line_end(text: str, i: int) -> int:
    quote, j = text[i], i + 1
    while j < len(text) and text[j] != "\n":
        if quote == '"' and text[j] == "\\":
            j += 2
            continue
        if text[j] == quote:
            return j + 1
        j += 1
    raise ValueError("a string is left open")


def _multi_line_end(text: str, i: int) -> int:
    quote, j = text[i] * 3, i + 3
    while j < len(text):
        if quote == '"""' and text[j] == "\\":
            j += 2
            continue
        if text.startswith(quote, j):
            end = j + 3
            while end < len(text) and text[end] == quote[0] and end - j < 5:
                end += 1  # up to two quotes of the string's own right before its end
            return end
        j += 1
    raise ValueError("a string is left open")
