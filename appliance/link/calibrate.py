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
`min_decisions` are tallied, at least `min_side` of them on each side, and only
when its gain over the policy threshold clears the noise: the decisions the two
thresholds disagree on must favour it by `Z` standard deviations of a fair coin
(a sign test). The thresholds tried lie within `BOUNDS`, the span of the
held-out sources' own best thresholds (docs/linking.md). The history-linked
prompts are not the tenant's plain traffic, and a few continuations say little
about where continuations score, so a threshold above the policy's moves only
m / (m + `shrink`) of the way there, m the continuations tallied (11
continuations and 96 new conversations: 11/21 of the way); one below it m / (m +
`shrink_new`), m the new conversations (0, all the way: shrinking falls cost the
held-out folds). (`prior`, decisions per side that agree with the policy
threshold added to the tally, is measured by bench/train_linker.py
--calibrate-rule; it ships off.)
Otherwise the policy threshold stands. `Choice.reason` says which, and why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from itertools import accumulate

BINS = 100  # score resolution of the tally
STEP = 5  # candidate thresholds every STEP bins: 0.05, 0.10, ... 0.95
Z = 1.0  # sign-test margin, in standard deviations, a calibrated threshold must clear
# the defaults of `Rule`, as policies/correlation.toml ships them ([calibration])
MIN_SIDE = 10  # continuations and new conversations each tallied before the threshold moves
PRIOR = 0.0  # decisions per side that agree with the policy threshold, added to the tally
SHRINK = 10.0  # a rise is scaled by m / (m + SHRINK), m the continuations tallied
SHRINK_NEW = 0.0  # a fall by m / (m + SHRINK_NEW), m the new conversations tallied
BOUNDS = (0.15, 0.9)  # the calibrated threshold stays within the held-out sources' best ones
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
    reason: str = ""  # one phrase: why this threshold and not another


@dataclass(frozen=True)
class Rule:
    """How far a tally may move the threshold (the module doc; bench/calibration.py
    measures other values)."""

    min_side: int = MIN_SIDE
    prior: float = PRIOR
    bounds: tuple[float, float] = BOUNDS
    z: float = Z
    shrink: float = SHRINK
    shrink_new: float = SHRINK_NEW


def _cut(threshold: float) -> int:
    """The first bin that attaches at `threshold`."""
    return min(BINS, max(0, math.ceil(threshold * BINS - 1e-9)))


def _prior(policy: float, weight: float) -> Tally:
    """`weight` continuations spread evenly over the bins at or above the policy threshold,
    and `weight` new conversations over the bins below it: a tally the policy fits."""
    cut = min(BINS - 1, max(1, _cut(policy)))
    up, down = weight / (BINS - cut), weight / cut
    return Tally(tuple(up if k >= cut else 0.0 for k in range(BINS)),
                 tuple(down if k < cut else 0.0 for k in range(BINS)))


def _gains(tally: Tally, base: int) -> Callable[[int], tuple[float, float]]:
    """For a cut: right decisions gained over the cut `base`, and decisions flipped."""
    attach_below = [0.0, *accumulate(tally.attach)]  # counts in bins < k
    new_below = [0.0, *accumulate(tally.new)]

    def at(cut: int) -> tuple[float, float]:
        lo, hi = sorted((base, cut))
        moved_attach = attach_below[hi] - attach_below[lo]
        moved_new = new_below[hi] - new_below[lo]
        sign = 1.0 if cut > base else -1.0  # raising the cut: the new ones become right
        return sign * (moved_new - moved_attach), moved_attach + moved_new
    return at


def choose(tally: Tally, policy: float, min_decisions: int,
           candidates: Sequence[float] | None = None, rule: Rule | None = None) -> Choice:
    """The tenant's threshold: the best-supported one, or `policy` (see the module doc)."""
    r = rule or Rule()
    n, attach, new = tally.decisions, sum(tally.attach), sum(tally.new)
    keep = Choice(policy, "policy", int(n), 0)
    if n < min_decisions:
        return replace(keep, reason=f"{int(n)} decisions tallied, {min_decisions} needed")
    if min(attach, new) < max(r.min_side, 1):
        side = "continuations" if attach < new else "new conversations"
        # floored: old counts fade by halves (9.5 is short of 10, not "10 tallied")
        return replace(keep, reason=f"{math.floor(min(attach, new))} {side} tallied, "
                                    f"{r.min_side} needed on each side")
    base = _cut(policy)
    prior = _prior(policy, r.prior)
    with_prior = Tally(tuple(map(sum, zip(tally.attach, prior.attach, strict=True))),
                       tuple(map(sum, zip(tally.new, prior.new, strict=True))))
    real, shrunk = _gains(tally, base), _gains(with_prior, base)
    grid = candidates if candidates is not None else [k / BINS for k in range(STEP, BINS, STEP)]
    lo, hi = r.bounds
    grid = [t for t in grid if lo - 1e-9 <= t <= hi + 1e-9]

    def best(among: Sequence[float], far: bool) -> float | None:
        """The threshold the sign test passes with the largest gain (on the tally with the
        prior); of equal ones the nearest to the policy's, or the farthest when `far`."""
        top: tuple[float, float, float] | None = None
        for thr in among:
            gain, flipped = real(_cut(thr))
            if flipped <= 0 or gain < r.z * math.sqrt(flipped) or shrunk(_cut(thr))[0] <= 0:
                continue
            key = (shrunk(_cut(thr))[0], abs(thr - policy) * (1 if far else -1), thr)
            top = key if top is None or key > top else top
        return None if top is None else top[2]

    found = best(grid, far=False)
    if found is None:
        return replace(keep, reason="no threshold does clearly better on the tally")
    tallied = f"{round(attach)} continuations and {round(new)} new conversations tallied"
    k = r.shrink if found > policy else r.shrink_new
    if k <= 0:
        return Choice(round(found, 4), "calibrated", int(n), int(round(real(_cut(found))[0])),
                      tallied)
    # raising the threshold risks continuations, lowering it new conversations: the fewer
    # of that side tallied, the less of the way it moves (from the farthest of the best)
    found = best([t for t in grid if (t - policy) * (found - policy) > 0], far=True) or found
    m = attach if found > policy else new
    target = policy + (found - policy) * m / (m + k)
    fine = [b / BINS for b in range(BINS)]  # any bin on the way, not only the coarse grid
    moved = best([t for t in fine if min(policy, target) - 1e-9 <= t
                  <= max(policy, target) + 1e-9], far=True)
    how = f"best {found:g}, moved {round(m)}/({round(m)}+{k:g}) of the way from {policy:g}"
    if moved is None:
        return replace(keep, reason=f"{tallied}: {how}, nothing clearly better there")
    return Choice(round(moved, 4), "calibrated", int(n), int(round(real(_cut(moved))[0])),
                  f"{tallied}: {how}")
