"""`semtrace --help`, every command's --help and --version load none of the heavy libraries.

Before, `import appliance.cli` loaded NumPy, SQLCipher, usearch, OpenDP and pydantic for
every command (about 0.6 s of CPU a start, `bench/cli_start.py`); a command now imports
what it needs when it runs. Checked in a fresh interpreter, on `sys.modules`, not timed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("numpy", "sqlcipher3", "usearch", "opendp", "pydantic", "presidio_analyzer", "spacy",
         "llama_cpp", "textual", "nats", "cryptography")

PROBE = """
import contextlib, io, json, sys
import click
from appliance.cli import cli, main

def paths(group, prefix):
    for name, command in sorted(group.commands.items()):
        yield prefix + [name]
        if isinstance(command, click.Group):
            yield from paths(command, prefix + [name])

heavy = %r
loaded = {}
for args in [["--help"], ["--version"]] + [p + ["--help"] for p in paths(cli, [])]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(args)
    new = [m for m in heavy if m in sys.modules and m not in loaded]
    for m in new:
        loaded[m] = " ".join(args)
    if code not in (None, 0) or not out.getvalue().strip():
        loaded["(no help)"] = " ".join(args)
print(json.dumps({"loaded": loaded, "commands": len(list(paths(cli, [])))}))
"""


def test_help_and_version_load_no_heavy_library() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE % (HEAVY,)], capture_output=True,
                         text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    said = json.loads(out.stdout.strip().splitlines()[-1])
    assert said["commands"] > 50  # every command's --help was asked
    assert said["loaded"] == {}, f"module: first command that loaded it: {said['loaded']}"
