"""gunicorn.conf.py, shared by `make run` and the Docker image: a process accepts only the
connections its threads can serve (and a couple kept alive), so no process queues a burst's
webhooks behind its own few threads while the others idle."""

from __future__ import annotations

import runpy
from pathlib import Path
from types import SimpleNamespace

from gunicorn.config import Config

CONF = Path(__file__).resolve().parent.parent / "gunicorn.conf.py"


def forked_with(**settings: object) -> Config:
    cfg = Config()
    for name, value in settings.items():
        cfg.set(name, value)
    hooks = runpy.run_path(str(CONF))
    hooks["pre_fork"](SimpleNamespace(cfg=cfg), None)
    return cfg


def test_a_process_accepts_as_many_connections_as_it_has_threads_and_two():
    assert forked_with(threads=4).worker_connections == 6
    assert forked_with(threads=16).worker_connections == 18


def test_an_explicit_worker_connections_setting_wins():
    assert forked_with(threads=4, worker_connections=50).worker_connections == 50
