"""What the TUI prints when it stops on an unexpected error: where, never a value.

Textual's own report renders every frame's local variables: the decrypted prompts,
records, user pseudonyms and search text the screens held, left in the terminal's
scrollback after the app exits (and pasted into bug reports with the traceback).
This one names the exception's type and the frames (file, line, function) only;
the exception's message is left out too, as it may quote the data it failed on.
"""

from __future__ import annotations

import traceback
from pathlib import Path

MAX_FRAMES = 12


def crash_report(exc: BaseException | None) -> str:
    """Lines for the terminal: one sentence, then the innermost frames, no values."""
    if exc is None:
        return "semtrace tui stopped on an internal error; nothing was changed."
    frames = traceback.extract_tb(exc.__traceback__)[-MAX_FRAMES:]
    where = [f"  {_short(f.filename)}:{f.lineno} in {f.name}" for f in frames]
    head = (f"semtrace tui stopped on an internal error ({type(exc).__name__}); nothing was "
            "changed. Please report it with these lines (they hold no data):")
    return "\n".join([head, *where])


def _short(filename: str) -> str:
    """The path from the package root on (appliance/..., textual/...), else the file name."""
    parts = Path(filename).parts
    for root in ("appliance", "textual", "rich", "tests"):
        if root in parts:
            return "/".join(parts[len(parts) - 1 - parts[::-1].index(root):])
    return Path(filename).name
