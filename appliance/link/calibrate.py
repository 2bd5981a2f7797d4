"""A tenant's link threshold, learned from its own history-linked traffic. Pure.

Sources of traffic disagree on one number: how sure the content linker must be
before a prompt continues an open conversation rather than opening a new one
(docs/linking.md, "Per-source threshold calibration"). A deployment can measure
its own answer. When the gateway sends `history`, the prompt's thread is known
exactly; the content linker is asked anyway what it would have decided, and the
answer is tallied by score, with no text, ids or users:

* `attach`: the history continues a thread and the content linker's best thread
  is that one. Right when the score reaches the threshold.
* `new`: the history is empty, a new conversation. Right when the score is below it.
* the content linker picking another thread is wrong at any threshold: not tallied.

`choose` picks the threshold with the most right decisions, but only once
`min_decisions` are tallied and only when its gain over the policy threshold
clears the noise: the decisions the two thresholds disagree on must favour it by
`Z` standard deviations of a fair coin (a sign test). Otherwise the policy
threshold stands.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

BINS = 100  # score resolution of the tally
STEP = 5  # candidate thresholds every STEP bins: 0.05, 0.10, ... 0.95
Z = 1.0  # sign-test margin, in standard deviations, a calibrated threshold must clear
CAP = 20_000.0  # tallied decisions kept: beyond it, older counts are halved (drift)


def bin_of(score: float) -> int:
    """The tally bin of a score in [0, 1]."""
    return min(BINS - 1, max(0, int(score * BINS)))


@dataclass(frozen=True)
class Tally:
    """Per score bin, how many history-linked prompts should attach, and should start new."""

    attach: tuple[float, ...] = (0.0,) * BINS
    new: tuple[float, ...] = (0.0,) * BINS

    @property
    def decisions(self) -> float:
        return sum(self.attach) + sum(self.new)

    def add(self, score: float, outcome: str) -> Tally:
        """This tally with one more decision (`outcome` "attach" or "new")."""
        return self.merged(delta(score, outcome))

    def merged(self, other: Tally) -> Tally:
        """Both tallies' counts, halved while over `CAP`."""
        attach = [a + b for a, b in zip(self.attach, other.attach, strict=True)]
        new = [a + b for a, b in zip(self.new, other.new, strict=True)]
        while sum(attach) + sum(new) > CAP:
            attach, new = [a / 2 for a in attach], [n / 2 for n in new]
        return Tally(tuple(attach), tuple(new))


def delta(score: float, outcome: str) -> Tally:
    """A tally of one decision."""
    if outcome not in ("attach", "new"):
        raise ValueError(f"outcome must be 'attach' or 'new', not {outcome!r}")
    counts = [0.0] * BINS
    counts[bin_of(score)] = 1.0
    zero = (0.0,) * BINS
    return Tally(tuple(counts), zero) if outcome == "attach" else Tally(zero, tuple(counts))


def outcome(history_thread: str | None, content_thread: str | None) -> str | None:
    """What a history-decided prompt teaches: `new` (empty history), `attach` (the content
    linker's best thread is the history's), or None (it picked another thread, or none)."""
    if history_thread is None:
        return "new"
    return "attach" if content_thread == history_thread else None


@dataclass(frozen=True)
class Choice:
    """The threshold to use, why, and on how many decisions it rests."""

    threshold: float
    source: str  # "calibrated", "policy" or "pinned" (by the operator)
    decisions: int
    gain: int  # right decisions gained over the policy threshold (0 when not calibrated)


def _cut(threshold: float) -> int:
    """The first bin that attaches at `threshold`."""
    return min(BINS, max(0, math.ceil(threshold * BINS - 1e-9)))


def choose(tally: Tally, policy: float, min_decisions: int,
           candidates: Sequence[float] | None = None) -> Choice:
    """The tenant's threshold: the best-supported one, or `policy` (see the module doc)."""
    n = tally.decisions
    keep = Choice(policy, "policy", int(n), 0)
    if n < min_decisions or not sum(tally.attach) or not sum(tally.new):
        return keep
    # below[k]: attach and new counts in bins < k
    attach_below = [0.0, *accumulate(tally.attach)]
    new_below = [0.0, *accumulate(tally.new)]

    def right(cut: int) -> float:  # bins >= cut attach, the rest start new
        return attach_below[BINS] - attach_below[cut] + new_below[cut]

    base = _cut(policy)
    grid = candidates if candidates is not None else [k / BINS for k in range(STEP, BINS, STEP)]
    best: tuple[float, float, float] | None = None  # (gain, -distance, threshold)
    for thr in grid:
        cut = _cut(thr)
        lo, hi = sorted((base, cut))
        flipped = attach_below[hi] - attach_below[lo] + new_below[hi] - new_below[lo]
        gain = right(cut) - right(base)
        if flipped <= 0 or gain < Z * math.sqrt(flipped):
            continue
        key = (gain, -abs(thr - policy), thr)
        if best is None or key > best:
            best = key
    if best is None:
        return keep
    return Choice(round(best[2], 4), "calibrated", int(n), int(round(best[0])))
