"""What the fault suite and bench/faults.py share: a `semtrace serve` subprocess that can
be killed, starved of disk or fed garbage, and a client that remembers what was acked."""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from appliance.client import Client

TEXTS = ["How do I configure the VPN client?", "Which port does it use?",
         "Is UDP faster than TCP for this?", "Recommend a thriller set in Norway.",
         "Something shorter, please.", "Where do I file travel expenses?",
         "What is the deadline this month?", "Translate 'good morning' into Italian."]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=600)


def recent(minutes: float = 0.0) -> str:
    """A time the service takes (yesterday, well inside retention and the ts window)."""
    base = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (base - timedelta(days=1) + timedelta(minutes=minutes)).isoformat()


def policy_dir(tmp: Path) -> Path:
    from appliance.config import policy_dir as shipped

    target = tmp / "policies"
    if not target.exists():
        shutil.copytree(shipped(), target)
    return target


class Service:
    """A `semtrace serve` subprocess on a data dir (initialised on first use)."""

    def __init__(self, tmp: Path, data: Path | None = None) -> None:
        self.tmp = tmp
        self.data = data or tmp / "data"
        self.sock = self.data / "semtrace.sock"
        pw = tmp / "passphrase"
        if not pw.exists():
            pw.touch(mode=0o600)
            pw.write_text("fault suite passphrase\n")
        self.args = ["--data-dir", str(self.data), "--passphrase-file", str(pw)]
        self.env = {"SEMTRACE_POLICY_DIR": str(policy_dir(tmp))}
        self.log = tmp / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        if not (self.data / "keyring.json").exists() and not any(self.data.glob("*.db")):
            init = run_cli("init", *self.args, env=self.env)
            assert init.returncode == 0, init.stderr

    def start(self, *, failpoint: str | None = None, fsize: int | None = None) -> Service:
        """Start and wait until it answers (or has died of its fail point)."""
        env = {**os.environ, **self.env}
        env.pop("SEMTRACE_FAILPOINT", None)
        if failpoint:
            env["SEMTRACE_FAILPOINT"] = failpoint

        def limits() -> None:  # an I/O error instead of a crash when a file hits the limit
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            if fsize is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.RLIM_INFINITY))

        self.proc = subprocess.Popen([sys.executable, "-m", "appliance", "serve", *self.args],
                                     env=env, stdout=subprocess.DEVNULL,
                                     stderr=self.log.open("ab"), preexec_fn=limits)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return self
            try:
                with Client(self.sock, timeout=5) as c:
                    if c.ping()["ok"]:
                        return self
            except Exception:
                time.sleep(0.1)
        raise AssertionError("serve did not come up: " + self.log.read_text()[-2000:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=60)

    def stop(self) -> int:
        assert self.proc is not None
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=120)

    def file_limit(self, size: int | None) -> None:
        """Let the running service write no file beyond `size` bytes (None: no limit): its
        writes past it fail with EFBIG, an I/O error as a failing disk gives."""
        assert self.proc is not None
        soft = resource.RLIM_INFINITY if size is None else size
        resource.prlimit(self.proc.pid, resource.RLIMIT_FSIZE, (soft, resource.RLIM_INFINITY))


