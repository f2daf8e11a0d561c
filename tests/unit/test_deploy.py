"""The deployment files agree with each other and with the settings.

Procfile, docker-compose.yml, Dockerfile and .env.example are parsed, never run here
(no Docker engine). Flower is the exception: "Flower never runs without a login" is a
property of the command, not of its text, so tests/integration/test_flower_guard.py starts
the Procfile's Flower command for real.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from honcho.environ import parse as parse_dotenv  # type: ignore[import-untyped]

from config.settings import Settings, env_name
from tests.deploy_files import (
    ALLOWED_EXTRA_ENV,
    APP_SERVICES,
    ENV_REF,
    ROOT,
    SECRET_NAME,
    compose,
    env_example,
    interpolate,
    listen_port,
    load_config_table,
    normalized,
    procfile,
    settings_env_names,
    strings_in,
)
from worker.infra.logs import redact

# --- Procfile and compose run the same processes --------------------------------------


def test_the_procfile_runs_worker_beat_flower_and_web() -> None:
    assert set(procfile()) == set(APP_SERVICES)


@pytest.mark.parametrize("process", APP_SERVICES)
def test_every_procfile_process_has_a_compose_service_with_the_same_command(process: str) -> None:
    service = compose()["services"][process]
    assert normalized(service["command"], compose_file=True) == normalized(
        procfile()[process], compose_file=False
    )


def test_the_worker_runs_the_threads_pool_with_configurable_concurrency() -> None:
    argv = shlex.split(procfile()["worker"])
    assert argv[:4] == ["celery", "-A", "worker", "worker"]
    assert argv[argv.index("--pool") + 1] == "threads"
    concurrency = argv[argv.index("--concurrency") + 1]
    assert interpolate(concurrency, {}) == "16"
    assert interpolate(concurrency, {"RELAYDANCE_WORKER_CONCURRENCY": "40"}) == "40"


def test_compose_app_services_read_dotenv_and_wait_for_a_healthy_redis() -> None:
    services = compose()["services"]
    for name in APP_SERVICES:
        service = services[name]
        assert service["env_file"] in (".env", [".env"]), name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
        redis_url = interpolate(service["environment"]["REDIS_URL"], {})
        assert redis_url == "redis://redis:6379/0", name
        assert service["init"] is True, name  # SIGTERM reaches Celery: warm shutdown


# --- Environment names ---------------------------------------------------------------------


def test_the_allow_list_does_not_shadow_a_setting() -> None:
    assert not set(ALLOWED_EXTRA_ENV) & settings_env_names()


def test_every_env_name_in_the_deployment_files_is_a_setting_or_allowed() -> None:
    referenced: dict[str, set[str]] = {}
    for process, command in procfile().items():
        referenced.setdefault(f"Procfile:{process}", set()).update(ENV_REF.findall(command))
    for name, service in compose()["services"].items():
        names = set()
        for text in strings_in(service):
            names.update(ENV_REF.findall(text))
        names.update((service.get("environment") or {}).keys())
        referenced[f"compose:{name}"] = names
    referenced[".env.example"] = set(env_example())
    dockerfile = (ROOT / "Dockerfile").read_text()
    referenced["Dockerfile"] = set(re.findall(r"\b(RELAYDANCE_\w+|REDIS_URL)\b", dockerfile))
    known = settings_env_names() | set(ALLOWED_EXTRA_ENV)
    unknown = {where: sorted(names - known) for where, names in referenced.items()}
    assert {k: v for k, v in unknown.items() if v} == {}
    # The allow-list stays short and true: every entry is used somewhere.
    used = set().union(*referenced.values())
    assert set(ALLOWED_EXTRA_ENV) <= used


def test_flower_variables_are_real_flower_options() -> None:
    # Flower turns every FLOWER_* variable into an option and exits on an unknown one.
    from flower.options import options

    for name in ALLOWED_EXTRA_ENV:
        if name.startswith("FLOWER_"):
            assert name.removeprefix("FLOWER_").lower() in options


def test_every_setting_and_allowed_name_is_documented_in_env_example() -> None:
    documented = set(env_example())
    missing = {env_name(field) for field in Settings.model_fields} - documented
    assert missing == set()
    assert set(ALLOWED_EXTRA_ENV) <= documented


def test_env_example_settings_section_is_generated_from_the_settings() -> None:
    table = load_config_table()
    assert table.main(["--env-example", "--check", str(ROOT / ".env.example")]) == 0


def test_env_example_leaves_every_setting_commented_out_at_its_default() -> None:
    # An empty NAME= is not "unset" for pydantic-settings: it is an empty string, which
    # fails for numbers and URLs. So the example sets nothing.
    assert parse_dotenv((ROOT / ".env.example").read_text()) == {}


def test_env_example_has_no_value_that_looks_like_a_real_secret() -> None:
    text = (ROOT / ".env.example").read_text()
    assert not re.search(r"\bsk-[A-Za-z0-9]{8,}", text)
    for name, value in env_example().items():
        if SECRET_NAME.search(name):
            assert value in ("", "{}"), name
        assert redact(value) == value, name
        long_tokens = re.findall(r"[A-Za-z0-9+/=_-]{24,}", value)
        assert long_tokens == [], name


# --- Redis, volumes, ports, image ------------------------------------------------------------


def test_redis_is_7_with_aof_fsynced_on_every_write_noeviction_and_a_healthcheck() -> None:
    redis = compose()["services"]["redis"]
    assert redis["image"].split(":")[1].startswith("7")
    command = redis["command"]
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    options = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert argv[0] == "redis-server"
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "always"  # a submit claim must survive a crash
    assert options["--maxmemory-policy"] == "noeviction"
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])
    assert any(v.endswith(":/data") for v in redis["volumes"]), "AOF must live on a volume"


def test_the_renders_volume_is_shared_by_worker_and_web() -> None:
    data = compose()
    services = data["services"]
    assert "renders" in data["volumes"]
    for name in ("worker", "web"):
        assert "renders:/renders" in services[name]["volumes"], name
        assert services[name]["environment"]["RELAYDANCE_OUTPUT_DIR"] == "/renders", name


@pytest.mark.parametrize("env", [{}, {"PORT": "9100", "FLOWER_PORT": "9200"}])
def test_published_ports_are_the_ports_the_processes_listen_on(env: dict[str, str]) -> None:
    services = compose()["services"]
    for name in ("web", "flower"):
        mapping = services[name]["ports"][0]
        parts = interpolate(mapping, env).split(":")
        container_port = parts[-1]
        assert listen_port(services[name]["command"], env) == container_port, name
    health = " ".join(services["web"]["healthcheck"]["test"])
    health_port = re.search(r"127\.0\.0\.1:(\d+)/", interpolate(health, env))
    assert health_port is not None
    assert health_port.group(1) == listen_port(services["web"]["command"], env)
    assert len(services["flower"]["ports"]) == 1
    flower_published = interpolate(services["flower"]["ports"][0], env)
    assert flower_published.startswith("127.0.0.1:"), "Flower's /metrics answers without login"


@pytest.mark.parametrize("env", [{}, {"RELAYDANCE_METRICS_PORT": "9300"}])
def test_the_metrics_listener_is_published_on_the_hosts_loopback_only(env: dict[str, str]) -> None:
    web = compose()["services"]["web"]
    public, metrics = (interpolate(m, env) for m in web["ports"])
    port = env.get("RELAYDANCE_METRICS_PORT", "9108")
    assert metrics == f"127.0.0.1:{port}:{port}"
    assert not public.startswith("127.0.0.1:")  # the receiver is the public one
    environment = {k: interpolate(str(v), env) for k, v in web["environment"].items()}
    assert environment["RELAYDANCE_METRICS_PORT"] == port
    assert environment["RELAYDANCE_METRICS_BIND"] == "0.0.0.0"  # inside the container only


def test_the_dockerfile_installs_the_project_as_a_non_root_user() -> None:
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines()]
    instructions = [ln for ln in lines if ln and not ln.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    joined = "\n".join(instructions)
    assert re.search(r"^RUN pip install \.(\s|$)", joined, re.MULTILINE)
    users = [ln.split()[1] for ln in instructions if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    install_at = next(i for i, ln in enumerate(instructions) if "pip install ." in ln)
    user_at = max(i for i, ln in enumerate(instructions) if ln.startswith("USER "))
    assert user_at > install_at


def test_the_docker_build_context_never_includes_dotenv_or_the_virtualenv() -> None:
    ignored = {ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".env", ".venv", ".git"} <= ignored


# --- The configuration table ----------------------------------------------------------------


def test_the_configuration_table_has_a_row_per_setting() -> None:
    table = load_config_table().markdown_table()
    for field in Settings.model_fields:
        assert f"| `{env_name(field)}` |" in table
    assert "| `RELAYDANCE_MAX_CONCURRENCY` | integer | `10` |" in table


def test_readme_configuration_table_is_current() -> None:
    readme = ROOT / "README.md"
    module = load_config_table()
    start, end = module.MARKDOWN_MARKERS
    text = readme.read_text() if readme.exists() else ""
    if start not in text or end not in text:
        pytest.skip("README.md has no config-table markers yet")
    current = module.text_between(text, module.MARKDOWN_MARKERS)
    assert current.strip() == module.markdown_table().strip(), (
        "README's table is stale: python scripts/config_table.py --write README.md"
    )


def test_config_table_check_fails_on_a_stale_file_and_write_fixes_it(tmp_path: Path) -> None:
    module = load_config_table()
    start, end = module.MARKDOWN_MARKERS
    doc = tmp_path / "README.md"
    doc.write_text(f"# Title\n\n{start}\n| old |\n{end}\n\nMore text.\n")
    assert module.main(["--check", str(doc)]) == 1
    assert module.main(["--write", str(doc)]) == 0
    assert module.main(["--check", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# Title\n\n") and text.endswith(f"{end}\n\nMore text.\n")


def test_config_table_check_reports_missing_markers(tmp_path: Path) -> None:
    doc = tmp_path / "README.md"
    doc.write_text("no markers\n")
    assert load_config_table().main(["--check", str(doc)]) == 2


def test_config_table_runs_as_a_script() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/config_table.py", "--env-example"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.startswith("# config-table:start\n")
    assert "# RELAYDANCE_LOG_JSON=false" in done.stdout
