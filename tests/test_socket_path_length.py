"""A socket path longer than a Unix socket's may be (107 bytes): `serve`, `send` and `demo
--keep` refuse it in one sentence that says so. Before, `serve` loaded its models and then
ended on "semtrace: OSError." (Python's "AF_UNIX path too long" has no errno), `send` said
the same, and `demo --keep` made its store in the folder first."""

from __future__ import annotations

from pathlib import Path

from test_spine import run_cli


def _deep(tmp_path: Path) -> Path:
    deep = tmp_path / ("a-folder-with-a-rather-long-name-" * 3)
    assert len(str(deep / "data" / "semtrace.sock")) > 107
    return deep


def test_serve_refuses_a_socket_path_too_long_for_a_socket_in_one_sentence(
        tmp_path: Path) -> None:
    data, key = _deep(tmp_path) / "data", tmp_path / "key"
    assert run_cli("init", "--data-dir", str(data), "--new-key-file", str(key)).returncode == 0
    sock = data / "semtrace.sock"
    r = run_cli("serve", "--data-dir", str(data), "--key-file", str(key))
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"semtrace: The socket {sock} (--socket) cannot be served: its path is "
        f"{len(str(sock))} bytes long, and a Unix socket's may be at most 107; the service "
        "did not start."), r.stderr
    assert "loading the models" not in r.stderr  # refused before they load
    assert not sock.exists()


def test_send_to_a_socket_path_too_long_says_so(tmp_path: Path) -> None:
    sock = _deep(tmp_path) / "data" / "semtrace.sock"
    r = run_cli("send", "--socket", str(sock), stdin='{"tenant": "acme", "user_id": "u", '
                '"text": "hello"}\n')
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip() == (
        f"semtrace: The socket {sock} cannot be reached: its path is {len(str(sock))} bytes "
        "long, and a Unix socket's may be at most 107."), r.stderr


def test_demo_keep_too_deep_for_its_socket_is_refused_before_anything_is_made(
        tmp_path: Path) -> None:
    deep = _deep(tmp_path)
    r = run_cli("demo", "--no-tui", "--keep", str(deep))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip() == (
        f"semtrace: --keep {deep} is too deep a folder for the demo's socket "
        f"{deep / 'data' / 'semtrace.sock'}: its path is "
        f"{len(str(deep / 'data' / 'semtrace.sock'))} bytes long, and a Unix socket's may be "
        "at most 107. Give a shorter one; nothing was made."), r.stderr
    assert not deep.exists()