class Traffic:
    """Sync ingests from a few client threads; remembers every acknowledged request."""

    def __init__(self, sock: Path, tag: str, *, clients: int = 3, seed: int = 0) -> None:
        self.sock, self.tag, self.clients = sock, tag, clients
        self.acked: set[str] = set()
        self.refused: dict[str, str] = {}  # request id -> error code
        self.sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._rng = random.Random(seed)
        self._threads: list[threading.Thread] = []

    def request(self, n: int) -> dict[str, Any]:
        return {"v": 1, "op": "ingest", "tenant": "acme", "user_id": f"user{n % 5}",
                "request_id": f"{self.tag}-{n}", "text": TEXTS[n % len(TEXTS)],
                "ts": recent(n % 600)}

    def _run(self, k: int) -> None:
        n = k
        try:
            with Client(self.sock, timeout=30) as c:
                while not self._stop.is_set():
                    reply = c.request(self.request(n))
                    with self._lock:
                        self.sent += 1
                        if reply.get("ok"):
                            self.acked.add(f"{self.tag}-{n}")
                        else:
                            self.refused[f"{self.tag}-{n}"] = reply["error"]["code"]
                    n += self.clients
        except Exception:  # the service died under us: what was acked is what counts
            return

    def start(self) -> Traffic:
        self._threads = [threading.Thread(target=self._run, args=(k,), daemon=True)
                         for k in range(self.clients)]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def wait_for(self, cond: Callable[[Traffic], bool], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not cond(self) and time.monotonic() < deadline:
            time.sleep(0.02)


def missing(sock: Path, request_ids: set[str]) -> list[str]:
    """The acknowledged requests the store does not hold."""
    out = []
    with Client(sock, timeout=60) as c:
        for rid in sorted(request_ids):
            reply = c.request({"v": 1, "op": "lookup", "tenant": "acme", "request_id": rid})
            if not reply.get("ok"):
                out.append(rid)
    return out


def integrity(svc: Service) -> list[str]:
    """`semtrace audit verify` and SQLite's integrity check on the stopped store."""
    problems = []
    verify = run_cli("audit", "verify", "--json", *svc.args, env=svc.env)
    if verify.returncode != 0 or not json.loads(verify.stdout).get("ok"):
        problems.append("audit verify: " + (verify.stdout + verify.stderr)[-300:])
    return problems


def kill_round(svc: Service, *, rng: random.Random, tag: str,
               failpoint: str | None = None) -> dict[str, int]:
    """One kill -9 round: traffic, a kill (at a fail point or a random moment), restart,
    every acknowledged request looked up. Returns acked, lost and whether it crashed."""
    try:
        return _kill_round(svc, rng=rng, tag=tag, failpoint=failpoint)
    finally:
        svc.kill()  # a failed check must not leave the service running


def _kill_round(svc: Service, *, rng: random.Random, tag: str,
                failpoint: str | None) -> dict[str, int]:
    svc.start(failpoint=failpoint)
    traffic = Traffic(svc.sock, tag, seed=rng.randrange(1 << 30)).start()
    if failpoint:
        assert svc.proc is not None
        svc.proc.wait(timeout=300)  # it kills itself at the fail point
    else:
        traffic.wait_for(lambda t: t.sent >= rng.randrange(1, 40))
        svc.kill()
    traffic.stop()
    killed = svc.proc is not None and svc.proc.returncode == -signal.SIGKILL
    svc.start()
    crashed = 0 if svc.alive() else 1
    lost = len(missing(svc.sock, traffic.acked)) if not crashed else len(traffic.acked)
    assert svc.stop() == 0 or crashed
    return {"acked": len(traffic.acked), "lost": lost, "crashes": crashed,
            "faults": 1 if killed else 0}


def rotation_round(svc: Service, *, rng: random.Random, tag: str, step: int,
                   reopen_with_new: bool) -> dict[str, int]:
    """One kill -9 round of `semtrace keys rotate`: traffic, a clean stop (rotation holds the
    data dir's lock), the rotation killed after its `step`-th step, then a start with the
    old or the new passphrase, which completes the rotation and must hold every
    acknowledged request. The old passphrase is refused only once the rotation finished.
    Returns acked, lost, crashes, faults and `refused_old` (1 when that happened)."""
    try:
        return _rotation_round(svc, rng=rng, tag=tag, step=step,
                               reopen_with_new=reopen_with_new)
    finally:
        svc.kill()


def _passphrase(path: Path, text: str) -> Path:
    path.touch(mode=0o600)
    path.write_text(text + "\n")
    return path


def _rotation_round(svc: Service, *, rng: random.Random, tag: str, step: int,
                    reopen_with_new: bool) -> dict[str, int]:
    svc.start()
    traffic = Traffic(svc.sock, tag, seed=rng.randrange(1 << 30)).start()
    traffic.wait_for(lambda t: len(t.acked) >= rng.randrange(3, 20))
    traffic.stop()
    assert svc.stop() == 0
    pw = Path(svc.args[svc.args.index("--passphrase-file") + 1])
    old_text = pw.read_text().strip()
    new = _passphrase(svc.tmp / "new-passphrase", f"{old_text} rotated {tag}")
    killed = run_cli("keys", "rotate", *svc.args, "--new-passphrase-file", str(new),
                     env={**svc.env, "SEMTRACE_FAILPOINT": f"rotation:{step}"})
    refused_old = 0
    if reopen_with_new:
        pw.write_text(new.read_text())
    svc.start()
    if not svc.alive() and not reopen_with_new:
        refused_old = 1  # the rotation had finished: only the new passphrase opens it
        assert "Wrong passphrase" in svc.log.read_text()[-2000:], svc.log.read_text()[-2000:]
        pw.write_text(new.read_text())
        svc.start()
    crashed = 0 if svc.alive() else 1
    lost = len(missing(svc.sock, traffic.acked)) if not crashed else len(traffic.acked)
    assert svc.stop() == 0 or crashed
    if not crashed:
        pw.write_text(new.read_text())  # from here on the store is under the new key
        crashed = int(bool(integrity(svc)))
    new.unlink()
    return {"acked": len(traffic.acked), "lost": lost, "crashes": crashed,
            "faults": int(killed.returncode == -signal.SIGKILL), "refused_old": refused_old}


# ---------------------------------------------------------------- protocol fuzzing

# What garbage may earn; never `internal`. `unredactable`: a hostile text redaction could not
# finish is refused by design (fail closed, docs/redaction.md), not a crash.
ERROR_CODES = {"bad_frame", "bad_json", "bad_version", "unknown_op", "bad_request", "not_found",
               "busy", "frame_too_large", "unredactable"}


class InProcess:
    """A service on the real pipeline, its event loop in a thread; frames go to `answer`,
    the function the socket calls for every line."""

    def __init__(self, pipeline: Any, sock: Path) -> None:
        import asyncio

        from appliance.service import Service as Svc

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.service = Svc(pipeline, pipeline.policies, socket_path=sock)
        self._run(self.service.start())

    def _run(self, coro: Any) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def answer(self, frame: bytes) -> dict[str, Any]:
        reply: dict[str, Any] = self._run(self.service.answer(frame))
        return reply

    def close(self) -> None:
        self._run(self.service.drain())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=60)


