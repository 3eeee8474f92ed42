"""deploy/dialguard@.service, the template for several gateways on one port: the single unit's service
settings, plus one user for all instances and the settings that share FastAGI's port, which
``load_settings`` accepts once the env file names a PostgreSQL server, and refuses without one."""

from __future__ import annotations

import shlex

import pytest

from dialguard.config import ConfigError, load_settings
from tests.deploy.files import ROOT, env_file, systemd_unit

SINGLE = systemd_unit(ROOT / "deploy" / "dialguard.service")["Service"]
TEMPLATE = systemd_unit(ROOT / "deploy" / "dialguard@.service")["Service"]


def instance_environment(instance: str, host: str = "pbx1") -> dict[str, str]:
    """The template's Environment= lines as systemd gives them to instance ``instance`` on ``host``."""
    env: dict[str, str] = {}
    for line in TEMPLATE["Environment"]:
        for word in shlex.split(line.replace("%i", instance).replace("%H", host)):
            key, _, value = word.partition("=")
            env[key] = value
    return env


def test_the_template_keeps_every_setting_of_the_single_unit() -> None:
    assert {k: v for k, v in TEMPLATE.items() if k not in ("Environment", "User")} == {
        k: v for k, v in SINGLE.items() if k != "Environment"
    }
    assert set(SINGLE["Environment"]) < set(TEMPLATE["Environment"])
    # One dynamic user for all instances: SO_REUSEPORT shares a port only within one user.
    assert TEMPLATE["User"] == ["dialguard"] and TEMPLATE["DynamicUser"] == ["yes"]


def test_instances_share_the_fastagi_port_and_keep_http_ports_of_their_own() -> None:
    server = {"DIALGUARD_DATABASE_DSN": "postgresql://dialguard:pw@127.0.0.1:5432/dialguard"}
    one, two = (load_settings(env={**instance_environment(i), **server}) for i in ("1", "2"))
    assert one.agi.reuse_port and two.agi.reuse_port and one.agi.port == two.agi.port == 4573
    assert (one.http.port, two.http.port) == (8081, 8082) and not one.http.reuse_port
    assert (one.gate.writer, two.gate.writer) == ("pbx1-1", "pbx1-2")
    # The shipped env file (Compose's) names a server too; without any, the embedded one is refused.
    assert load_settings(
        env={**instance_environment("1"), **env_file(ROOT / "deploy" / "dialguard.env.example")}
    )
    with pytest.raises(ConfigError, match=r"database\.dsn"):
        load_settings(env=instance_environment("1"))
