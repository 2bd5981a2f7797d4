"""How bench/train_linker.py picks the shipped `link_threshold` from its leave-one-source-out
result (pure logic): the best mean of the three pooled held-out figures, the mean over the
folds only breaking a tie."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from train_linker import choose_threshold  # noqa: E402


def _at(pooled: float, folds: tuple[float, ...]) -> dict[str, object]:
    def figures(v: float) -> dict[str, float]:
        return {"pair_F1": v, "newthread_F1": v, "parent_acc": v}
    return {"pooled": figures(pooled), "folds": {f"s{i}": figures(v) for i, v in enumerate(folds)}}


def test_the_pooled_figures_choose_the_threshold_over_the_mean_of_the_folds() -> None:
    # 0.4 has the better mean over the folds (a small source's fold pulls it up), 0.5 the
    # better pooled figures: the pooled stream is what a deployment is scored on.
    res = {"by_threshold": {"0.4": _at(0.862, (0.95, 0.80)), "0.5": _at(0.867, (0.90, 0.84))}}
    assert choose_threshold(res) == 0.5


def test_a_tie_on_the_pooled_figures_goes_to_the_better_mean_over_the_folds() -> None:
    res = {"by_threshold": {"0.4": _at(0.86501, (0.90, 0.84)), "0.45": _at(0.86498, (0.91, 0.85)),
                            "0.5": _at(0.850, (0.99, 0.99))}}
    assert choose_threshold(res) == 0.45
