"""Typed settings: defaults < TOML file < DIALGUARD_<SECTION>_<KEY> environment < command-line flags.

Validated once at start: an unknown key or a bad value stops start-up with a message naming the key.
Secrets are wrapped so that neither ``repr`` nor a log line can show them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

import phonenumbers

ENV_PREFIX = "DIALGUARD_"
CONFIG_ENV = "DIALGUARD_CONFIG"

# The loop watchdog's shortest limit: two of the loop's half-second heartbeats.
MIN_LOOP_STALL_LIMIT = 1.0

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and what is wrong."""


def default_data_dir(env: Mapping[str, str]) -> Path:
    """Where the embedded database and the journal live unless configured: the user's data directory
    (``$XDG_DATA_HOME/dialguard``, else ``~/.local/share/dialguard``); a service sets its own
    (``/var/lib/dialguard``, systemd's StateDirectory)."""
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "dialguard"


@dataclass(frozen=True, slots=True)
class Secret:
    """A string that never shows itself: repr and str print stars."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    dsn: Secret | None = None  # none: the embedded PostgreSQL in data_dir
    # The role that owns the schema: migrations run as it, and it grants dsn's role only what a gateway
    # needs (store/roles.py), so that dsn's credentials cannot rewrite history. None with a dsn: one role
    # for both (a warning at start and in /healthz); the embedded server separates them by itself.
    owner_dsn: Secret | None = None
    # Absolute, whatever the current directory: every command finds the gateway's own state.
    data_dir: Path = field(default_factory=lambda: default_data_dir(os.environ))
    pool_size: int = 10  # the call path: FastAGI checks and POST /v1/checks
    command_timeout: float = 5.0
    # Imports, scrubs and the admin API have a pool of their own, so they never hold a connection the
    # call path needs; an admin request that gets none within admin_acquire_timeout answers 503.
    admin_pool_size: int = 2
    admin_acquire_timeout: float = 2.0


@dataclass(frozen=True, slots=True)
class AgiSettings:
    host: str = "127.0.0.1"
    port: int = 4573
    # FastAGI has no authentication in its protocol: only these peers may connect.
    allow: tuple[IPNetwork, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    read_timeout: float = 5.0  # seconds for each answer from Asterisk
    session_timeout: float = 120.0  # the longest any session lives (a notice and its prompts)
    check_lifetime: float = 10.0  # the longest a check session lives: facts, decision, variables
    max_sessions: int = 0  # sessions at once (0: what the open-file limit allows, at most 2000)
    max_line_bytes: int = 8192
    # Listen backlog: connections the kernel holds until accepted (capped by net.core.somaxconn).
    backlog: int = 1024
    # SO_REUSEPORT: several `dialguard serve` processes (same user) listen on this one port and the kernel
    # shares the connections among them, to use more cores. Every one of them must set it; needs
    # database.dsn (README, "Several gateway processes on one port").
    reuse_port: bool = False


@dataclass(frozen=True, slots=True)
class HttpSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    # The same for HTTP; off, each process keeps an HTTP port of its own (its /metrics are its own).
    reuse_port: bool = False
    max_body_bytes: int = 64 * 1024 * 1024
    # Seconds a looked-up API token is kept (0: looked up on every request). A revocation reaches every
    # gateway by NOTIFY at once; this bounds it should a gateway's LISTEN link die unnoticed.
    token_cache_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class AmiSettings:
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "dialguard"
    secret: Secret | None = None  # none: no AMI link (no timelines, POST /v1/calls answers 503)
    action_timeout: float = 5.0  # seconds Asterisk has to answer an action
    ping_interval: float = 10.0  # a Ping this often finds a half-open link
    ping_timeout: float = 5.0
    # Where POST /v1/calls places a call: {e164} is +15551234567, {digits} the same without the +.
    originate_channel: str = "PJSIP/{e164}@trunk"
    originate_context: str = "dialguard-originate"
    ring_seconds: int = 20  # TSR and Ofcom: let it ring at least 15 s (or four rings)
    caller_id: str = ""  # e.g. "Acme Sales" <+15550100>; empty: the trunk's


@dataclass(frozen=True, slots=True)
class NumbersSettings:
    default_region: str = "US"
    dial_prefix: str = "9"  # the PBX's outside-line digit, stripped when the number needs it gone


@dataclass(frozen=True, slots=True)
class CampaignsSettings:
    default: str = "default"  # used when a check names no campaign
    default_purpose: str = "marketing"  # purpose of the default campaign when it is first created


@dataclass(frozen=True, slots=True)
class GateSettings:
    fact_timeout: float = 2.0  # reading the facts of one call; past it the call is blocked
    writer: str = ""  # name of this gateway in the decision chain; empty: hostname and pid
    # Seconds the event loop may go without running before the gateway ends itself (exit 70), so that
    # Asterisk's AGI() fails at once rather than waiting on a stalled gateway; 0 turns the watchdog off.
    loop_stall_limit: float = 3.0
    # The event loop `serve` runs on: uvloop (libuv; a check's p99 at N = 200 was 1.4-2.0x a bare FastAGI
    # lookup's, against 2.4-3.5x on asyncio's own, docs/benchmarks.md), or asyncio's own loop.
    event_loop: str = "uvloop"
    # The seal key signs every checkpoint (HMAC), outside the database's reach: hex, 32 bytes or more
    # (openssl rand -hex 32). Unset: the key in seal_key_file, made (mode 0600) by serve's first start.
    # Gateways sharing a database share the key.
    seal_key: Secret | None = None
    seal_key_file: Path = Path("seal.key")  # relative: under database.data_dir
    # Every checkpoint's header is appended here once committed: a truncated or rewritten log shows.
    seal_anchor: Path = Path("seal-anchor.jsonl")  # relative: under database.data_dir
    # Decisions the database could not take (checks blocked while it is away) wait here, fsynced, and are
    # stored when it returns; a relative path is beside the opt-out journal (calls.journal_path).
    journal_path: Path = Path("decision-journal.jsonl")


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "INFO"
    format: str = "text"  # text, or json: one object a line for log shippers
    mask_numbers: bool = True  # numbers in log lines keep 5 leading and 2 trailing digits


@dataclass(frozen=True, slots=True)
class RulesSettings:
    pack_dir: Path | None = None  # none: the packs shipped with dialguard
    shadow_pack_dir: Path | None = None  # candidate packs evaluated beside the enforced ones
    # Free-form administrator overrides, validated by the rule loader (see docs/rules.md).
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallsSettings:
    optout_digit: str = "9"  # the key that stops all further calls (a campaign may set its own)
    listen_after_ms: int = 5000  # how long the opt-out stays armed after the notice ends
    sound_prefix: str = "dialguard"  # prompts are <prefix>/<lang>/dialguard-*.wav under Asterisk's sounds
    # Opt-outs wait here while the database is down; a relative path is under database.data_dir.
    journal_path: Path = Path("optout-journal.jsonl")
    # The gateway's own copy of the prompts (as copied for Asterisk): the evidence of what a callee heard
    # (its words and the audio's SHA-256) is read from it. Unreadable: the evidence says so.
    sounds_dir: Path | None = Path("/var/lib/asterisk/sounds/dialguard")
    decision_max_age: float = 600.0  # seconds after its check that an answered call may still use a decision


@dataclass(frozen=True, slots=True)
class HlrSettings:
    provider: str = "none"  # none | http | file
    url: str = ""  # http: e.g. https://hlr.example.com/v1/lookup?msisdn={digits} ({e164} keeps the +)
    method: str = "GET"  # http: GET, or POST with {"number": E164}
    auth_header: str = ""  # http: e.g. Authorization or X-Api-Key
    auth_value: Secret | None = None  # http: e.g. "Bearer abc..." (never logged)
    # http: where our fields are in the vendor's JSON answer, as dotted paths.
    mapping: dict[str, Any] = field(
        default_factory=lambda: {"roaming": "roaming", "visited_country": "country"}
    )
    file: Path | None = None  # file: CSV of number,status,visited_country
    cache_ttl: float = 3600.0  # seconds an answer is reused (roaming changes)
    deadline: float = 0.8  # seconds a look-up may take; past it the answer is unknown
    concurrency: int = 20  # look-ups in flight at once
    breaker_failures: int = 5  # failures in a row that open the circuit breaker
    breaker_reset: float = 30.0  # seconds before a trial look-up


@dataclass(frozen=True, slots=True)
class Settings:
    database: DatabaseSettings = DatabaseSettings()
    agi: AgiSettings = AgiSettings()
    http: HttpSettings = HttpSettings()
    ami: AmiSettings = AmiSettings()
    numbers: NumbersSettings = NumbersSettings()
    campaigns: CampaignsSettings = CampaignsSettings()
    gate: GateSettings = GateSettings()
    log: LogSettings = LogSettings()
    rules: RulesSettings = RulesSettings()
    hlr: HlrSettings = HlrSettings()
    calls: CallsSettings = CallsSettings()


_SECTIONS: dict[str, Any] = get_type_hints(Settings)


def _coerce(key: str, hint: Any, raw: Any) -> Any:
    """Turn a TOML value or an environment string into the field's type, or say why not."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        if raw is None or raw == "":
            return None
        return _coerce(key, options[0], raw)
    try:
        if hint is Secret:
            return Secret(str(raw))
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if hint is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError("expected a whole number")
            return int(raw)
        if hint is float:
            if isinstance(raw, bool):
                raise ValueError("expected a number")
            return float(raw)
        if hint is str:
            if not isinstance(raw, str | int):
                raise ValueError("expected text")
            return str(raw)
        if hint is Path:
            return Path(str(raw)).expanduser()
        if origin is tuple:
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(ipaddress.ip_network(str(i).strip(), strict=False) for i in items if str(i).strip())
        if origin is dict:
            if not isinstance(raw, dict):
                raise ValueError("expected a table")
            return raw
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{key}: bad value {_show(key, raw)}: {exc}") from None
    raise ConfigError(f"{key}: unsupported setting type {hint!r}")  # a programming error, caught by tests


