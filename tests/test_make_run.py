"""`make run`'s process runner (scripts/run): Ctrl-C stops the web server and qcluster together,
and a qcluster that hangs while stopping is killed after STOP_TIMEOUT instead of lingering."""

from __future__ import annotations

import contextlib
import os
import pty
import select
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


def _venv_stamp() -> str:
    """The Makefile's $(STAMP): .venv/.installed-<cksum of requirements.txt>."""
    out = subprocess.run(["cksum", "requirements.txt"], cwd=ROOT, capture_output=True, text=True)
    return f".venv/.installed-{out.stdout.split()[0]}"


# Targets make must take as up to date when a test runs `make`: no .env written into the
# checkout (the test's environment has the settings), no reinstall of the requirements.
KEEP = ("-o", ".env", "-o", _venv_stamp())


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


def prepare(tmp_path: Path, name: str) -> dict:
    """Settings for scripts/run on a migrated SQLite database of its own."""
    workdir = tmp_path / name
    workdir.mkdir()
    env = {
        **os.environ,
        "ENV_FILE": "",
        "SECRET_KEY": "make-run-test",
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "REDIS_URL": "",
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "1",
        "Q_WORKERS": "2",
        "Q_CLUSTER_NAME": f"make-run-{os.getpid()}-{name}",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT, env=env, check=True, timeout=120,
    )
    return {"env": env, "log": workdir / "run.log", "popen": None}


def clean_up(state: dict) -> None:
    # Each kill may find its process gone since it was seen alive: a worker whose master was
    # just killed exits on its own.
    popen = state["popen"]
    if popen is not None and popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
    for pid in alive(state.get("children", set())):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[dict]:
    """scripts/run on a migrated SQLite database of its own, started as a terminal would."""
    state = prepare(tmp_path, "one")
    yield state
    clean_up(state)


@pytest.fixture
def second_runner(tmp_path: Path) -> Iterator[dict]:
    """Another instance on the same machine: its own port and database."""
    state = prepare(tmp_path, "two")
    yield state
    clean_up(state)


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


def control_socket(state: dict) -> Path:
    """The control socket the instance's gunicorn was started with."""
    (master,) = [
        p for p in alive(state["children"])
        if "gunicorn" in command_line(p) and parent(p) == state["popen"].pid
    ]
    arguments = Path(f"/proc/{master}/cmdline").read_bytes().decode().split("\0")
    return Path(arguments[arguments.index("--control-socket") + 1])


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_a_requested_stop_exits_0(runner, stop_signal):
    popen = start(runner)

    os.killpg(popen.pid, stop_signal)  # Ctrl-C, or a process manager's TERM

    assert popen.wait(timeout=30) == 0
    assert "classroom-sms stopped." in runner["log"].read_text()


def test_a_process_that_dies_on_its_own_is_an_error(runner):
    popen = start(runner)
    (web,) = [p for p in alive(runner["children"])
              if "gunicorn" in command_line(p) and parent(p) == popen.pid]

    os.killpg(web, signal.SIGKILL)  # the web server crashes

    assert popen.wait(timeout=30) == 1
    assert "stopped on its own" in runner["log"].read_text()
    wait_for(lambda: not alive(runner["children"]), timeout=30, what="the worker to stop too")


def test_two_instances_on_one_machine_keep_their_own_control_socket(runner, second_runner):
    first, second = start(runner), start(second_runner)
    first_socket, second_socket = control_socket(runner), control_socket(second_runner)
    assert first_socket != second_socket
    assert first_socket.is_socket() and second_socket.is_socket()

    os.killpg(first.pid, signal.SIGINT)
    assert first.wait(timeout=30) == 0

    # Stopping one left the other's socket (and the other) alone; its own is cleaned up.
    assert second_socket.is_socket() and second.poll() is None
    assert not first_socket.parent.exists()
    os.killpg(second.pid, signal.SIGINT)
    assert second.wait(timeout=30) == 0


