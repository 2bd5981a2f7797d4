"""The text spaCy is given: the normalised text with long runs of punctuation blanked.

spaCy's tokenizer splits a space-free chunk's prefixes and suffixes off one at a time (quotes,
commas, brackets, `*`, `=`, `#`, emoji, `C$`, `'s`, ...), and each split searches and copies
the rest of the chunk: a chunk of n such characters costs n squared. 20,000 `'` took 38 s of
CPU, which a prompt's budget cannot stop (spaCy is charged after it ran), while it held the
ingest worker. spaCy is given instead a copy of the text in which every run of `RUN_MIN` or
more such characters keeps its first and last character and has spaces in between: the same
length, so every offset spaCy reports (its entities, its tokens) is an offset of the
normalised text, and the recognisers, which read the normalised text itself, see the run as it
is. A run of punctuation holds no name or place for spaCy to find; what is stored keeps every
original character outside the PII spans.

After it, a chunk begins and ends with fewer than `RUN_MIN` characters spaCy can split off (a
run shorter than that, or a kept end and the word beside it), so the tokenizer's work is at
most about `RUN_MIN` times the text's length: linear. `linear_url_match` does the same for
spaCy's URL expression, which a chunk of many ":" made quadratic.

spaCy's English rules split no "-" or "~" off the start of a word either: "--Rosalind Quimby"
(a signature), "-Oscar Wilde" (an attribution's em dash, "-" once normalised), "~Rosalind"
were a token its NER did not read as a name (the surname came out a place, the first name
was stored in the clear). So a word's opening dashes or tildes are blanked too, before a
capital letter only ("--verbose", "e-mail", "-5" reach spaCy as they are). The same goes
for "=", and for the end of a word, from which spaCy splits none of "-", "~", "=":
"=Rosalind Quimby=" left "Quimby=", a token its NER did not read, in the clear, and
"==========Rosalind Quimby==========" was not read as a name at all. A word's closing
dashes, tildes or "=" are blanked when the word begins with a capital letter ("x=", "a--",
"C++", "e-mail" reach spaCy as they are). spaCy splits no "+" off a word's end either, nor
"--" before digits: "Rosalind Quimby++" and "Rosalind Quimby--2024" (a version, a year, a
count after a name) left "Quimby++", "Quimby--2024" in the clear, and a lower-case name closed
by dashes ("rosalind quimby--") the same. So "++" (or more) closing a word of two or more
letters is blanked as its dashes are, two or more dashes or "+" are blanked before digits
too ("Quimby  2024"), and a lower-case word of two or more letters has two or more closing
ones blanked ("quimby  "; one is a prefix or a dash of prose: "pro- Russia", "dinner- so",
"day~", "crazy="); a single letter is a variable or a language, "x=", "a--", "i++",
"C++", "g++", "C++17", and "X=5", "Covid-19", "F-16" keep their one sign before digits.
"""

from __future__ import annotations

import re
from typing import Any

# Runs at least this long (characters) are blanked. Ordinary prompts hold runs of a few
# ("?!?!", "...", "____") and dividers of up to a line ("=" * 40 costs spaCy 0.1 ms); what is
# left after blanking, a 63-character run at each end of every chunk, costs spaCy's tokenizer
# about 10 us a character (bench/redact_budget.py --sweep).
RUN_MIN = 64

# A character spaCy may split off a chunk: anything but a letter, a digit, a space or one of
# "-~/@^|\\" (never split off alone: a divider of dashes is one token), and "_"; with the
# affixes of spaCy's English rules that hold letters and may follow each other without limit:
# the prefixes "US$", "C$", "A$" and the suffixes "'s", "’s" (the others with letters,
# units and currencies after a digit, come off once: the digit stops the next one).
_RUN = re.compile(r"(?:US\$|[CA]\$|['\u2019][sS]|[^\w\s\-~/@^|\\]|_)++")

