"""docker-compose.yml, validated without Docker: against the Compose Specification's JSON schema (vendored,
see compose-spec.README.md), by Debian's ``docker-compose config`` when it is installed (.ci/run installs
it), and for what neither knows: that the services, env files, mounts and addresses fit together."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from dialguard.config import load_settings
from tests.deploy.files import ROOT, dockerfile_stages, env_file, exec_form
from tests.fakes.dialplan import Channel, call, load_dialplan

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
SCHEMA = json.loads((Path(__file__).parent / "compose-spec.json").read_text())
IMAGE_ENV = dockerfile_stages()[-1].env()


def _env_files(service: str) -> list[str]:
    files = SERVICES[service].get("env_file", [])
    return [files] if isinstance(files, str) else list(files)


def _example(path: str) -> dict[str, str]:
    """What an administrator starts from: the ``.example`` shipped beside each env file."""
    return env_file(ROOT / f"{path}.example")


def _bind_mounts(service: str) -> dict[str, str]:
    """container path -> host path, for the ``./host:/container[:ro]`` volumes of a service."""
    out = {}
    for spec in SERVICES[service].get("volumes", []):
        host, container, *_ = spec.split(":")
        if host.startswith("."):
            out[container] = host
    return out


def test_the_compose_file_is_valid_by_the_compose_specification() -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(COMPOSE)]
    assert errors == []


def test_the_schema_check_catches_a_mistake() -> None:
    broken = {**COMPOSE, "services": {**SERVICES, "db": {**SERVICES["db"], "restart_policy": "always"}}}
    assert not jsonschema.Draft202012Validator(SCHEMA).is_valid(broken)


@pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="docker-compose not installed (.ci/run installs Debian's)"
)
def test_docker_compose_config_accepts_it(tmp_path: Path) -> None:
    """Debian's docker-compose (v1) resolves the file as ``up`` would: env files, paths, references."""
    (tmp_path / "deploy").mkdir()
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    for service in SERVICES:
        for path in _env_files(service):
            shutil.copy(ROOT / f"{path}.example", tmp_path / path)  # as the README says to
    run = subprocess.run(
        ["docker-compose", "--project-directory", str(tmp_path), "-f", str(tmp_path / "docker-compose.yml"),
         "config", "-q"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr


def test_postgres_16_keeps_its_data_in_a_named_volume_and_reports_health() -> None:
    db = SERVICES["db"]
    assert db["image"] == "postgres:16"
    (volume,) = [v for v in db["volumes"] if v.endswith(":/var/lib/postgresql/data")]
    assert volume.split(":")[0] in COMPOSE["volumes"]
    assert "pg_isready" in db["healthcheck"]["test"]


def test_the_gateway_is_built_here_and_waits_for_a_healthy_database() -> None:
    gw = SERVICES["dialguard"]
    assert gw["build"] == "." and (ROOT / "Dockerfile").is_file()
    assert gw["depends_on"] == {"db": {"condition": "service_healthy"}}
    (state,) = exec_form(dockerfile_stages()[-1].one("VOLUME"))
    data = [v for v in gw["volumes"] if v.split(":")[1] == state]
    assert data and data[0].split(":")[0] in COMPOSE["volumes"]  # the opt-out journal outlives the container


def test_asterisk_does_not_wait_for_the_gateway() -> None:
    """Emergency numbers are dialled without the gate: a PBX that waited for it could not place them."""
    assert "dialguard" not in SERVICES["asterisk"].get("depends_on", {})


def test_asterisk_is_a_pinned_image_with_the_shipped_dialplan_and_prompts_mounted() -> None:
    image = SERVICES["asterisk"]["image"]
    assert ":" in image and not image.endswith((":latest", ":stable"))
    mounts = _bind_mounts("asterisk")
    assert mounts["/etc/asterisk/extensions_dialguard.conf"] == "./asterisk-conf/extensions_dialguard.conf"
    assert mounts["/etc/asterisk/extensions.conf"] == "./deploy/asterisk/extensions.conf"
    assert mounts["/var/lib/asterisk/sounds/dialguard"] == "./asterisk-conf/sounds"
    # The gateway reads the same prompts where calls.sounds_dir expects them: the evidence of what was heard.
    settings = load_settings(env={**IMAGE_ENV, **_example("deploy/dialguard.env")})
    assert _bind_mounts("dialguard")[str(settings.calls.sounds_dir)] == "./asterisk-conf/sounds"


def test_every_mounted_path_and_env_file_example_exists() -> None:
    for service in SERVICES:
        for host in _bind_mounts(service).values():
            assert (ROOT / host).exists(), f"{service}: {host}"
        for path in _env_files(service):
            assert (ROOT / f"{path}.example").is_file(), path
            assert Path(path).parent == Path("deploy")
            ignored = (ROOT / "deploy" / ".gitignore").read_text().splitlines()
            assert f"/{Path(path).name}" in ignored, f"{path} holds passwords: it must never be committed"


def test_no_secret_is_written_in_the_compose_file() -> None:
    for name, service in SERVICES.items():
        env = service.get("environment", {})
        assert not any(w in k.upper() for k in env for w in ("PASSWORD", "SECRET", "DSN", "AUTH")), name


def test_the_env_file_examples_agree_and_hold_no_real_secret() -> None:
    pg = _example("deploy/postgres.env")
    gw = _example("deploy/dialguard.env")
    db_env = SERVICES["db"]["environment"]
    owner = urlsplit(gw["DIALGUARD_DATABASE_OWNER_DSN"])
    gateway = urlsplit(gw["DIALGUARD_DATABASE_DSN"])
    for dsn in (owner, gateway):
        assert dsn.hostname == "db" and dsn.port == 5432 and dsn.path == f"/{db_env['POSTGRES_DB']}"
    assert owner.username == db_env["POSTGRES_USER"] and owner.password == pg["POSTGRES_PASSWORD"]
    # The gateway's role is the one the image's init script makes, with the password it is given.
    init = (ROOT / "deploy/postgres-init/10-dialguard-gateway.sh").read_text()
    assert f"CREATE ROLE {gateway.username} LOGIN" in init and "DIALGUARD_GATEWAY_PASSWORD" in init
    assert gateway.password == pg["DIALGUARD_GATEWAY_PASSWORD"] != owner.password
    for secret in (pg["POSTGRES_PASSWORD"], pg["DIALGUARD_GATEWAY_PASSWORD"]):
        assert "CHANGE-ME" in secret  # a placeholder nobody can mistake for a password
    assert set(SERVICES["db"]["networks"]) & set(SERVICES["dialguard"]["networks"])


def test_only_the_asterisk_container_may_speak_fastagi() -> None:
    settings = load_settings(env={**IMAGE_ENV, **_example("deploy/dialguard.env")})
    address = ipaddress.ip_address(SERVICES["asterisk"]["networks"]["pbx"]["ipv4_address"])
    (subnet,) = [ipaddress.ip_network(c["subnet"]) for c in COMPOSE["networks"]["pbx"]["ipam"]["config"]]
    assert address in subnet
    assert any(address in net for net in settings.agi.allow)
    assert all(net.num_addresses == 1 for net in settings.agi.allow)  # not the whole network
    assert "pbx" in SERVICES["dialguard"]["networks"]
    assert not any(str(p).split(":")[-1] == str(settings.agi.port) for p in SERVICES["dialguard"]["ports"])


def test_http_is_published_on_this_host_only() -> None:
    assert SERVICES["dialguard"]["ports"] == ["127.0.0.1:8080:8080"]


def test_the_published_rtp_range_is_the_one_asterisk_uses() -> None:
    rtp = dict(
        line.split("=", 1)
        for line in (ROOT / "deploy/asterisk/rtp.conf").read_text().splitlines()
        if "=" in line
    )
    published = [p for p in SERVICES["asterisk"]["ports"] if p.endswith("/udp") and "-" in p]
    assert published == [f"{rtp['rtpstart']}-{rtp['rtpend']}:{rtp['rtpstart']}-{rtp['rtpend']}/udp"]


def test_the_compose_dialplan_sends_checks_to_the_gateway_service(tmp_path: Path) -> None:
    """deploy/asterisk/extensions.conf, loaded as Asterisk loads it, asks ``dialguard:4573``.

    ``[globals](+)`` appends to the [globals] read before it (``main/config.c``, ``process_text_line``)
    and ``pbx_config`` sets them in order, so the later DIALGUARD_GATE wins. The test dialplan reader
    refuses category options rather than guess; it reads every ``[globals]`` in order, which for this
    file is the same thing, so the ``(+)`` is taken off for it.
    """
    text = (ROOT / "deploy/asterisk/extensions.conf").read_text()
    assert text.index("#include extensions_dialguard.conf") < text.index("[globals](+)")
    (tmp_path / "extensions.conf").write_text(text.replace("[globals](+)", "[globals]"))
    shutil.copy(ROOT / "asterisk-conf/extensions_dialguard.conf", tmp_path)
    dp = load_dialplan(tmp_path / "extensions.conf", config_dir=tmp_path)
    assert dp.warnings == []
    shipped = load_dialplan(ROOT / "asterisk-conf/extensions_dialguard.conf")
    assert dp.globals == {**shipped.globals, "DIALGUARD_GATE": "dialguard:4573"}

    port = load_settings(env={**IMAGE_ENV, **_example("deploy/dialguard.env")}).agi.port
    assert dp.globals["DIALGUARD_GATE"] == f"dialguard:{port}"
    assert set(SERVICES["asterisk"]["networks"]) & set(SERVICES["dialguard"]["networks"])
    urls: list[str] = []

    def gate(url: str, args: list[str], chan: Channel) -> str:
        urls.append(url)
        return "FAILURE"  # unreachable: the call is refused, which is all this test needs

    call(dp, "phones", "2025550143", agi=gate)
    assert urls == [f"agi://dialguard:{port}/check"]
