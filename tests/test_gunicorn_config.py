"""gunicorn.conf.py, shared by `make run` and the Docker image: every web process accepts only
the connections its threads can serve (and a couple kept alive), so no process queues a burst's
webhooks behind its own few threads while the others idle.

Checked on a real gunicorn: the arbiter makes each worker (which reads the setting then) before
it runs the pre_fork hook, so a limit set there missed the first process, which then took most
of a burst.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def established_to(port: int) -> dict[int, int]:
    """Socket inode -> local port of every established IPv4 TCP connection to `port`."""
    found = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == "01":  # ESTABLISHED
            found[int(fields[9])] = local_port
    return found


def held_by(pid: int, inodes: dict[int, int]) -> int:
    """How many of those connections the process has accepted (holds a descriptor of)."""
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and int(target[8:-1]) in inodes:
            held += 1
    return held


@pytest.fixture
def gunicorn(tmp_path):
    """Start gunicorn as `make run` does (--config gunicorn.conf.py); yield (process, port)."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        "DJANGO_SETTINGS_MODULE": "classroom_sms.settings",
        "ENV_FILE": "",
        "SECRET_KEY": "gunicorn-config-test",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": "",
    }
    argv = [sys.executable, "-m", "gunicorn", "classroom_sms.wsgi", "--config", "gunicorn.conf.py"]
    argv += ["--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "2"]
    process = subprocess.Popen(
        argv + ["--worker-tmp-dir", str(tmp_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process, port
    finally:
        process.terminate()
        process.wait(timeout=30)


def session_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])


def started_workers(process: subprocess.Popen[bytes], port: int) -> list[int]:
    deadline = time.monotonic() + 60
    while len(children(process.pid)) < 2 or not _answers(port):
        assert process.poll() is None, "gunicorn exited"
        assert time.monotonic() < deadline, "gunicorn did not start"
        time.sleep(0.2)
    return children(process.pid)


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc")
def test_every_web_process_accepts_only_its_threads_and_two_connections(gunicorn):
    process, port = gunicorn
    workers = started_workers(process, port)
    # Idle connections, as a burst's are before their request arrives: each takes a place.
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(12)]
    try:
        time.sleep(1.0)  # for both processes to accept what they will
        inodes = established_to(port)
        held = {pid: held_by(pid, inodes) for pid in workers}
        # 2 threads + 2 each: the other 4 wait in the listen backlog for a free process.
        assert held == dict.fromkeys(workers, 4)
    finally:
        for connection in idle:
            connection.close()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as probe:
            probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return probe.recv(12).startswith(b"HTTP/1.1")
    except OSError:
        return False


def test_an_explicit_worker_connections_setting_wins():
    from gunicorn.config import Config

    hooks = _hooks()
    cfg = Config()
    cfg.set("threads", 4)
    cfg.set("worker_connections", 50)
    hooks["on_starting"](_Server(cfg))
    assert cfg.worker_connections == 50
    cfg.set("worker_connections", 1000)  # gunicorn's default, as a HUP re-reads it
    hooks["on_reload"](_Server(cfg))
    assert cfg.worker_connections == 6


class _Server:
    def __init__(self, cfg: object) -> None:
        self.cfg = cfg


def _hooks() -> dict[str, object]:
    import runpy

    return runpy.run_path(str(REPO / "gunicorn.conf.py"))


@pytest.mark.skipif(
    not Path("/proc/self/autogroup").exists(), reason="needs Linux with autogroup scheduling"
)
def test_every_web_process_leads_a_session_of_its_own(gunicorn):
    # PostgreSQL's server processes each lead one; Linux shares the CPU between sessions
    # before it looks inside them (registrations/cpu_priority.py).
    process, port = gunicorn
    workers = started_workers(process, port)
    # Each leaves as it finishes starting (post_worker_init), the other may still be loading.
    deadline = time.monotonic() + 30
    while {session_of(pid) for pid in workers} != set(workers) and time.monotonic() < deadline:
        time.sleep(0.1)

    assert {session_of(pid) for pid in workers} == set(workers)
    assert session_of(process.pid) == session_of(os.getpid())  # the master stays where it was


@pytest.mark.skipif(
    not Path("/proc/self/autogroup").exists(), reason="needs Linux with autogroup scheduling"
)
def test_web_processes_die_with_their_master_however_it_dies(gunicorn):
    # Out of the master's process group, a worker no longer gets what the group gets (a
    # supervisor's SIGKILL to the group): the kernel ends it when its master ends instead.
    process, port = gunicorn
    workers = started_workers(process, port)

    process.kill()
    process.wait(timeout=10)

    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)
    assert not _answers(port)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_connection_serves_one_request_then_closes(gunicorn):
    process, port = gunicorn
    started_workers(process, port)

    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        # An HTTP/1.1 request that asks nothing about the connection: kept by default.
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while chunk := client.recv(65536):  # until the server closes it
            answer += chunk

    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 ")
    assert b"\r\nconnection: close" in head