def check_reply(frame: bytes, reply: dict[str, Any]) -> None:
    """Every frame gets a well-formed reply; garbage gets a client error, never `internal`."""
    assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool), (frame[:200], reply)
    if not reply["ok"]:
        err = reply["error"]
        assert err["code"] in ERROR_CODES, (frame[:300], reply)
        assert isinstance(err["message"], str) and err["message"].endswith("."), reply


def frames() -> Any:
    """Hypothesis strategy: valid requests of every op with fields swapped for hostile
    values, dropped or added; and raw byte mutations of valid frames."""
    from hypothesis import strategies as st

    leaf = (st.none() | st.booleans() | st.integers(min_value=-(10**40), max_value=10**40)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
            | st.sampled_from(["\ud800", "\udfff x", "\x00", "-->", "[b]x", "1e300",
                               "9999-12-31T23:59:59Z", "0001-01-01", "NaN", ""]))
    value = st.recursive(leaf, lambda kids: st.lists(kids, max_size=4)
                         | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=12)
    now = datetime.now(UTC)
    bases = [
        {"v": 1, "op": "ingest", "tenant": "acme", "user_id": "fuzz", "request_id": "f-1",
         "ts": now.isoformat(), "text": "How do I reset the router?",
         "response": {"input_tokens": 3, "output_tokens": 5, "latency_ms": 10.0,
                      "status": "ok"}, "history": [{"role": "user", "content": "hi"}]},
        {"v": 1, "op": "update", "tenant": "acme", "request_id": "f-1",
         "response": {"output_tokens": 9}},
        {"v": 1, "op": "feedback", "tenant": "acme", "request_id": "f-1", "rating": 4},
        {"v": 1, "op": "lookup", "tenant": "acme", "request_id": "f-1"},
        {"v": 1, "op": "ping"},
    ]

    @st.composite
    def structured(draw: Any) -> bytes:
        obj = json.loads(json.dumps(draw(st.sampled_from(bases))))
        for _ in range(draw(st.integers(1, 3))):
            key = draw(st.sampled_from(sorted(obj) + ["extra", "response", "ts", "index"]))
            action = draw(st.sampled_from(["set", "drop", "nested"]))
            if action == "drop":
                obj.pop(key, None)
            elif action == "nested" and isinstance(obj.get("response"), dict):
                obj["response"][draw(st.sampled_from(
                    ["input_tokens", "output_tokens", "latency_ms", "status", "text", "id",
                     "sha256"]))] = draw(value)
            else:
                obj[key] = draw(value)
        return json.dumps(obj).encode()

    @st.composite
    def mutated(draw: Any) -> bytes:
        raw = bytearray(json.dumps(draw(st.sampled_from(bases))).encode())
        for _ in range(draw(st.integers(1, 4))):
            pos = draw(st.integers(0, max(len(raw) - 1, 0)))
            op = draw(st.sampled_from(["flip", "cut", "insert"]))
            if op == "flip" and raw:
                raw[pos] ^= 1 << draw(st.integers(0, 7))
            elif op == "cut":
                del raw[pos:pos + draw(st.integers(1, 8))]
            else:
                raw[pos:pos] = draw(st.sampled_from(
                    [b"NaN", b"Infinity", b"[" * 64, b"\\ud800", b"\xff", b"\x00", b"1e999",
                     b'"', b"{", b"}"]))
        return bytes(raw).replace(b"\n", b" ")

    return structured() | mutated() | st.binary(max_size=200).map(
        lambda b: b.replace(b"\n", b" "))
