"""Differentially private vectors from OpenDP: its samplers, transformations and accounting.

Nothing here is hand-written noise. Counts per group go through OpenDP's
`count_by_categories` transformation (a user who adds at most `bound` rows moves
the vector by at most `bound` in L1) and its integer Laplace mechanism (exact
discrete Laplace sampling, no floating-point attack surface); clipped sums go
through its float Laplace mechanism, which samples on a discrete grid
(Canonne-Kamath-Steinke) instead of numpy's floating-point inverse CDF. The
epsilon charged is what OpenDP's privacy map reports for the measurement built,
not a formula of ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# the modules used, not opendp.prelude: the prelude imports OpenDP's scikit-learn, polars
# and numpy extras (scipy, sklearn), about a second at every command's start
import opendp.measurements as dp_m
import opendp.transformations as dp_t
from opendp.domains import atom_domain, vector_domain
from opendp.metrics import l1_distance, symmetric_distance
from opendp.mod import enable_features

enable_features("contrib")


@dataclass(frozen=True)
class Noisy:
    """One released vector: the noisy values, the Laplace scale and the epsilon it spent."""

    values: tuple[float, ...]
    scale: float
    epsilon: float


class CountMechanism:
    """Per-category counts of rows, each user adding at most `bound` rows, Laplace noise."""

    def __init__(self, categories: Sequence[str], *, bound: int, epsilon: float) -> None:
        self.categories = list(categories)
        self.bound = bound
        self.scale = bound / epsilon
        space = vector_domain(atom_domain(T=str)), symmetric_distance()
        counts = space >> dp_t.then_count_by_categories(categories=self.categories,
                                                        null_category=False)
        self._m = counts >> dp_m.then_laplace(scale=self.scale)

    @property
    def epsilon(self) -> float:
        """The epsilon OpenDP's privacy map gives for a user changing `bound` rows."""
        return float(self._m.map(self.bound))

    def __call__(self, rows: Sequence[str]) -> Noisy:
        """Noisy counts, in the order of `categories`; rows outside them are not counted."""
        if not self.categories:
            return Noisy((), self.scale, 0.0)
        known = set(self.categories)
        out = self._m([r for r in rows if r in known])
        return Noisy(tuple(float(v) for v in out), self.scale, self.epsilon)


class SumMechanism:
    """Per-category sums already clipped to [0, clip] per row, each user adding <= bound rows."""

    def __init__(self, size: int, *, bound: int, clip: float, epsilon: float) -> None:
        self.size = size
        self.sensitivity = float(bound) * float(clip)
        self.scale = self.sensitivity / epsilon
        space = (vector_domain(atom_domain(T=float, nan=False), size=size),
                 l1_distance(T=float))
        self._m = space >> dp_m.then_laplace(scale=self.scale)

    @property
    def epsilon(self) -> float:
        """The epsilon OpenDP's privacy map gives for the L1 sensitivity bound x clip."""
        return float(self._m.map(self.sensitivity))

    def __call__(self, sums: Sequence[float]) -> Noisy:
        if not self.size:
            return Noisy((), self.scale, 0.0)
        out = self._m([float(v) for v in sums])
        return Noisy(tuple(float(v) for v in out), self.scale, self.epsilon)
