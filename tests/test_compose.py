"""Static checks of the Docker deployment: docker-compose.yml, Dockerfile, .dockerignore.

Nothing here needs a Docker engine. When a Docker Compose client is installed,
`docker compose config -q` validates the file against the Compose schema as well;
without one that test is skipped.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models.settings import Settings  # noqa: E402

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

ENV_PREFIX = "PLATEAU_"
APP_SERVICES = ("api", "worker")
# Services that must declare a healthcheck. The worker has none on purpose: a solo-pool
# worker cannot answer `celery inspect ping` while a task trains.
HEALTHCHECKED = ("postgres", "redis", "api", "flower")
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


# ---------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def compose() -> dict:
    assert COMPOSE_FILE.is_file(), "docker-compose.yml is missing"
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def argv(value: str | list) -> list[str]:
    """A command, entrypoint or healthcheck test as a list of words."""
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", ...]
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {str(k): (None if v is None else str(v)) for k, v in env.items()}


def depends_on(service: dict) -> dict:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):  # the short form carries no condition
        return {name: {} for name in deps}
    return deps


def volume_mounts(service: dict) -> list[tuple[str | None, str, str]]:
    """(source, target, type) for each mount; short and long syntax."""
    mounts = []
    for item in service.get("volumes") or []:
        if isinstance(item, dict):
            mounts.append((item.get("source"), item["target"], item.get("type", "volume")))
            continue
        parts = item.split(":")
        if len(parts) == 1:  # anonymous volume
            mounts.append((None, parts[0], "volume"))
            continue
        source, target = parts[0], parts[1]
        kind = "bind" if source.startswith((".", "/", "~", "$")) else "volume"
        mounts.append((source, target, kind))
    return mounts


def published_ports(service: dict) -> list[tuple[str, str, str, str]]:
    """(host_ip, published, target, protocol) for each published port."""
    out = []
    for item in service.get("ports") or []:
        if isinstance(item, dict):
            published = item.get("published")
            if published is not None:
                out.append(
                    (str(item.get("host_ip", "")), str(published), str(item["target"]), item.get("protocol", "tcp"))
                )
            continue
        spec, _, protocol = str(item).partition("/")
        parts = spec.rsplit(":", 2)
        if len(parts) == 1:
            continue  # container port only: Docker picks a free host port
        host_ip = parts[0] if len(parts) == 3 else ""
        out.append((host_ip, parts[-2], parts[-1], protocol or "tcp"))
    return out


def expand_ports(published: str) -> set[int]:
    lo, _, hi = published.partition("-")
    return set(range(int(lo), int(hi or lo) + 1))


def option(words: list[str], *names: str) -> str | None:
    """The value of a command-line option given as `-x v`, `--long v` or `--long=v`."""
    for i, word in enumerate(words):
        for name in names:
            if word == name and i + 1 < len(words):
                return words[i + 1]
            if name.startswith("--") and word.startswith(name + "="):
                return word.split("=", 1)[1]
    return None


def duration_seconds(text: str) -> float:
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", str(text))
    assert parts and "".join(n + u for n, u in parts) == str(text), f"bad duration {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuation lines joined."""
    logical, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        logical.append(current.strip())
        current = ""
    if current.strip():
        logical.append(current.strip())
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in logical]


def exec_form(args: str) -> list[str]:
    args = args.strip()
    if args.startswith("["):
        return json.loads(args)
    return shlex.split(args)


# ---------------------------------------------------------------------------- compose


def test_compose_spec_shape(compose):
    assert "version" not in compose, "the Compose spec has no `version:` key"
    assert set(compose["services"]) == {"postgres", "redis", "api", "worker", "flower"}


def test_healthchecks(services):
    for name in HEALTHCHECKED:
        check = services[name].get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable"), f"{name} disables its healthcheck"
        words = argv(check["test"])
        assert words and words[0] in {"CMD", "CMD-SHELL"}, f"{name}: healthcheck test must start with CMD"
    pg = argv(services["postgres"]["healthcheck"]["test"])
    assert "pg_isready" in " ".join(pg) and option(pg, "-U") == "plateau" and option(pg, "-d") == "plateau"
    assert argv(services["redis"]["healthcheck"]["test"])[1:] == ["redis-cli", "ping"]
    api_check = " ".join(argv(services["api"]["healthcheck"]["test"]))
    assert "urllib" in api_check and "http://localhost:8000/livez" in api_check


def test_depends_on_names_real_services_with_conditions(services):
    for name, service in services.items():
        for dep, spec in depends_on(service).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert dep != name
            condition = (spec or {}).get("condition")
            assert condition in CONDITIONS, f"{name} -> {dep}: depends_on needs a condition"
            if condition == "service_healthy":
                assert services[dep].get("healthcheck"), (
                    f"{name} waits for {dep} to be healthy, but it has no healthcheck"
                )


