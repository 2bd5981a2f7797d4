"""Text as the recognisers should see it, with a map back to the original characters.

Look-alike characters let PII slip past patterns: fullwidth or Arabic-Indic
digits, a zero-width space inside a card number, a "−" (minus sign) between
phone groups, an `O` among digits. `normalize` applies NFKC, drops format
characters (zero-width spaces and joiners, soft hyphens, BOM, bidi marks),
maps every decimal digit and the confusable dashes, dots and spaces to ASCII,
and reads `O`/`o`, `l`/`I` between digits as `0`/`1`. Each character of
the result remembers the original characters it came from, so a span found
in the normalised text is replaced in the original exactly.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Separators that look like "-", "." or " " but are other code points (NFKC keeps them).
DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2043\ufe58\ufe63\uff0d\u02d7\u2e3a\u2e3b"
DOTS = "\u00b7\u2022\u2024\u2027\u2219\u22c5\u30fb\uff65\u0387\u16eb\u2e31\u2981"
SPACES = "\u00a0\u1680\u180e\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
         "\u202f\u205f\u3000"
SEPARATOR_MAP = {**dict.fromkeys(DASHES, "-"), **dict.fromkeys(DOTS, "."),
                 **dict.fromkeys(SPACES, " ")}
# Letters read as digits only next to digits on both sides: "4111 l111", "2O2".
DIGIT_LOOKALIKES = {"O": "0", "o": "0", "l": "1", "I": "1"}
_LOOKALIKE_IN_DIGITS = re.compile(r"(?:(?<=\d)|(?<=\d[ .\-]))[OolI](?=[ .\-]?\d)")


@dataclass(frozen=True)
class Normalized:
    """Normalised text; `starts[i]`/`ends[i]` are the original range of character i."""

    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    identity: bool = False

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The original character range behind `text[start:end]` (end exclusive)."""
        if self.identity:
            return start, end
        if end <= start:
            pos = self.starts[start] if start < len(self.starts) else (
                self.ends[-1] if self.ends else 0)
            return pos, pos
        return self.starts[start], self.ends[end - 1]


def _dropped(ch: str) -> bool:
    """Format characters: invisible, and never part of what a person reads."""
    return unicodedata.category(ch) == "Cf"


def _clusters(text: str) -> list[tuple[int, int]]:
    """(start, end) of each base character with the combining marks that follow it."""
    out: list[tuple[int, int]] = []
    for i, ch in enumerate(text):
        if out and unicodedata.combining(ch):
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


def _ascii_char(ch: str) -> str:
    """ASCII digit for any decimal digit, ASCII separator for a look-alike one."""
    if ch in SEPARATOR_MAP:
        return SEPARATOR_MAP[ch]
    if not ch.isascii() and ch.isdecimal():
        return str(unicodedata.decimal(ch))
    return ch


def _digit_lookalikes(text: str) -> str:
    """`O`/`o`/`l`/`I` between digits as digits (a one-for-one substitution)."""
    if not any(c in text for c in DIGIT_LOOKALIKES):
        return text
    return _LOOKALIKE_IN_DIGITS.sub(lambda m: DIGIT_LOOKALIKES[m.group()], text)


# NFKC writes a few characters out as whole words: "ﷺ" (U+FDFA) as 18 Arabic characters,
# "ﷻ" as 8, "㌖" as 6 katakana, "㈝" as "(오전)". 16,000 "ﷺ" gave spaCy 288,000 characters (4.7 s
# of CPU, then refused). A character that grows by this many or more and holds no ASCII
# letter or digit and no digit of any script (nothing a pattern reads: no "⑽", "Ⅷ", "㎯") is
# kept as it was: the recognisers and spaCy see one character for it.
WORD_EXPANSION = 3


def _nfkc(piece: str) -> str:
    """NFKC of one character with its combining marks, or the piece itself when NFKC writes it
    out as a word holding nothing a recogniser reads (`WORD_EXPANSION`)."""
    nf = unicodedata.normalize("NFKC", piece)
    if len(nf) - len(piece) >= WORD_EXPANSION and not any(
            (c.isascii() and c.isalnum()) or c.isdecimal() for c in nf):
        return piece
    return nf


def normalize(text: str) -> Normalized:
    """NFKC, no format characters, ASCII digits and separators; offsets kept."""
    if text.isascii():
        fixed = _digit_lookalikes(text)
        return Normalized(fixed, (), (), identity=True)
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for start, end in _clusters(text):
        piece = "".join(c for c in text[start:end] if not _dropped(c))
        if not piece:
            continue
        for ch in _nfkc(piece):
            if _dropped(ch):
                continue
            chars.append(_ascii_char(ch))
            starts.append(start)
            ends.append(end)
    fixed = _digit_lookalikes("".join(chars))
    return Normalized(fixed, tuple(starts), tuple(ends))