# Dashes, tildes or "=" opening a space-free chunk, before a letter (blanked before a
# capital), and dashes, tildes, "=" or "++" closing one after a letter, maybe before digits
# (blanked when the chunk's first letter is a capital or it is a lower-case word:
# `_closing_blanked`).
_OPENING = re.compile(r"(?<!\S)[-~=]++(?=[^\W\d_])")
_CLOSING = re.compile(r"(?<!\S)\S*[^\W\d_](?:[-~=]++|\+{2,}+)(?=\d*+[^\w\s\-~=+]*+(?!\S))")

# spaCy's URL expression (spacy/lang/tokenizer_exceptions.py) reads a "user:password@" part
# with `\S+(?::\S*)?@`: from each ":" of a chunk without spaces it runs to the chunk's end
# and back, looking for an "@" (16,000 "a:": 2.6 s of CPU for one call). `\S+@` takes the
# same strings (":" and what follows it are non-space characters too), in one pass.
_URL_USER = r"(?:\S+(?::\S*)?@)?"
_URL_USER_LINEAR = r"(?:\S+@)?"


def linear_url_match(url_match: Any) -> Any:
    """spaCy's tokenizer `url_match` with its user part read in linear time: the same
    strings match. Any other expression is returned as it is (`None` too)."""
    pattern = getattr(getattr(url_match, "__self__", None), "pattern", None)
    if not isinstance(pattern, str) or _URL_USER not in pattern:
        return url_match
    compiled = url_match.__self__
    return re.compile(pattern.replace(_URL_USER, _URL_USER_LINEAR), compiled.flags).match


def spacy_text(text: str) -> str:
    """`text` with every run of `RUN_MIN` or more characters spaCy splits off one at a time
    kept at its two ends and blanked between, and a word's opening dashes, tildes or "="
    blanked before a capital letter, its closing ones after a capitalised word (same length,
    same offsets)."""
    blanked = _runs_blanked(text)
    if not any(c in blanked for c in "-~=+"):
        return blanked
    opened = _OPENING.sub(lambda m: " " * len(m.group()) if m.string[m.end()].isupper()
                          else m.group(), blanked)
    return _CLOSING.sub(_closing_blanked, opened)


def unblanked(shown: str, start: int, end: int) -> tuple[int, int]:
    """`start, end` without the characters at either end that `shown` (what spaCy was
    given) holds as spaces: a name's closing signs blanked, and the space after them."""
    while start < end and shown[end - 1].isspace():
        end -= 1
    while start < end and shown[start].isspace():
        start += 1
    return start, end


def _closing_blanked(m: re.Match[str]) -> str:
    """A chunk with its closing dashes, tildes, "=" or "++" blanked when its first letter
    (after what opened it) is a capital or it is a lower-case word, of two or more letters
    before "++", and with two or more signs before digits ("Quimby--2024", not "X=5")."""
    chunk = m.group()
    word = chunk.rstrip("-~=+")
    signs = chunk[len(word):]
    first = word.lstrip(" -~=")[:1]
    lower_word = word.isalpha() and word.islower()
    if not (first.isupper() or lower_word and len(word) >= 2 and len(signs) >= 2):
        return chunk  # "x=", "a--"; one sign after a lower-case word: "pro- Russia", "day~"
    if "+" in signs and not (len(word) >= 2 and word[-2:].isalpha()):
        return chunk  # "C++", "C++17": a language, not a name
    if m.string[m.end():m.end() + 1].isdigit() and len(signs) < 2:
        return chunk  # "X=5", "Covid-19"
    return word + " " * len(signs)


def _runs_blanked(text: str) -> str:
    if len(text) < RUN_MIN:
        return text
    parts: list[str] = []
    pos = 0
    for m in _RUN.finditer(text):
        start, end = m.span()
        if end - start < RUN_MIN:
            continue
        parts.append(text[pos:start + 1])
        parts.append(" " * (end - start - 2))
        pos = end - 1
    if not parts:
        return text
    parts.append(text[pos:])
    return "".join(parts)
