"""How the TUI feels on a store made by real ingestion: 10,000 prompts through Presidio,
llama.cpp and the linker, one of them a 400-turn conversation linked by its message history.

    .venv/bin/python bench/tui_real.py stream OUT.jsonl            # write the stream
    semtrace init --data-dir DIR --passphrase-file PW
    semtrace replay OUT.jsonl --out /dev/null --data-dir DIR --passphrase-file PW
    .venv/bin/python bench/tui_real.py measure DIR PW                # print the figures

Measures, headless at 120x40: the first page of threads, a `user:` filter by the id the
gateway sends, opening the longest thread (until the pilot finds the app idle, and until
the view first drew its turns), End, one step, the first search (model load and
index) and a second one. Prints figures; asserts nothing.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DEMO = Path(__file__).resolve().parents[1] / "appliance" / "demo" / "demo-stream.jsonl"
CITIES = ("Paris", "Berlin", "Madrid", "Lisbon", "Rome", "Oslo", "Vienna", "Prague")
EXTRA = ("How do I rotate my API key for the billing service?",
         "Why does the deploy pipeline fail on step {n}?",
         "What's the refund policy for order {n}?",
         "Write a SQL query that counts orders per day in {c}.",
         "Is the VPN down in the {c} office?", "Plan a three-day trip to {c} in spring.",
         "What about the weekend?", "And in {c}?", "Explain that again more simply.",
         "Thanks, that helps.")


def stream(out: Path, users: int = 60, each: int = 160, long_turns: int = 400) -> None:
    """60 users x 160 prompts (demo texts and variations) and one 400-turn conversation."""
    rng = random.Random(3)
    demo = [json.loads(line)["text"] for line in DEMO.open()]
    t0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    for u in range(users):
        t = t0 + timedelta(minutes=rng.randint(0, 600))
        for _ in range(each):
            t += timedelta(minutes=rng.choice([1, 1, 2, 3, 30, 240]))
            text = rng.choice(demo + list(EXTRA) * 2).format(n=rng.randint(100, 999),
                                                             c=rng.choice(CITIES))
            rows.append({"tenant": ("acme", "globex")[u % 2], "user_id": f"user{u}",
                         "ts": t.isoformat().replace("+00:00", "Z"), "text": text})
    asked: list[str] = []
    for k in range(long_turns):
        text = f"Step {k}: " + rng.choice(EXTRA).format(n=k, c=rng.choice(CITIES))
        rows.append({"tenant": "acme", "user_id": "longuser",
                     "ts": (t0 + timedelta(minutes=k + 1)).isoformat().replace("+00:00", "Z"),
                     "text": text, "history": [{"role": "user", "content": h}
                                               for h in asked[-300:]]})
        asked.append(text)
    rows.sort(key=lambda r: r["ts"])
    with out.open("w") as fh:
        for i, row in enumerate(rows):
            fh.write(json.dumps({"index": i, **row}) + "\n")


async def _until(pilot: Any, done: Callable[[], bool], start: float) -> float:
    """Seconds from `start` (before the key was pressed) until `done()`."""
    while not done():
        await pilot.pause(0.01)
    return time.perf_counter() - start


async def _measure(app: Any) -> None:
    from appliance.tui.widgets.turns import TurnList

    start = time.perf_counter()
    async with app.run_test(size=(120, 40)) as pilot:
        table = lambda: app.screen.query_one("#threads")  # noqa: E731
        print(f"first page of threads      "
              f"{await _until(pilot, lambda: table().row_count > 0, start):6.2f} s")
        await pilot.press("f")
        app.screen.query_one("#filter").value = "tenant:acme user:longuser"
        start = time.perf_counter()
        await pilot.press("enter")
        took = await _until(pilot, lambda: table().row_count == 1, start)
        print(f"user: filter (gateway id)  {took:6.2f} s")
        drawn: list[float] = []  # when the view first drew a line of its turns
        render_line = TurnList.render_line

        def noted(self: TurnList, y: int) -> Any:
            if self.turns and not drawn:
                drawn.append(time.perf_counter())
            return render_line(self, y)

        TurnList.render_line = noted  # type: ignore[method-assign]
        start = time.perf_counter()
        await pilot.press("enter")
        await _until(pilot, lambda: isinstance(app.focused, TurnList)
                     and len(app.focused.turns) > 1, start)
        await pilot.pause()  # and drawn: the pilot waits for the screen's refresh
        took = time.perf_counter() - start
        TurnList.render_line = render_line  # type: ignore[method-assign]
        print(f"open a {len(app.screen.query_one(TurnList).turns)}-turn thread     "
              f"{took:6.2f} s (its first turns on screen after {drawn[0] - start:.2f} s)")
        for key in ("end", "k"):
            start = time.perf_counter()
            await pilot.press(key)
            await pilot.pause()
            print(f"{key:<4} (with the pilot's wait) {time.perf_counter() - start:6.2f} s")
        await pilot.press("escape", "slash")
        hits = lambda: app.screen.query_one("#hits").row_count  # noqa: E731
        for label, text in (("first search", "reset my password"),
                            ("second search", "weather in Paris tomorrow")):
            app.screen.query_one("#query").focus()
            app.screen.query_one("#query").value = text
            app.screen.query_one("#hits").clear()
            start = time.perf_counter()
            await pilot.press("enter")
            print(f"{label:<26} {await _until(pilot, lambda: hits() > 0, start):6.2f} s")


def measure(data_dir: Path, passphrase_file: Path) -> None:
    from appliance.embed import LlamaEmbedder
    from appliance.keys import read_passphrase_file
    from appliance.runtime import open_runtime
    from appliance.tui.app import make_app

    start = time.perf_counter()
    rt = open_runtime(data_dir, read_passphrase_file(passphrase_file), readonly=True)
    print(f"open the store read-only   {time.perf_counter() - start:6.2f} s")
    try:
        app = make_app(rt, role="compliance", refresh_seconds=3600,
                       embedder_factory=lambda: LlamaEmbedder(rt.policies.correlation.embedding))
        asyncio.run(_measure(app))
    finally:
        rt.close()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "stream":
        stream(Path(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "measure":
        measure(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit(__doc__)
