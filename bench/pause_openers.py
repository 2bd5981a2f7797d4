"""Training augmentation for bench/train_linker.py: one question, hours later an unrelated one.

The dev + wide streams resume unfinished conversations overnight and hold almost no user who
asks one thing and, hours later, something unrelated, so the trees learned that "an
unfinished conversation, then a 5-20 h gap" is a resumption whatever the similarity
(docs/linking.md, "Known: an unrelated question joins an unfinished thread"). `pause_users`
adds that pattern beside the real users (`--pause-openers N`): N synthetic users of two
turns each, built from the turns it is given (a fold's training turns only, never the
held-out source's):

* the first turn of one conversation, alone (a single-turn conversation);
* `gap_hours` later (uniform), the first turn of another user's conversation whose cosine
  to it is below `max_cosine`, gold `new` (0.5: redacted openers that share only a
  placeholder reach 0.46, "What's the weather in <LOCATION>?" and "What is the capital of
  <LOCATION>?").

`resume_users` (`--pause-resumes N`) adds the other side of the same pause: a
conversation's first turn, then its real second turn 1-24 h later, linked, so that the
pause alone does not decide (with openers only, a reference back after a night, "Going back
to the replication point, ...", was split off: docs/experiments/linking-log.md).

Both turns keep their text, vector, entity keys and cross-fitted opener and closer
probabilities (those models read the text alone); neither has a session id (another
window). Nothing is keyed to a source: the draw is uniform over every training opener. The
real users' streams are left as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import numpy as np

PAUSE_BASE = 10**9  # synthetic turns' indices start here (streams use k * 1,000,000 + i)
RESUME_BASE = 2 * 10**9


def resume_users(users: Mapping[str, Sequence[Any]], n: int, *, seed: int = 1,
                 gap_hours: tuple[float, float] = (1.0, 24.0)) -> dict[str, list[Any]]:
    """N synthetic two-turn users: a conversation's first turn, then its real second turn
    `gap_hours` later (uniform), gold linked (the same question resumed after a pause).
    Beside `pause_users` it keeps the pause from deciding alone: after hours, what the
    prompt says tells a resumption from a new conversation."""
    turns = {t.index: t for ts in users.values() for t in ts}
    pairs = [(turns[t.gold_parent], t) for t in turns.values()
             if t.gold_parent is not None and t.gold_parent in turns
             and turns[t.gold_parent].gold_parent is None]
    if n <= 0 or not pairs:
        return {}
    rng = np.random.default_rng(seed)
    out: dict[str, list[Any]] = {}
    for k, pick in enumerate(rng.integers(len(pairs), size=n)):
        a, b = pairs[int(pick)]
        user = f"resume:{k}"
        gap = timedelta(hours=float(rng.uniform(*gap_hours)))
        first = replace(a, index=RESUME_BASE + 2 * k, user=user, session_key=None,
                        gold_thread=f"resume:{k}", gold_parent=None)
        later = replace(b, index=RESUME_BASE + 2 * k + 1, user=user, session_key=None,
                        ts=a.ts + gap, gold_thread=f"resume:{k}", gold_parent=first.index)
        out[user] = [first, later]
    return out


def pause_users(users: Mapping[str, Sequence[Any]], n: int, *, seed: int = 0,
                max_cosine: float = 0.5, gap_hours: tuple[float, float] = (1.0, 24.0),
                ) -> dict[str, list[Any]]:
    """N synthetic two-turn users (`Turn`s of train_linker) drawn from `users`' openers."""
    openers = [t for ts in users.values() for t in ts if t.gold_parent is None]
    if n <= 0 or len({t.user for t in openers}) < 2:
        return {}
    vecs = np.vstack([t.vector for t in openers]).astype(np.float64)
    vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    rng = np.random.default_rng(seed)
    out: dict[str, list[Any]] = {}
    tries = 0
    while len(out) < n and tries < 50 * n:
        tries += 1
        i, j = (int(k) for k in rng.integers(len(openers), size=2))
        a, b = openers[i], openers[j]
        if a.user == b.user or float(vecs[i] @ vecs[j]) >= max_cosine:
            continue
        k = len(out)
        user = f"pause:{k}"
        gap = timedelta(hours=float(rng.uniform(*gap_hours)))
        first = replace(a, index=PAUSE_BASE + 2 * k, user=user, session_key=None,
                        gold_thread=f"pause:{k}:a", gold_parent=None)
        later = replace(b, index=PAUSE_BASE + 2 * k + 1, user=user, session_key=None,
                        ts=a.ts + gap, gold_thread=f"pause:{k}:b", gold_parent=None)
        out[user] = [first, later]
    return out
