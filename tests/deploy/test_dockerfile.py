"""The container image, read from the Dockerfile itself (no Docker here): what it installs, as whom, what it
runs, and that the settings it bakes in are ones ``load_settings`` accepts and mean what the image needs."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import PurePosixPath

import pytest

from dialguard.config import load_settings
from tests.deploy.files import (
    ROOT,
    dockerfile_stages,
    dockerignore,
    env_file,
    excluded_from_context,
    exec_form,
)

STAGES = dockerfile_stages()
FINAL = STAGES[-1]


def test_a_slim_python_3_11_base_for_every_stage() -> None:
    for stage in STAGES:
        assert stage.base.startswith("python:3.11-slim"), stage.base


def test_the_package_is_installed_without_its_dev_extras() -> None:
    installs = " ".join(rest for stage in STAGES for rest in stage.all("RUN") if "pip" in rest)
    assert "pip wheel" in installs and "pip install" in installs
    assert "[dev]" not in installs and "-e " not in installs
    assert "--no-cache-dir" in installs  # no wheel cache left in a layer


def test_it_runs_as_an_unprivileged_user_that_owns_the_data_volume() -> None:
    user = FINAL.one("USER")
    assert user not in ("root", "0") and not user.startswith("0:")
    (volume,) = exec_form(FINAL.one("VOLUME"))
    assert FINAL.one("WORKDIR") == volume
    created = " ".join(FINAL.all("RUN"))
    assert "useradd --system" in created and f" {user}" in created
    assert f"install -d -o {user} -g {user}" in created and volume in created


def test_entrypoint_is_dialguard_serve() -> None:
    assert exec_form(FINAL.one("ENTRYPOINT")) + exec_form(FINAL.one("CMD")) == ["dialguard", "serve"]


def test_healthcheck_asks_healthz_with_python_not_curl() -> None:
    options, _, command = FINAL.one("HEALTHCHECK").partition(" CMD ")
    assert exec_form(command) == ["python", "-m", "dialguard.healthcheck"]
    assert "--timeout=" in options and "--start-period=" in options  # migrations run at start


def test_the_env_the_image_sets_is_accepted_and_binds_every_interface() -> None:
    env = FINAL.env()
    settings = load_settings(env=env)
    assert settings.agi.host == "0.0.0.0"
    assert settings.http.host == "0.0.0.0"
    # Only loopback may speak FastAGI until the administrator names Asterisk: fail-closed by default.
    assert set(settings.agi.allow) == {ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")}
    (volume,) = exec_form(FINAL.one("VOLUME"))
    for path in (settings.database.data_dir, settings.calls.journal_path):
        assert PurePosixPath(path).is_relative_to(volume), path  # survives the container
    exposed = {int(p) for p in FINAL.one("EXPOSE").split()}
    assert exposed == {settings.agi.port, settings.http.port} == {4573, 8080}


def test_the_env_file_example_on_top_of_the_image_env_is_accepted() -> None:
    example = env_file(ROOT / "deploy" / "dialguard.env.example")
    settings = load_settings(env={**FINAL.env(), **example})
    assert settings.database.dsn is not None
    assert settings.agi.host == "0.0.0.0"
    assert ipaddress.ip_network("127.0.0.0/8") not in settings.agi.allow  # the admin named Asterisk


# ------------------------------------------------------------------ build context


def _copied_sources() -> list[str]:
    sources = []
    for stage in STAGES:
        for rest in stage.all("COPY"):
            words = rest.split()
            if any(w.startswith("--from") for w in words):
                continue
            sources += [w for w in words[:-1] if not w.startswith("--")]
    return sources


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    rules = dockerignore()
    sources = _copied_sources()
    assert sources, "nothing is copied from the build context"
    for source in sources:
        path = ROOT / source
        files = [path] if path.is_file() else [p for p in path.rglob("*.py") if "__pycache__" not in p.parts]
        assert files, source
        for f in files:
            rel = f.relative_to(ROOT).as_posix()
            assert not excluded_from_context(rel, rules), f"{rel} is copied but .dockerignore leaves it out"


def test_the_build_copies_what_pyproject_needs_to_build_the_wheel() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    sources = {s.rstrip("/") for s in _copied_sources()}
    assert {"pyproject.toml", project["project"]["readme"], "LICENSE"} <= sources
    assert set(project["tool"]["setuptools"]["packages"]["find"]["where"]) <= sources


@pytest.mark.parametrize(
    "path",
    [
        "deploy/dialguard.env",  # passwords
        "deploy/postgres.env",
        ".git/config",
        ".venv/bin/python",
        "data/pgdata/PG_VERSION",
        "data/optout-journal.jsonl",
        "tests/conftest.py",
        "src/dialguard/__pycache__/config.cpython-311.pyc",
        "src/dialguard.egg-info/PKG-INFO",
    ],
)
def test_the_build_context_leaves_out_secrets_and_local_state(path: str) -> None:
    assert excluded_from_context(path, dockerignore())