def _show(key: str, raw: Any) -> str:
    secret_words = ("secret", "password", "dsn", "key", "token")
    return "(hidden)" if any(w in key for w in secret_words) else repr(raw)


def _apply(section_name: str, current: Any, values: Mapping[str, Any], origin: str) -> Any:
    hints = get_type_hints(type(current))
    changes: dict[str, Any] = {}
    for key, raw in values.items():
        dotted = f"{section_name}.{key}"
        if key not in hints:
            known = ", ".join(sorted(hints))
            raise ConfigError(f"{origin}: unknown key {dotted!r} (known keys in [{section_name}]: {known})")
        changes[key] = _coerce(dotted, hints[key], raw)
    return dataclasses.replace(current, **changes)


def _from_env(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        for section in _SECTIONS:
            if rest.startswith(section + "_"):
                out.setdefault(section, {})[rest[len(section) + 1 :]] = value
                break
        # Variables of no known section (e.g. DIALGUARD_TEST_DSN, read by the tests) are not ours.
    return out


def load_settings(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Build the settings; ``path`` falls back to $DIALGUARD_CONFIG, and no file at all is fine."""
    env = os.environ if env is None else env
    settings = Settings(database=DatabaseSettings(data_dir=default_data_dir(env)))
    if path is None and env.get(CONFIG_ENV):
        path = Path(env[CONFIG_ENV])
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if path is not None:
        try:
            with path.open("rb") as fh:
                layers.append((str(path), tomllib.load(fh)))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    layers.append(("environment", _from_env(env)))
    layers.append(("command line", flags or {}))
    for origin, data in layers:
        for section_name, values in data.items():
            if section_name not in _SECTIONS:
                raise ConfigError(
                    f"{origin}: unknown section [{section_name}] (known: {', '.join(_SECTIONS)})"
                )
            if not isinstance(values, Mapping):
                raise ConfigError(f"{origin}: [{section_name}] must be a table of keys")
            current = getattr(settings, section_name)
            settings = dataclasses.replace(
                settings, **{section_name: _apply(section_name, current, values, origin)}
            )
    _validate(settings)
    return _absolute(settings)


def _absolute(s: Settings) -> Settings:
    """Paths made absolute once, at load: a relative data_dir against the current directory (said once
    here, not re-read per command), the opt-out journal under data_dir, the decision journal beside it
    (one place for what waits for the database; tests that move one move both)."""
    data_dir = s.database.data_dir.expanduser().absolute()

    def under_data_dir(path: Path) -> Path:
        path = path.expanduser()
        return path if path.is_absolute() else data_dir / path

    gate = s.gate
    journal = under_data_dir(s.calls.journal_path)
    decisions = gate.journal_path.expanduser()
    decisions = decisions if decisions.is_absolute() else journal.parent / decisions
    seal_key_file, seal_anchor = under_data_dir(gate.seal_key_file), under_data_dir(gate.seal_anchor)
    return dataclasses.replace(
        s,
        database=dataclasses.replace(s.database, data_dir=data_dir),
        calls=dataclasses.replace(s.calls, journal_path=journal),
        gate=dataclasses.replace(
            gate, seal_key_file=seal_key_file, seal_anchor=seal_anchor, journal_path=decisions
        ),
    )


def _is_seal_key(text: str) -> bool:
    try:
        return len(bytes.fromhex(text.strip())) >= 32
    except ValueError:
        return False


def _validate(s: Settings) -> None:
    for key, port in (("agi.port", s.agi.port), ("http.port", s.http.port), ("ami.port", s.ami.port)):
        if not 0 <= port <= 65535:
            raise ConfigError(f"{key}: {port} is not a TCP port (0-65535)")
    for key, seconds in (
        ("agi.read_timeout", s.agi.read_timeout),
        ("agi.session_timeout", s.agi.session_timeout),
        ("gate.fact_timeout", s.gate.fact_timeout),
        ("database.command_timeout", s.database.command_timeout),
        ("database.admin_acquire_timeout", s.database.admin_acquire_timeout),
    ):
        if seconds <= 0:
            raise ConfigError(f"{key}: must be more than 0 seconds, not {seconds}")
    if not 0 <= s.http.token_cache_seconds <= 3600:  # NaN too
        raise ConfigError(
            f"http.token_cache_seconds: 0 (no cache) to 3600 seconds, not {s.http.token_cache_seconds}"
        )
    for key, dsn in (("database.dsn", s.database.dsn), ("database.owner_dsn", s.database.owner_dsn)):
        if dsn is not None and urlsplit(dsn.value).scheme not in ("postgresql", "postgres"):
            # Never echo the value: it may hold a password.
            raise ConfigError(
                f"{key}: not a PostgreSQL DSN; write postgresql://USER:PASSWORD@HOST:5432/DBNAME "
                "(or leave it unset for the embedded PostgreSQL)"
            )
    if s.database.owner_dsn is not None and s.database.dsn is None:
        raise ConfigError(
            "database.owner_dsn is set but database.dsn is not: the embedded PostgreSQL keeps its own "
            "owner; set database.dsn to the gateway's role on the same server, or unset owner_dsn"
        )
    if s.gate.seal_key is not None and not _is_seal_key(s.gate.seal_key.value):
        # Never echo the value: it is the key.
        raise ConfigError("gate.seal_key: hex digits for 32 bytes or more (openssl rand -hex 32)")
    if s.gate.event_loop not in ("uvloop", "asyncio"):
        raise ConfigError(f"gate.event_loop: {s.gate.event_loop!r} is not uvloop or asyncio")
    if s.log.format not in ("text", "json"):
        raise ConfigError(f"log.format: {s.log.format!r} is not text or json")
    if s.log.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"log.level: {s.log.level!r} is not DEBUG, INFO, WARNING, ERROR or CRITICAL")
    if not (s.gate.loop_stall_limit == 0 or s.gate.loop_stall_limit >= MIN_LOOP_STALL_LIMIT):  # NaN too
        raise ConfigError(
            f"gate.loop_stall_limit: at least {MIN_LOOP_STALL_LIMIT:g} seconds (the loop beats every "
            f"half second), or 0 to turn the loop watchdog off; not {s.gate.loop_stall_limit}"
        )
    if s.agi.check_lifetime <= 0 or s.agi.max_sessions < 0:
        raise ConfigError("agi.check_lifetime must be more than 0 seconds, agi.max_sessions 0 (auto) or more")
    for key, seconds in (
        ("ami.action_timeout", s.ami.action_timeout),
        ("ami.ping_interval", s.ami.ping_interval),
        ("ami.ping_timeout", s.ami.ping_timeout),
    ):
        if not seconds > 0:
            raise ConfigError(f"{key}: must be more than 0 seconds, not {seconds}")
    if not 15 <= s.ami.ring_seconds <= 300:
        raise ConfigError(
            f"ami.ring_seconds: {s.ami.ring_seconds} is not 15-300 (the TSR and Ofcom ask for at least 15 s)"
        )
    if not ("{e164}" in s.ami.originate_channel or "{digits}" in s.ami.originate_channel):
        raise ConfigError(
            "ami.originate_channel: must name the number as {e164} or {digits}, e.g. PJSIP/{e164}@trunk"
        )
    try:
        s.ami.originate_channel.format(e164="+1", digits="1")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"ami.originate_channel: only {{e164}} and {{digits}} may be named ({exc})"
        ) from None
    if any(c in f"{s.ami.originate_channel}{s.ami.originate_context}{s.ami.caller_id}" for c in "\r\n"):
        raise ConfigError("ami.originate_channel, originate_context and caller_id: one line each")
    if (s.agi.reuse_port or s.http.reuse_port) and s.database.dsn is None:
        # The embedded server is started by whichever process comes first and is stopped with it (a
        # systemd instance takes its own cgroup down): every other process would lose its database.
        raise ConfigError(
            "agi.reuse_port and http.reuse_port: several processes on one port need a PostgreSQL server "
            "of their own (database.dsn, DIALGUARD_DATABASE_DSN), not the embedded one"
        )
    if s.agi.backlog < 1:
        raise ConfigError("agi.backlog: must be at least 1")
    if s.database.pool_size < 1:
        raise ConfigError("database.pool_size: must be at least 1")
    if s.database.admin_pool_size < 1:
        raise ConfigError("database.admin_pool_size: must be at least 1")
    if s.numbers.default_region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(
            f"numbers.default_region: {s.numbers.default_region!r} is not a two-letter country code"
        )
    if not s.numbers.dial_prefix.isdigit() and s.numbers.dial_prefix != "":
        raise ConfigError("numbers.dial_prefix: digits only, or empty to disable")
    purposes = ("marketing", "informational", "debt_collection", "survey")
    if s.campaigns.default_purpose not in purposes:
        raise ConfigError(f"campaigns.default_purpose: one of {', '.join(purposes)}")
    if s.log.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("log.level: one of DEBUG, INFO, WARNING, ERROR")
