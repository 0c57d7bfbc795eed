"""Workers give the CPU to the web server however the cluster was started.

Linux divides the CPU between sessions (autogroups) before it looks at niceness, so a worker's
niceness only counts against processes of its own session. `make run` starts gunicorn and
qcluster in one session (tests/test_make_run.py checks the workers' niceness there); a
supervisor that starts qcluster with `setsid` gives it a session of its own, which then has to
be lowered as a whole, and only then.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/autogroup").exists(), reason="needs Linux with autogroup scheduling"
)


def autogroup_nice(pid: int) -> int | None:
    """The niceness of the process's session, None in the default one (init's session).

    A session of its own reads "/autogroup-123 nice 7"; a process whose session never left
    init's (a CI runner started by the machine's init, say) shares the root group, which reads
    empty and has no niceness of its own to lower.
    """
    fields = Path(f"/proc/{pid}/autogroup").read_text().split()
    return int(fields[-1]) if fields else None


def niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def qcluster(tmp_path: Path, **popen_options: object) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        "ENV_FILE": "",
        "SECRET_KEY": "worker-priority-test",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": "",
        "Q_WORKERS": "2",
        "WORKER_NICENESS": "7",
        "WORKER_BEAT_SECONDS": "0",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **popen_options,  # type: ignore[arg-type]
    )


def workers_of(cluster: subprocess.Popen[bytes]) -> list[int]:
    """The cluster's worker processes once they have started (grandchildren of qcluster)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert cluster.poll() is None, "qcluster exited"
        below = [g for c in children(cluster.pid) for g in children(c)]
        niced = [p for p in below if niceness(p) > 0]
        if len(niced) >= 2:
            return niced
        time.sleep(0.2)
    raise AssertionError("the cluster's workers did not start")


def stop(cluster: subprocess.Popen[bytes]) -> None:
    os.killpg(cluster.pid, 9) if cluster.pid == os.getpgid(cluster.pid) else cluster.kill()
    cluster.wait(timeout=30)


def test_a_cluster_alone_in_its_session_lowers_the_whole_session(tmp_path):
    cluster = qcluster(tmp_path, start_new_session=True)
    try:
        workers = workers_of(cluster)
        assert {autogroup_nice(p) for p in workers} == {7}
        assert autogroup_nice(cluster.pid) == 7  # one session: the cluster's processes
    finally:
        stop(cluster)


def test_a_cluster_sharing_its_session_leaves_the_session_alone(tmp_path):
    ours = autogroup_nice(os.getpid())
    cluster = qcluster(tmp_path, process_group=0)  # as scripts/run starts it
    try:
        workers = workers_of(cluster)
        # The session also holds whatever started the cluster (here, this test): lowering it
        # would lower the web server of `make run` too.
        assert {autogroup_nice(p) for p in workers} == {ours}
        assert autogroup_nice(os.getpid()) == ours
    finally:
        stop(cluster)