def test_make_run_reports_no_error_after_ctrl_c(runner):
    """Through make itself: after a clean stop make prints no "*** ... Error 1"."""
    with open(runner["log"], "ab") as log:
        # -o: never write a .env into the checkout (the environment has the settings), nor
        # reinstall requirements (this venv runs the tests already).
        popen = subprocess.Popen(
            ["make", "--no-print-directory", *KEEP, "run", f"PORT={runner['env']['PORT']}"],
            cwd=ROOT, env=runner["env"], stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    runner["popen"] = popen
    url = f"http://127.0.0.1:{runner['env']['PORT']}/healthz"

    def up() -> bool:
        try:
            return requests.get(url, timeout=2).json()["worker"]["ok"]
        except (requests.RequestException, ValueError, KeyError):
            return False

    wait_for(up, timeout=90, what="make run to serve with a worker")
    runner["children"] = descendants(popen.pid)

    os.killpg(popen.pid, signal.SIGINT)  # Ctrl-C reaches make and scripts/run alike

    # GNU make re-raises the signal it got once its recipe has ended (its status is "killed by
    # SIGINT", as for any interrupted command), but the recipe's clean exit means no error.
    popen.wait(timeout=40)
    output = runner["log"].read_text()
    assert "classroom-sms stopped." in output
    assert "***" not in output and "Error" not in output
    wait_for(lambda: not alive(runner["children"]), timeout=30, what="every process to stop")


def test_make_run_at_a_terminal_exits_0_after_ctrl_c(runner):
    """At a terminal, Ctrl-C reaches scripts/run alone (scripts/foreground), so make exits 0."""
    port = runner["env"]["PORT"]
    pid, terminal = pty.fork()
    if pid == 0:  # the child: make, in a session whose controlling terminal is the pty
        os.chdir(ROOT)
        os.execvpe(
            "make", ["make", "--no-print-directory", *KEEP, "run", f"PORT={port}"], runner["env"]
        )
    output = bytearray()
    url = f"http://127.0.0.1:{port}/healthz"
    finished, status = 0, 0

    last_health: list[object] = []

    def up() -> bool:
        _drain(terminal, output)
        try:
            health = requests.get(url, timeout=2).json()
        except (requests.RequestException, ValueError) as exc:
            last_health[:] = [repr(exc)]
            return False
        last_health[:] = [health]
        return bool(health.get("worker", {}).get("ok"))

    try:
        try:
            wait_for(up, timeout=90, what="make run to serve with a worker")
        except TimeoutError as exc:
            tail = output.decode(errors="replace")[-4000:]
            raise AssertionError(f"{exc}\nlast /healthz: {last_health}\noutput:\n{tail}") from exc
        runner["children"] = descendants(pid)
        os.write(terminal, b"\x03")  # Ctrl-C, as typed: the terminal signals its foreground
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            _drain(terminal, output)
            finished, status = os.waitpid(pid, os.WNOHANG)
            if finished:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"make run did not stop: {output.decode(errors='replace')}")
    finally:
        if not finished:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "classroom-sms stopped." in text and "Error" not in text
    wait_for(lambda: not alive(runner["children"]), timeout=30, what="every process to stop")


def _drain(fd: int, into: bytearray) -> None:
    """Read what the pty has for us without blocking (a full pty would stall the app)."""
    while select.select([fd], [], [], 0)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        into.extend(chunk)


def test_every_phony_target_has_a_rule():
    """`make fake-services` once answered "No rule to make target": none may do that again."""
    makefile = (ROOT / "Makefile").read_text()
    phony = next(line for line in makefile.splitlines() if line.startswith(".PHONY:"))
    targets = phony.split(":", 1)[1].split()
    assert {"run", "instructor", "fake-services"} <= set(targets)
    for target in targets:
        dry = subprocess.run(
            ["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert dry.returncode == 0, f"make {target}: {dry.stderr}"


def test_make_instructor_takes_its_answers_from_make_variables(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        "ENV_FILE": "",
        "SECRET_KEY": "make-instructor-test",
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": "",
        # Many shells export USERNAME: only one given on make's command line counts.
        "USERNAME": "from-the-environment",
    }

    def make(*variables: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["make", "--no-print-directory", *KEEP, "instructor", *variables],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=120,
        )

    made = make("USERNAME=ada", "EMAIL=ada@example.edu", "PASSWORD=correct-horse-battery-staple")
    assert made.returncode == 0, made.stderr
    assert "Instructor “ada” created." in made.stdout
    # Nothing on the command line and no terminal to ask on: refused, not "from-the-environment".
    refused = make("EMAIL=bo@example.edu", "PASSWORD=correct-horse-battery-staple")
    assert refused.returncode != 0
    assert "No --username given and no terminal to ask for one." in refused.stderr


def niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_workers_yield_the_cpu_to_the_web_server(runner):
    """A class burst's provisioning must not make the students' webhooks wait for CPU."""
    popen = start(runner, WORKER_NICENESS="7")
    children = alive(runner["children"])
    web = [p for p in children if "gunicorn" in command_line(p)]
    (cluster,) = [p for p in children if "qcluster" in command_line(p) and parent(p) == popen.pid]
    below = alive(descendants(cluster))

    base = niceness(popen.pid)
    assert {niceness(p) for p in web} == {base}
    assert niceness(cluster) == base
    # The two workers (Q_WORKERS=2), each lowered as it starts.
    assert len([p for p in below if niceness(p) == base + 7]) >= 2
