"""Who gets the CPU first when a class bursts in: the students waiting on the webhook.

Linux (with autogroup scheduling, on by default in most distributions' kernels) divides the
CPU between sessions first, and only then between a session's processes by their niceness.
PostgreSQL starts each connection's server process in a session of its own. So on a machine
that also runs the database, each busy connection counted as much as everything started from
one shell together: `make run`'s web server, its django-q2 workers (nice, but only against
their own session) and whatever else that session held. In a class burst the workers' two
dozen connections out-weighed the web server many times over, and webhooks waited for the CPU
between their database round trips.

So each gunicorn worker leads a session of its own (and dies with its master, as it did in
the master's process group), and a django-q2 worker lowers its niceness, and its session's
too when the session is the cluster's alone. Where autogroups do not apply (other systems, a
container's CPU cgroup), a session is only a session and niceness works as usual.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
from pathlib import Path

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def web_worker_session(master_pid: int) -> None:
    """Give this gunicorn worker a session of its own, bound to live no longer than its master.

    Leaving the master's session leaves its process group too, where signalling the group
    (a supervisor's `kill -- -PGID`, scripts/run's last resort) reached the worker. The kernel
    now kills the worker when the master goes, however the master goes.
    """
    if not Path("/proc/self/autogroup").exists():
        return  # no autogroups: a session of its own would change nothing
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return  # the worker could outlive its master in a session of its own: stay
        if os.getppid() != master_pid:
            os._exit(0)  # the master went before the binding above: go with it
        os.setsid()
    except (OSError, AttributeError) as exc:  # not allowed, or no prctl: share the session
        logger.warning("web worker stays in its master's session: %s", exc)


def lower_worker_priority(niceness: int) -> None:
    """Let web requests go first when a class burst keeps every django-q2 worker busy.

    A webhook waits on a student's phone while a task waits on nobody, and on a small machine
    the workers' CPU (a burst's provisioning) otherwise doubles the webhooks' latency.
    """
    if niceness > 0 and multiprocessing.parent_process() is not None:
        try:
            os.nice(niceness)
        except OSError:  # not allowed here: run at the normal priority
            logger.warning("could not lower the worker's CPU priority")
        _lower_own_session(niceness)


def _lower_own_session(niceness: int) -> None:
    """Lower the session's CPU share too when the session is the cluster's alone.

    A qcluster started in a session of its own (`setsid`, as some supervisors do) competed
    with the web server as an equal, however nice its workers: then its session, which holds
    nothing but the cluster, is lowered as a whole. A session shared with more (make run's)
    is left alone.
    """
    try:
        sentinel = os.getppid()
        cluster = int(Path(f"/proc/{sentinel}/stat").read_text().rsplit(")", 1)[1].split()[1])
        if os.getsid(0) != cluster:
            return  # the session holds more than this cluster (make run's): leave it be
        Path("/proc/self/autogroup").write_text(str(niceness))
    except (OSError, ValueError, IndexError):  # not Linux, or no autogroups: niceness only
        return
