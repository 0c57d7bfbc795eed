"""compose.yaml holds together without a Docker engine: services, health checks, start order.

Docker is not available where the tests run, so the file is checked as data: every service
that runs has a health check, nothing starts before what it needs is healthy (or, for the
one-shot migrate, done), and every command names files and manage.py commands that exist.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = ("migrate", "web", "worker")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def command_words(service: dict) -> list[str]:
    command = service.get("command")
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else list(command)


def healthcheck_words(service: dict) -> list[str]:
    test = service["healthcheck"]["test"]
    if test[0] == "CMD-SHELL":
        return shlex.split(test[1])
    assert test[0] == "CMD"
    return list(test[1:])


def dockerfile_cmd() -> list[str]:
    line = next(
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD")
    )
    return shlex.split(" ".join(yaml.safe_load(line.removeprefix("CMD"))))


def test_the_services_are_postgres_redis_migrate_web_and_worker(compose):
    assert set(compose["services"]) == {"db", "redis", "migrate", "web", "worker"}
    assert compose["services"]["db"]["image"].startswith("postgres:")
    assert compose["services"]["redis"]["image"].startswith("redis:")


def test_app_services_are_built_from_the_dockerfile_and_read_the_env_file(compose):
    for name in APP_SERVICES:
        service = compose["services"][name]
        assert service["build"] == "."
        assert service["env_file"] == ".env"
    assert (ROOT / "Dockerfile").is_file()


def test_app_services_use_the_compose_database_and_redis(compose):
    db = compose["services"]["db"]["environment"]
    for name in APP_SERVICES:
        environment = compose["services"][name]["environment"]
        url = environment["DATABASE_URL"]
        assert re.fullmatch(
            rf"postgres://{db['POSTGRES_USER']}:\$\{{POSTGRES_PASSWORD[^}}]*\}}@db:5432/"
            rf"{db['POSTGRES_DB']}",
            url,
        )
        assert environment["REDIS_URL"] == "redis://redis:6379/0"


def test_every_long_running_service_has_a_health_check(compose):
    services = compose["services"]
    assert healthcheck_words(services["db"])[0] == "pg_isready"
    assert healthcheck_words(services["redis"]) == ["redis-cli", "ping"]
    assert healthcheck_words(services["web"]) == ["python", "scripts/healthcheck"]
    assert healthcheck_words(services["worker"]) == ["python", "scripts/healthcheck"]
    # The same script checks the heartbeat instead of HTTP only with this role.
    assert services["worker"]["environment"]["PROCESS_ROLE"] == "worker"
    assert "PROCESS_ROLE" not in services["web"]["environment"]
    assert services["migrate"]["healthcheck"] == {"disable": True}


def test_the_worker_health_check_gives_the_first_heartbeat_time(compose):
    check = compose["services"]["worker"]["healthcheck"]
    assert seconds(check["start_period"]) >= 60


def seconds(duration: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([sm])", duration).groups()
    return int(number) * (60 if unit == "m" else 1)


def test_nothing_starts_before_what_it_needs_is_healthy(compose):
    services = compose["services"]
    assert services["migrate"]["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    for name in ("web", "worker"):
        assert services[name]["depends_on"] == {
            "db": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }


def test_migrations_run_once_in_the_one_shot_service(compose):
    services = compose["services"]
    assert command_words(services["migrate"])[:3] == ["python", "manage.py", "migrate"]
    assert services["migrate"]["restart"] == "no"
    for name in ("web", "worker"):
        assert "migrate" not in command_words(services[name])


def test_postgres_keeps_its_data_in_a_named_volume(compose):
    (mount,) = compose["services"]["db"]["volumes"]
    volume, target = mount.split(":")
    assert target == "/var/lib/postgresql/data"
    assert volume in compose["volumes"]


def test_the_web_port_is_published_on_localhost_only(compose):
    assert compose["services"]["web"]["ports"] == ["127.0.0.1:8000:8000"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_commands_name_files_and_manage_py_commands_that_exist(compose, name):
    service = compose["services"][name]
    # No command: the image's CMD (gunicorn) runs.
    words = command_words(service) or dockerfile_cmd()
    if "healthcheck" in service and "test" in service["healthcheck"]:
        words += healthcheck_words(service)
    for word in words:
        if word.endswith(".py") or word.startswith("scripts/"):
            assert (ROOT / word).is_file(), word
        if word == "manage.py":
            subcommand = words[words.index(word) + 1]
            assert subcommand in get_commands(), subcommand
        module = re.fullmatch(r"(\w+\.wsgi)", word)
        if module:
            assert (ROOT / (module.group(1).replace(".", "/") + ".py")).is_file()


def test_the_web_default_command_is_gunicorn_on_the_published_port():
    assert "gunicorn classroom_sms.wsgi --bind 0.0.0.0:${PORT}" in " ".join(dockerfile_cmd())


def test_the_health_check_script_is_executable():
    assert (ROOT / "scripts" / "healthcheck").stat().st_mode & 0o111


def test_every_variable_compose_interpolates_is_documented_in_env_example():
    used = set(re.findall(r"\$\{(\w+)", (ROOT / "compose.yaml").read_text()))
    documented = set(re.findall(r"^#?\s*(\w+)=", (ROOT / ".env.example").read_text(), re.M))
    assert used and used <= documented
