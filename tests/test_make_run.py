"""`make run`'s process runner (scripts/run): Ctrl-C stops the web server and qcluster together,
and a qcluster that hangs while stopping is killed after STOP_TIMEOUT instead of lingering."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e.harness import free_port, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent


def descendants(pid: int) -> set[int]:
    """Every live (not zombie) process below `pid`, whatever its process group."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    living = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            living.add(pid)
    return living


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[dict]:
    """scripts/run on a migrated SQLite database of its own, started as a terminal would."""
    env = {
        **os.environ,
        "ENV_FILE": "",
        "SECRET_KEY": "make-run-test",
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": "",
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "1",
        "Q_WORKERS": "2",
        "Q_CLUSTER_NAME": f"make-run-{os.getpid()}",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT, env=env, check=True, timeout=120,
    )
    log = tmp_path / "run.log"
    state: dict = {"env": env, "log": log, "popen": None}
    yield state
    popen = state["popen"]
    if popen is not None and popen.poll() is None:
        os.killpg(popen.pid, signal.SIGKILL)
    for pid in alive(state.get("children", set())):
        os.kill(pid, signal.SIGKILL)


def start(state: dict, **env: str) -> subprocess.Popen:
    with open(state["log"], "ab") as log:
        # A session of its own: the script leads the group a terminal would send Ctrl-C to.
        popen = subprocess.Popen(
            ["bash", "scripts/run"], cwd=ROOT, env={**state["env"], **env},
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    state["popen"] = popen
    url = f"http://127.0.0.1:{state['env']['PORT']}/healthz"

    def up() -> bool:
        try:
            return requests.get(url, timeout=2).json()["worker"]["ok"]
        except (requests.RequestException, ValueError, KeyError):
            return False

    wait_for(up, timeout=60, what="the web server and a worker heartbeat")
    state["children"] = descendants(popen.pid)
    return popen


def test_ctrl_c_stops_the_web_server_and_qcluster(runner):
    popen = start(runner)
    children = runner["children"]
    assert any("gunicorn" in command_line(p) for p in children)
    assert any("qcluster" in command_line(p) for p in children)

    os.killpg(popen.pid, signal.SIGINT)  # what Ctrl-C does to the foreground group

    wait_for(lambda: not alive(children) and popen.poll() is not None, timeout=30,
             what="every process to stop")
    assert "did not stop" not in runner["log"].read_text()


def test_a_qcluster_hung_while_stopping_is_killed_after_stop_timeout(runner):
    popen = start(runner, STOP_TIMEOUT="3")
    children = runner["children"]
    (cluster,) = [p for p in children if "qcluster" in command_line(p) and parent(p) == popen.pid]
    os.kill(cluster, signal.SIGSTOP)  # as stuck as a deadlocked signal handler
    began = time.monotonic()

    os.killpg(popen.pid, signal.SIGINT)

    wait_for(lambda: not alive(children) and popen.poll() is not None, timeout=30,
             what="every process to be stopped or killed")
    assert time.monotonic() - began >= 3
    assert f"Process {cluster} did not stop within 3s; killing it." in runner["log"].read_text()
