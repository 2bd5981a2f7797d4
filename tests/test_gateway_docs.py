"""docs/gateways.md's samples run as written (the socket path pointed at a real
`semtrace serve` in a temp data dir): the LiteLLM SDK and proxy set-ups, the decorator
and the Node.js client."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map
litellm = pytest.importorskip("litellm")

from gateway_fakes import openai_sync  # noqa: E402
from test_service import Server, at  # noqa: E402
from test_spine import run_cli  # noqa: E402

from appliance.client import Client  # noqa: E402
from appliance.ingest import content_digest  # noqa: E402
from appliance.integrations.litellm import SemtraceLogger  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
DOC = Path(__file__).resolve().parents[1] / "docs" / "gateways.md"
DOC_SOCKET = "/run/semtrace/semtrace.sock"


def samples(lang: str) -> list[str]:
    """The doc's fenced blocks in `lang`, indentation removed."""
    found = re.findall(r"^( *)```" + lang + r"\n(.*?)^\1```", DOC.read_text(), re.M | re.S)
    return ["\n".join(line[len(indent):] for line in body.splitlines()) + "\n"
            for indent, body in found]


@pytest.fixture(autouse=True)
def _clean_callbacks() -> Iterator[None]:
    yield
    litellm.logging_callback_manager._reset_all_callbacks()


def test_the_litellm_sdk_and_proxy_samples_record_a_call(server: Server,
                                                         tmp_path: Path) -> None:
    sdk, proxy = samples("python")[:2]
    exec(sdk.replace(DOC_SOCKET, str(server.sock)), {})  # noqa: S102
    logger = litellm.callbacks[0]
    litellm.completion(model="gpt-4o", client=openai_sync(), user="omar", messages=[
        {"role": "user", "content": "Which line goes to the airport?"}])
    assert logger.wait(1) and logger.sent == 1 and logger.failures == 0
    # the proxy loads the callback file named in its config.yaml with its own loader
    from litellm.proxy.types_utils.utils import get_instance_fn

    (tmp_path / "semtrace_callback.py").write_text(proxy.replace(DOC_SOCKET, str(server.sock)))
    (tmp_path / "config.yaml").write_text(samples("yaml")[0])
    import yaml

    name = yaml.safe_load(samples("yaml")[0])["litellm_settings"]["callbacks"]
    loaded = get_instance_fn(name, config_file_path=str(tmp_path / "config.yaml"))
    assert isinstance(loaded, SemtraceLogger) and str(loaded.socket_path) == str(server.sock)


def test_the_decorator_sample_threads_both_turns(server: Server) -> None:
    code = next(s for s in samples("python") if "Semtrace(" in s)
    out = io.StringIO()
    scope: dict[str, object] = {}
    with contextlib.redirect_stdout(out):
        exec(code.replace(DOC_SOCKET, str(server.sock)), scope)  # noqa: S102
    conversation, answer = out.getvalue().split()[:1] + [out.getvalue().split("\n")[1]]
    assert conversation.startswith("th_") and answer == "Sunny, 21 degrees."
    shown = run_cli("threads", "show", conversation, "--json", *server.args)
    assert shown.returncode == 0, shown.stderr
    records = json.loads(shown.stdout)["records"]
    # both turns in one conversation (the service redacted "Paris" in the first)
    assert [r["text"] for r in records] == ["What's the weather in <LOCATION_1>?",
                                            "How about tomorrow?"]


node = shutil.which("node")


@pytest.mark.skipif(node is None, reason="no Node.js on this host")
def test_the_node_sample_records_fails_open_and_digests_as_python(
        server: Server, tmp_path: Path) -> None:
    assert node is not None
    script = tmp_path / "semtrace.js"
    code = samples("js")[0]
    script.write_text(code.replace(DOC_SOCKET, str(server.sock)))
    run = subprocess.run([node, str(script)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("th_")
    shown = run_cli("threads", "show", run.stdout.strip(), "--json", *server.args)
    assert json.loads(shown.stdout)["records"][-1]["text"] == "How about tomorrow?"
    # no service: the gateway goes on (the old sample crashed on the unhandled error)
    script.write_text(code.replace(DOC_SOCKET, str(tmp_path / "nobody.sock")))
    down = subprocess.run([node, str(script)], capture_output=True, text=True, timeout=60)
    assert down.returncode == 0 and down.stdout == "not recorded\n", down.stderr
    texts = ["a  b\tc\n", "x\x1cy\x1dz", "caf\u00e9\u3000ol\u00e9", "p\x85q", "\ufeffbom",
             "nbsp\u00a0here", " lead and trail \u2028"]
    probe = (f"const s = require({json.dumps(str(script))});"
             f"console.log(JSON.stringify({json.dumps(texts)}.map(s.digest)))")
    digests = subprocess.run([node, "-e", probe], capture_output=True, text=True, timeout=60)
    assert json.loads(digests.stdout) == [content_digest(t) for t in texts]


def test_the_protocol_docs_requests_are_answered_as_written(server: Server) -> None:
    """docs/protocol.md's requests, sent in the doc's order as a gateway would copy them:
    each is answered ok (the updates' `"sha256":"<64 hex>"` placeholders were refused
    `bad_request`, and the tool loop's call then had no turn to continue). Last in this
    module: its user and session are the decorator sample's."""
    doc = DOC.with_name("protocol.md").read_text()
    blocks = [json.loads(b) for b in re.findall(r"^```json\n(.*?)^```", doc, re.M | re.S)
              if '"op"' in b]
    inline = [json.loads(b) for b in re.findall(r'`(\{"v":1, "op":[^`]*\})`', doc)]
    requests = [r for r in blocks + inline if r["op"] not in ("ping", "stats")]
    ingest = next(r for r in requests if r["op"] == "ingest")
    ingest["ts"] = at(0)  # the doc's date is out of the service's window some day
    assert [r["op"] for r in requests] == ["ingest", "update", "update", "lookup", "feedback"]
    with Client(server.sock) as c:
        replies = [c.request(r) for r in requests]
    assert all(r["ok"] for r in replies), replies
    loop_call = replies[2]  # attached to the turn whose update reported resp_68af...
    assert (loop_call["parent_request_id"], loop_call["link_source"]) == (
        "req-8812", "previous_response_id")
    assert replies[3]["conversation_id"] == replies[0]["conversation_id"]  # the lookup