def test_depends_on_has_no_cycle(services):
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        assert state.get(name) != "active", f"dependency cycle: {' -> '.join(path + [name])}"
        state[name] = "active"
        for dep in depends_on(services[name]):
            visit(dep, path + [name])
        state[name] = "done"

    for name in services:
        visit(name, [])


def test_startup_order(services):
    for name in APP_SERVICES:
        deps = depends_on(services[name])
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["redis"]["condition"] == "service_healthy"
    # The API migrates the schema on start; the worker comes after it.
    assert depends_on(services["worker"])["api"]["condition"] == "service_started"
    assert depends_on(services["flower"])["redis"]["condition"] == "service_healthy"


def test_app_environment_is_real_settings(services):
    fields = Settings.model_fields
    for name in APP_SERVICES:
        env = environment(services[name])
        assert env, f"{name} has no environment"
        for key in env:
            assert key.startswith(ENV_PREFIX), f"{name}: {key} is not a {ENV_PREFIX}* variable"
            field = key[len(ENV_PREFIX) :].lower()
            assert field in fields, f"{name}: {key} is not a field of models.settings.Settings"


def test_app_environment_parses(services, monkeypatch):
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    for key, value in environment(services["api"]).items():
        assert value is not None, f"{key} has no value"
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert "@postgres:" in settings.database_url
    assert settings.broker_url.startswith("redis://redis:")
    assert settings.visibility_timeout >= Settings.model_fields["visibility_timeout"].default


def test_api_and_worker_share_environment(compose, services):
    assert "x-plateau-env" in compose
    shared = {str(k): str(v) for k, v in compose["x-plateau-env"].items()}
    for name in APP_SERVICES:
        assert environment(services[name]) == shared, f"{name} does not use the shared x-plateau-env"


def test_database_credentials_match_postgres(services):
    pg_env = environment(services["postgres"])
    url = environment(services["api"])["PLATEAU_DATABASE_URL"]
    user, password, db = pg_env["POSTGRES_USER"], pg_env["POSTGRES_PASSWORD"], pg_env["POSTGRES_DB"]
    assert f"://{user}:{password}@postgres:5432/{db}" in url


def test_redis_persists_messages(services):
    words = argv(services["redis"]["command"])
    assert option(words, "--appendonly") == "yes"
    assert any(source == "redisdata" and target == "/data" for source, target, _ in volume_mounts(services["redis"]))


def test_paths_are_mounted(services):
    env = environment(services["api"])
    for name in APP_SERVICES:
        targets = {target for _, target, _ in volume_mounts(services[name])}
        for key in ("PLATEAU_DATA_ROOT", "PLATEAU_ARTIFACTS_DIR"):
            assert env[key] in targets, f"{name}: {key}={env[key]} is not a mounted volume"
    # API and worker see the same datasets and artifacts.
    assert sorted(volume_mounts(services["api"])) == sorted(volume_mounts(services["worker"]))


def test_api_command(services):
    api = services["api"]
    words = argv(api["command"])
    assert words[:2] == ["uvicorn", "api.main:app"]
    assert option(words, "--host") == "0.0.0.0"
    port = option(words, "--port")
    assert ("", "8000", port, "tcp") in published_ports(api)
    assert (ROOT / "api" / "main.py").is_file()


def test_worker_runs_solo_on_the_gpu_queue(services):
    worker = services["worker"]
    words = argv(worker["command"])
    assert words[:3] == ["celery", "-A", "worker.celery_app"] and "worker" in words
    assert option(words, "-P", "--pool") == "solo"
    assert option(words, "-c", "--concurrency") == "1"
    queue = environment(worker).get("PLATEAU_QUEUE", Settings.model_fields["queue"].default)
    assert option(words, "-Q", "--queues") == queue, "the worker must consume the queue tasks are routed to"
    assert (ROOT / "worker" / "celery_app.py").is_file()
    assert worker.get("restart") == "unless-stopped"
    assert duration_seconds(worker["stop_grace_period"]) >= 60


def test_worker_reserves_an_nvidia_gpu(services):
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(
        d.get("driver") == "nvidia" and d.get("count") == 1 and "gpu" in d.get("capabilities", []) for d in devices
    ), devices


def extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def build_extras(service: dict) -> set[str]:
    build = service["build"]
    assert isinstance(build, dict) and build.get("context") == ".", build
    return set(build["args"]["EXTRAS"].split(","))


