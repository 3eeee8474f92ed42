from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from dialguard.config import ConfigError, Secret, load_settings


def test_defaults_without_file_or_env() -> None:
    s = load_settings(env={})
    assert s.agi.host == "127.0.0.1" and s.agi.port == 4573
    assert s.http.port == 8080
    assert s.database.dsn is None


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "dialguard.toml"
    cfg.write_text('[agi]\nport = 5000\nhost = "0.0.0.0"\n[numbers]\ndefault_region = "PL"\n')
    env = {"DIALGUARD_AGI_PORT": "5001", "DIALGUARD_AGI_READ_TIMEOUT": "2.5"}
    s = load_settings(cfg, env=env, flags={"agi": {"port": 5002}})
    assert s.agi.port == 5002
    assert s.agi.host == "0.0.0.0"
    assert s.agi.read_timeout == 2.5
    assert s.numbers.default_region == "PL"


def test_config_path_from_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "x.toml"
    cfg.write_text("[http]\nport = 9090\n")
    assert load_settings(env={"DIALGUARD_CONFIG": str(cfg)}).http.port == 9090


def test_allow_list_from_env_is_parsed_as_networks() -> None:
    s = load_settings(env={"DIALGUARD_AGI_ALLOW": "10.0.0.0/8, 192.168.1.5"})
    assert s.agi.allow == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.1.5/32"))


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[agi]\nprot = 1\n", {}, "unknown key 'agi.prot'"),
        ("[agii]\nport = 1\n", {}, "unknown section [agii]"),
        ("[agi]\nport = 'x'\n", {}, "agi.port: bad value"),
        ("[agi]\nport = 70000\n", {}, "agi.port: 70000 is not a TCP port"),
        ("", {"DIALGUARD_AGI_PORTT": "1"}, "unknown key 'agi.portt'"),
        ("", {"DIALGUARD_AGI_ALLOW": "not-a-net"}, "agi.allow: bad value"),
        ("", {"DIALGUARD_NUMBERS_DEFAULT_REGION": "Poland"}, "numbers.default_region"),
        ("[agi\n", {}, "not valid TOML"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_settings(cfg, env=env)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", env={})


def test_secrets_never_show() -> None:
    s = load_settings(
        env={"DIALGUARD_AMI_SECRET": "hunter2", "DIALGUARD_DATABASE_DSN": "postgresql://u:pw@h/db"}
    )
    assert isinstance(s.ami.secret, Secret) and s.ami.secret.value == "hunter2"
    shown = repr(s) + str(s.ami.secret)
    assert "hunter2" not in shown and "pw@" not in shown


def test_foreign_dialguard_variables_are_ignored() -> None:
    assert load_settings(env={"DIALGUARD_TEST_DSN": "postgresql://x"}).database.dsn is None


def test_agi_backlog_defaults_high_and_is_configurable() -> None:
    # asyncio's default of 100 overflowed in a 600-call burst; the key makes it the admin's choice.
    assert load_settings(env={}).agi.backlog == 1024
    assert load_settings(env={"DIALGUARD_AGI_BACKLOG": "4096"}).agi.backlog == 4096
    with pytest.raises(ConfigError, match=r"agi\.backlog"):
        load_settings(env={"DIALGUARD_AGI_BACKLOG": "0"})
