"""Subprocesses that always die with the harness: each runs in its own process group."""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import time
from pathlib import Path

# Every service still running; killed at interpreter exit if a test forgot (or crashed).
_LIVE: set[Service] = set()


class Service:
    """A long-running child (gunicorn, qcluster) whose whole process group we control."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path):
        self.name = name
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115  (closed in _reap)
        # A process group of its own, so gunicorn's workers and qcluster's sentinel, pusher,
        # monitor and workers can be signalled (or SIGKILLed) together; in our session, as
        # `make run` starts them (scripts/run), so that workers' niceness counts against the
        # web server's as it does there (a session of its own shares the CPU as an equal).
        self.popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
        self.pid = self.popen.pid
        self._terminated = False
        _LIVE.add(self)

    def __repr__(self) -> str:
        return f"<Service {self.name} pid={self.pid}>"

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the whole group, as a crashed machine or an OOM kill would."""
        self._signal_group(signal.SIGKILL)
        self._reap(timeout=10)

    def terminate(self) -> None:
        """Ask the leader to stop (SIGTERM), without waiting; it stops its own children."""
        # Not the whole group: qcluster's children would die under its sentinel, which then
        # waits 30 s for them to report stopping. Once only: a second SIGTERM restarts that.
        if self._terminated:
            return
        self._terminated = True
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after `grace` seconds."""
        self.terminate()
        if not self._wait_group_gone(grace):
            self._signal_group(signal.SIGKILL)
        self._reap(timeout=10)

    def _signal_group(self, sig: int) -> bool:
        try:
            os.killpg(self.pid, sig)
            return True
        except ProcessLookupError:
            return False

    def _wait_group_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.popen.poll()  # reap the leader so it does not linger as a zombie
            if not group_members(self.pid):
                return True
            time.sleep(0.1)
        return False

    def _reap(self, timeout: float) -> None:
        # The leader's children (orphaned workers) are in the same group: wait for all of them.
        if not self._wait_group_gone(timeout):
            self._signal_group(signal.SIGKILL)
            self._wait_group_gone(5)
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()
        _LIVE.discard(self)


def group_members(pgid: int) -> list[int]:
    """Return the pids of a service's live (not zombie) processes: its process group, and the
    children of its members that lead a session of their own (gunicorn's workers do:
    registrations/cpu_priority.py)."""
    parents: dict[int, int] = {}
    members = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state, ppid, pgrp, ...
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue
        if int(fields[2]) == pgid:
            members.add(int(entry.name))
        else:
            parents[int(entry.name)] = int(fields[1])
    members |= {pid for pid, parent in parents.items() if parent in members}
    return sorted(members)


def kill_all() -> None:
    """SIGKILL every service still running (used at exit and by fixtures on failure)."""
    for service in list(_LIVE):
        service.kill()


atexit.register(kill_all)


def group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) used so far by the live processes of a process group."""
    ticks = 0
    for pid in group_members(pgid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def group_cpu_ns(pgid: int) -> int:
    """CPU time (ns) run so far by every thread of a process group's live processes.

    From /proc/<pid>/task/<tid>/schedstat, in nanoseconds: fine enough to time one request,
    where group_cpu_seconds counts 10 ms clock ticks. 0 where schedstat is not available.
    """
    total = 0
    for pid in group_members(pgid):
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total