def test_images_install_the_extras_they_need(services):
    """The API image gets the server extra only (no TensorFlow); the worker image the CUDA worker extra."""
    args = [a for kind, a in dockerfile_instructions() if kind == "ARG"]
    assert any(a.split("=", 1)[0] == "EXTRAS" for a in args), "Dockerfile does not declare ARG EXTRAS"
    assert build_extras(services["api"]) == {"server"}
    assert build_extras(services["worker"]) == {"worker-gpu"}
    declared = extras()
    assert any(d.startswith("tensorflow[and-cuda]") for d in declared["worker-gpu"])
    assert not any(d.startswith("tensorflow") for d in declared["server"])
    assert "plateau[server]" in declared["worker-gpu"], "the worker needs the database and broker code too"
    assert services["api"]["image"] != services["worker"]["image"], "the API and CUDA builds need distinct tags"


def test_flower(services):
    flower = services["flower"]
    assert flower["image"].startswith("mher/flower")
    words = argv(flower["command"])
    broker = option(words, "--broker")
    assert broker == environment(services["api"])["PLATEAU_BROKER_URL"]
    assert "flower" in words and option(words, "--port") == "5555"
    assert ("", "5555", "5555", "tcp") in published_ports(flower)


def test_named_volumes_are_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in services.items():
        for source, target, kind in volume_mounts(service):
            if kind == "volume" and source:
                assert source in declared, f"{name} mounts undeclared volume {source}:{target}"
                used.add(source)
    assert declared == {"pgdata", "redisdata", "data", "artifacts"}
    assert used == declared, f"declared but unused: {declared - used}"


def test_published_ports_do_not_clash(services):
    seen: list[tuple[str, str, int, str]] = []  # (host_ip, protocol, port, service)
    for name, service in services.items():
        for host_ip, published, _target, protocol in published_ports(service):
            for port in expand_ports(published):
                for other_ip, other_protocol, other_port, other in seen:
                    # An empty host IP (or 0.0.0.0) binds every address, so it clashes with any IP.
                    same_address = host_ip in ("", "0.0.0.0") or other_ip in ("", "0.0.0.0") or host_ip == other_ip
                    assert not (same_address and protocol == other_protocol and port == other_port), (
                        f"{name} and {other} both publish {protocol}/{port}"
                    )
                seen.append((host_ip, protocol, port, name))
    # Replicas of a scaled worker could not share a host port.
    assert not published_ports(services["worker"])


# ---------------------------------------------------------------------------- Dockerfile


def test_dockerfile():
    assert DOCKERFILE.is_file(), "Dockerfile is missing"
    instructions = dockerfile_instructions()
    froms = [a for kind, a in instructions if kind == "FROM"]
    assert froms and froms[0].startswith("python:3.11-slim")
    runs = " ".join(a for kind, a in instructions if kind == "RUN")
    assert 'pip install --no-cache-dir ".[${EXTRAS}]"' in runs
    assert "uninstall" not in runs, "TensorFlow comes from the chosen extra, never swapped afterwards"
    launch = [exec_form(a) for kind, a in instructions if kind in {"CMD", "ENTRYPOINT"}]
    assert launch, "Dockerfile has no CMD or ENTRYPOINT"
    assert any("api.main:app" in words for words in launch), launch
    assert launch[-1][:2] == ["uvicorn", "api.main:app"]


def test_dockerignore_keeps_local_state_out():
    assert DOCKERIGNORE.is_file(), ".dockerignore is missing"
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (".venv", "var", ".git", "**/__pycache__"):
        assert required in patterns, f".dockerignore does not exclude {required}"
    # The build needs these.
    for needed in (
        "pyproject.toml",
        "README.md",
        "api",
        "models",
        "worker",
        "analysis",
        "contract",
        "client",
        "alembic.ini",
    ):
        assert needed not in patterns, f".dockerignore excludes {needed}"


# ---------------------------------------------------------------------------- docker compose CLI


def _compose_cli() -> list[str] | None:
    """A Compose v2 client, or None. Compose v1 predates parts of the Compose spec (`name:`)."""
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for cli in candidates:
        try:
            probe = subprocess.run([*cli, "version", "--short"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        major = probe.stdout.strip().lstrip("v").split(".", 1)[0]
        if probe.returncode == 0 and major.isdigit() and int(major) >= 2:
            return cli
    return None


def test_docker_compose_config():
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no Docker Compose v2 client (neither the `docker compose` plugin nor docker-compose v2)")
    # `config` only parses and validates; it needs no Docker engine.
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE_FILE), "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr or result.stdout


def test_every_service_is_restarted_when_it_exits(services):
    """Docker restarts every container; the embedded launcher restarts its own children (docs/reliability.md, P4)."""
    assert {name: s.get("restart") for name, s in services.items()} == dict.fromkeys(services, "unless-stopped")
