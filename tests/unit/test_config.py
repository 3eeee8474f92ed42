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


def test_the_admin_pool_is_small_by_default_and_set_like_any_key(tmp_path: Path) -> None:
    """Imports, scrubs and the admin API have a pool of their own (issue 10, item 12)."""
    defaults = load_settings(env={}).database
    assert defaults.admin_pool_size == 2 and defaults.admin_acquire_timeout == 2.0
    cfg = tmp_path / "c.toml"
    cfg.write_text("[database]\nadmin_pool_size = 3\n")
    s = load_settings(cfg, env={"DIALGUARD_DATABASE_ADMIN_ACQUIRE_TIMEOUT": "0.5"}).database
    assert s.admin_pool_size == 3 and s.admin_acquire_timeout == 0.5


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DIALGUARD_DATABASE_ADMIN_POOL_SIZE": "0"}, "database.admin_pool_size: must be at least 1"),
        ({"DIALGUARD_DATABASE_ADMIN_POOL_SIZE": "two"}, "database.admin_pool_size: bad value"),
        ({"DIALGUARD_DATABASE_ADMIN_ACQUIRE_TIMEOUT": "0"}, "database.admin_acquire_timeout: must be more"),
    ],
)
def test_a_bad_admin_pool_setting_names_the_key(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env)


def test_the_data_directory_is_absolute_and_the_journal_lives_in_it(tmp_path: Path) -> None:
    """Issue 11: a relative ./data made `cd ~ && dialguard ...` start a second, empty database."""
    settings = load_settings(env={"XDG_DATA_HOME": str(tmp_path)})
    assert settings.database.data_dir == tmp_path / "dialguard"
    assert settings.calls.journal_path == tmp_path / "dialguard" / "optout-journal.jsonl"
    chosen = load_settings(env={"DIALGUARD_DATABASE_DATA_DIR": "/var/lib/dialguard"})
    assert chosen.calls.journal_path == Path("/var/lib/dialguard/optout-journal.jsonl")
    elsewhere = load_settings(env={"DIALGUARD_CALLS_JOURNAL_PATH": "/srv/journal.jsonl"})
    assert elsewhere.calls.journal_path == Path("/srv/journal.jsonl")


def test_the_decision_journal_lives_beside_the_opt_out_journal(tmp_path: Path) -> None:
    settings = load_settings(env={"XDG_DATA_HOME": str(tmp_path)})
    assert settings.gate.journal_path == tmp_path / "dialguard" / "decision-journal.jsonl"
    moved = load_settings(env={"DIALGUARD_CALLS_JOURNAL_PATH": "/srv/optouts/journal.jsonl"})
    assert moved.gate.journal_path == Path("/srv/optouts/decision-journal.jsonl")
    chosen = load_settings(env={"DIALGUARD_GATE_JOURNAL_PATH": "/srv/decisions.jsonl"})
    assert chosen.gate.journal_path == Path("/srv/decisions.jsonl")


def test_a_region_phonenumbers_does_not_know_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"numbers.default_region: 'XX'"):
        load_settings(env={"DIALGUARD_NUMBERS_DEFAULT_REGION": "XX"})


def test_agi_backlog_defaults_high_and_is_configurable() -> None:
    # asyncio's default of 100 overflowed in a 600-call burst; the key makes it the admin's choice.
    assert load_settings(env={}).agi.backlog == 1024
    assert load_settings(env={"DIALGUARD_AGI_BACKLOG": "4096"}).agi.backlog == 4096
    with pytest.raises(ConfigError, match=r"agi\.backlog"):
        load_settings(env={"DIALGUARD_AGI_BACKLOG": "0"})


def test_the_token_cache_keeps_tokens_seconds_and_zero_turns_it_off(tmp_path: Path) -> None:
    assert load_settings(env={}).http.token_cache_seconds == 5.0
    cfg = tmp_path / "c.toml"
    cfg.write_text("[http]\ntoken_cache_seconds = 2.5\n")
    assert load_settings(cfg, env={}).http.token_cache_seconds == 2.5
    off = load_settings(cfg, env={"DIALGUARD_HTTP_TOKEN_CACHE_SECONDS": "0"})
    assert off.http.token_cache_seconds == 0


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "86400", "soon"])
def test_a_bad_token_cache_setting_names_the_key(value: str) -> None:
    with pytest.raises(ConfigError, match=r"http\.token_cache_seconds"):
        load_settings(env={"DIALGUARD_HTTP_TOKEN_CACHE_SECONDS": value})


def test_reuse_port_is_off_by_default_and_needs_a_server_of_its_own() -> None:
    assert not load_settings(env={}).agi.reuse_port and not load_settings(env={}).http.reuse_port
    dsn = {"DIALGUARD_DATABASE_DSN": "postgresql://dialguard@db/dialguard"}
    s = load_settings(env={**dsn, "DIALGUARD_AGI_REUSE_PORT": "yes", "DIALGUARD_HTTP_REUSE_PORT": "true"})
    assert s.agi.reuse_port and s.http.reuse_port
    with pytest.raises(ConfigError, match=r"agi\.reuse_port: bad value 'sometimes'"):
        load_settings(env={**dsn, "DIALGUARD_AGI_REUSE_PORT": "sometimes"})
    # The embedded PostgreSQL stops with the process that started it: refused, for either listener.
    for key in ("DIALGUARD_AGI_REUSE_PORT", "DIALGUARD_HTTP_REUSE_PORT"):
        with pytest.raises(ConfigError, match=r"database\.dsn"):
            load_settings(env={key: "1"})
