"""How often one release shows a group of n people: the k-suppression as the policy sets it.

A group (a topic, a model, ...) is shown when its noisy count of people reaches
`k_min_users`; the noise is OpenDP's integer Laplace of scale
min(contribution_bound, people_bound) / (release epsilon of the kind x USERS_SHARE)
(`privacy.people_scale`). This prints, for the shipped policy and for variants of the
three keys that trade it off (`k_min_users`, `people_bound`, `release_epsilon.topics`),
the chance that one topics release shows a group of 0, 1, 2, 4, 5, 10 and 20 people
(`privacy.shown_chance`, exact), and with `--draws N` checks those of the shipped policy
against N draws of OpenDP's own mechanism (`noise.CountMechanism`).

    .venv/bin/python bench/k_suppression.py [--draws 20000] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.config import load_policies  # noqa: E402
from appliance.noise import CountMechanism  # noqa: E402
from appliance.privacy import USERS_SHARE, people_scale, shown_chance  # noqa: E402

PEOPLE = (0, 1, 2, 4, 5, 10, 20)
VARIANTS: tuple[dict[str, Any], ...] = (
    {},  # shipped
    {"people_bound": 4}, {"people_bound": 15},
    {"release_epsilon": {"topics": 4.0}, "epsilon_per_day": 6.0},
    {"release_epsilon": {"topics": 1.0}},
    {"k_min_users": 10}, {"k_min_users": 10, "people_bound": 4},
    {"k_min_users": 20},
)


def table() -> list[dict[str, Any]]:
    base = load_policies().privacy
    rows = []
    for over in VARIANTS:
        merged = {**base.model_dump(), **over}
        if "release_epsilon" in over:
            merged["release_epsilon"] = {**base.release_epsilon, **over["release_epsilon"]}
        s = type(base)(**merged)
        scale = people_scale(s, "topics")
        rows.append({"policy": over or "shipped", "k_min_users": s.k_min_users,
                     "people_bound": s.people_bound, "topics_epsilon": s.epsilon_for("topics"),
                     "scale": round(scale, 2),
                     "shown": {n: round(shown_chance(n, s.k_min_users, scale), 3)
                               for n in PEOPLE}})
    return rows


def draws(n: int) -> dict[int, float]:
    """The shipped topics release's people count, drawn `n` times by OpenDP per group size."""
    s = load_policies().privacy
    eps = s.epsilon_for("topics") * USERS_SHARE
    mech = CountMechanism(["t"], bound=min(s.contribution_bound, s.people_bound), epsilon=eps)
    return {p: round(sum(mech(["t"] * p).values[0] >= s.k_min_users for _ in range(n)) / n, 3)
            for p in (1, 4, 5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=0, help="Check with OpenDP's sampler.")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out: dict[str, Any] = {"table": table()}
    if args.draws:
        out["opendp_draws"] = draws(args.draws)
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print("policy | k | people_bound | topics eps | scale | shown with " +
          " / ".join(f"{n}" for n in PEOPLE) + " people")
    for r in out["table"]:
        print(f"{r['policy']} | {r['k_min_users']} | {r['people_bound']} | "
              f"{r['topics_epsilon']:g} | {r['scale']} | "
              + " / ".join(f"{100 * v:.0f}%" for v in r["shown"].values()))
    if args.draws:
        print(f"OpenDP draws ({args.draws} each), shown with 1 / 4 / 5 people:",
              out["opendp_draws"])


if __name__ == "__main__":
    main()
