"""Configuration from environment variables, with embedded defaults.

With nothing set, ZensCall runs on one machine with nothing installed beyond Python:
a SQLite file, an embedded Redis server and the FreeSWITCH simulator, all under
``VAR_DIR``. Production sets ``ZC_ENV=production`` and points the variables at
MariaDB, Redis and a real FreeSWITCH; it then refuses development secrets.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class ConfigError(RuntimeError):
    """The environment cannot run ZensCall (e.g. production without secrets)."""


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def _int(name: str, default: int) -> int:
    raw = _env(name, str(default))
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _float(name: str, default: float) -> float:
    raw = _env(name, str(default))
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def secret_from_env(name: str) -> str:
    """A secret from ``NAME`` or from the file named by ``NAME_FILE`` (a Docker or systemd
    credential), never from a command line, where ``ps`` shows it. Both set is an error."""
    value = os.environ.get(name, "")
    file_name = os.environ.get(f"{name}_FILE", "")
    if value and file_name:
        raise ConfigError(f"set {name} or {name}_FILE, not both")
    if not file_name:
        return value
    try:
        return Path(file_name).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{name}_FILE: cannot read {file_name}: {exc.strerror}") from None


PLACEHOLDER = "change-me"  # what .env.example ships; refused wherever a real secret is needed
DASHBOARD_MIN_PASSWORD = 16


@dataclass(frozen=True)
class DashboardSettings:
    """rq-dashboard's settings (``python -m dashboard``): it can requeue and delete any job."""

    username: str
    password: str
    bind: str
    port: int
    redis_url: str


def load_dashboard_settings() -> DashboardSettings:
    """``DASHBOARD_USER`` (admin), ``DASHBOARD_PASSWORD`` or ``DASHBOARD_PASSWORD_FILE``,
    ``DASHBOARD_BIND`` (127.0.0.1), ``DASHBOARD_PORT`` (9181), ``REDIS_URL``.

    Refuses, in every environment, an empty password, the ``change-me`` placeholder and
    a password shorter than 16 characters: the dashboard can requeue and delete jobs."""
    username = _env("DASHBOARD_USER", "admin")
    password = secret_from_env("DASHBOARD_PASSWORD")
    if not password:
        raise ConfigError("DASHBOARD_PASSWORD (or DASHBOARD_PASSWORD_FILE) is required: "
                          "the dashboard can requeue and delete jobs")
    if PLACEHOLDER in password.lower():
        raise ConfigError("DASHBOARD_PASSWORD still holds the placeholder from .env.example")
    if len(password) < DASHBOARD_MIN_PASSWORD:
        raise ConfigError(f"DASHBOARD_PASSWORD must be at least {DASHBOARD_MIN_PASSWORD} characters")
    if ":" in username or not username.isprintable():
        raise ConfigError("DASHBOARD_USER must be printable and must not contain ':'")
    redis_url = os.environ.get("REDIS_URL", "")
    if not redis_url:
        raise ConfigError("REDIS_URL is required: the dashboard shows the queues of that Redis")
    return DashboardSettings(username=username, password=password, bind=_env("DASHBOARD_BIND", "127.0.0.1"),
                             port=_int("DASHBOARD_PORT", 9181), redis_url=redis_url)


def _dev_secret(var_dir: Path, name: str) -> str:
    """A development secret generated once and kept under VAR_DIR.

    Keeping it on disk lets the web, worker and dialer processes of the embedded
    stack agree on it, and keeps tokens valid across restarts.
    """
    path = var_dir / f"{name}.secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        var_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(48)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(value)
        os.replace(tmp, path)
        return path.read_text().strip()


@dataclass(frozen=True)
class Settings:
    env: str
    var_dir: Path
    database_url: str
    redis_url: str | None  # None: start the embedded Redis
    audio_dir: Path
    secret_key: str
    jwt_secret_key: str
    jwt_access_minutes: int
    jwt_refresh_days: int
    # request and upload limits
    max_request_bytes: int
    max_audio_bytes: int
    max_audio_seconds: float
    max_csv_bytes: int
    max_csv_rows: int
    max_csv_lines: int  # physical lines, blank ones included
    # rate limits ("100 per minute", several separated by ";")
    ratelimit_default: str
    ratelimit_create: str
    ratelimit_login: str
    # uploads (audio, campaign CSVs, do-not-call lists): per API key, and per account whatever key sends them
    ratelimit_upload: str
    ratelimit_enabled: bool
    # money defaults for new accounts
    default_rate_per_minute: Decimal
    default_pulse_seconds: int
    default_max_concurrent_calls: int
    # calls
    default_max_retries: int
    default_retry_delay_seconds: int
    # FreeSWITCH and the dialer
    fs_host: str
    fs_port: int
    fs_password: str
    fs_dial_template: str
    fs_audio_dir: str  # the audio directory as FreeSWITCH sees it
    fs_caller_id: str
    fs_originate_timeout: int
    fs_command_timeout: float
    node_max_channels: int
    gateway_cps: float
    dialer_node: str
    dialer_queue: str
    dialer_sweep_seconds: float
    cap_lease_seconds: int
    extra: dict[str, str] = field(default_factory=dict)
    # operations: readiness, metrics, CORS
    ready_require_dialer: bool = True  # /ready fails without a live, ESL-connected dialer
    ready_check_timeout: float = 2.0  # seconds per readiness check
    metrics_token: str = ""  # bearer token for /metrics; empty: open (bind it locally)
    cors_origins: tuple[str, ...] = ()  # empty: no CORS headers at all
    # the switch's own call records (mod_json_cdr's log-dir), read by the dialer after blindness
    fs_event_format: str = "plain"  # how the switch sends events: plain or json
    cdr_dir: str = ""  # empty: none (an attempt the switch no longer has ends OUTCOME_UNKNOWN)
    cdr_wait_seconds: float = 60.0  # how long a gone attempt waits for its record
    # a dialer process whose SQL heartbeat is older than this is gone: its attempts are adopted
    dialer_owner_stale_seconds: float = 30.0
    # a campaign IMPORTING this long with no live import gets its job enqueued again (by the worker)
    import_stall_seconds: int = 120
    # proxies in front of the web process whose X-Forwarded-For / -Proto are believed; 0: none
    trusted_proxies: int = 0
    # audio uploads: decoded work, what a web request may spend converting
    max_audio_samples: int = 300 * 48_000 * 2  # sample rate x channels x seconds (300 s of 48 kHz stereo)
    audio_inline_cpu_ms: int = 100  # 0: every upload is converted by the worker
    max_pending_imports: int = 3  # an account's CSV imports (campaigns and DNC lists) queued or running
    # SQL connections of one web process; requests beyond them wait for one (none opened and closed)
    db_pool_size: int = 20
    # how long a web process trusts an API key it verified (revocation reaches it within this); 0: never
    api_key_cache_seconds: float = 5.0
    # webhooks: see the README's "Webhooks"
    webhook_allow_private: bool = False  # true: http and private/loopback addresses allowed (development, tests)
    webhook_timeout_seconds: float = 10.0  # one delivery's HTTP request
    webhook_backoff_base_seconds: float = 30.0  # first retry delay; doubled per attempt, with jitter
    webhook_backoff_max_seconds: float = 3600.0
    webhook_retry_hours: float = 24.0  # a send failing this long is FAILED
    webhook_disable_after_hours: float = 72.0  # an endpoint failing this long is disabled
    webhook_sweep_seconds: float = 1.0  # the sweeper's period
    webhook_lease_seconds: float = 300.0  # a send whose job did not report within this is enqueued again
    webhook_endpoint_concurrency: int = 4  # sends of one receiver queued or running at once
    webhook_order_wait_seconds: float = 600.0  # a call's event waits at most this for an earlier one
    webhook_queue: str = "webhooks"
    # a console sign-in lasts this long (sign-out and a password change end it before)
    console_session_hours: int = 12

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings() -> Settings:
    """Read the environment once; raise ConfigError on unusable production settings."""
    env = _env("ZC_ENV", "development")
    var_dir = Path(_env("VAR_DIR", str(ROOT / "var"))).resolve()
    production = env == "production"

    def secret(name: str) -> str:
        value = secret_from_env(name)
        if value:
            if production and len(value) < 32:
                raise ConfigError(f"{name} must be at least 32 characters in production")
            refuse_placeholder(name, value)
            return value
        if production:
            raise ConfigError(f"{name} is required in production")
        return _dev_secret(var_dir, name.lower())

    def refuse_placeholder(name: str, value: str) -> None:
        # the values shipped in .env.example must be replaced before going live
        if production and PLACEHOLDER in value.lower():
            raise ConfigError(f"{name} still holds the placeholder from .env.example")

    fs_password = secret_from_env("FS_PASSWORD") or "ClueCon"
    if production and fs_password == "ClueCon":
        raise ConfigError("FS_PASSWORD must not be FreeSWITCH's default password in production")
    if production and len(fs_password) < 12:
        raise ConfigError("FS_PASSWORD must be at least 12 characters in production")
    refuse_placeholder("FS_PASSWORD", fs_password)
    metrics_token = secret_from_env("METRICS_TOKEN")
    if production and not metrics_token:
        raise ConfigError("METRICS_TOKEN is required in production: /metrics counts every tenant's calls "
                          "and /ready's details are for operators only")
    if production and len(metrics_token) < 16:
        raise ConfigError("METRICS_TOKEN must be at least 16 characters in production")
    refuse_placeholder("METRICS_TOKEN", metrics_token)

    trusted_proxies = _int("TRUSTED_PROXIES", 0)
    if trusted_proxies < 0:
        raise ConfigError(f"TRUSTED_PROXIES must be 0 or more (proxy hops), got {trusted_proxies}")

    database_url = _env("DATABASE_URL", f"sqlite:///{var_dir / 'zenscall.db'}")
    redis_url = os.environ.get("REDIS_URL") or None
    if production and (database_url.startswith("sqlite") or redis_url is None):
        raise ConfigError("production needs DATABASE_URL (MariaDB/MySQL) and REDIS_URL")

    audio_dir = Path(_env("AUDIO_DIR", str(var_dir / "audio"))).resolve()
    max_csv_rows = _int("MAX_CSV_ROWS", 1_000_000)
    return Settings(
        env=env,
        var_dir=var_dir,
        database_url=database_url,
        redis_url=redis_url,
        audio_dir=audio_dir,
        secret_key=secret("SECRET_KEY"),
        jwt_secret_key=secret("JWT_SECRET_KEY"),
        jwt_access_minutes=_int("JWT_ACCESS_MINUTES", 15),
        jwt_refresh_days=_int("JWT_REFRESH_DAYS", 30),
        max_request_bytes=_int("MAX_REQUEST_BYTES", 110 * 1024 * 1024),
        max_audio_bytes=_int("MAX_AUDIO_BYTES", 20 * 1024 * 1024),
        max_audio_seconds=_float("MAX_AUDIO_SECONDS", 300.0),
        max_csv_bytes=_int("MAX_CSV_BYTES", 100 * 1024 * 1024),
        max_csv_rows=max_csv_rows,
        max_csv_lines=_int("MAX_CSV_LINES", 2 * max_csv_rows + 1000),
        ratelimit_default=_env("RATELIMIT_DEFAULT", "100 per minute"),
        ratelimit_create=_env("RATELIMIT_CREATE", "10 per minute"),
        ratelimit_login=_env("RATELIMIT_LOGIN", "10 per minute"),
        ratelimit_upload=_env("RATELIMIT_UPLOAD", "10 per minute"),
        ratelimit_enabled=_env("RATELIMIT_ENABLED", "true").lower() not in ("0", "false", "no"),
        default_rate_per_minute=Decimal(_env("DEFAULT_RATE_PER_MINUTE", "2.50")),
        default_pulse_seconds=_int("DEFAULT_PULSE_SECONDS", 30),
        default_max_concurrent_calls=_int("DEFAULT_MAX_CONCURRENT_CALLS", 50),
        default_max_retries=_int("DEFAULT_MAX_RETRIES", 2),
        default_retry_delay_seconds=_int("DEFAULT_RETRY_DELAY_SECONDS", 300),
        fs_host=_env("FS_HOST", "127.0.0.1"),
        fs_port=_int("FS_PORT", 8021),
        fs_password=fs_password,
        fs_dial_template=_env("FS_DIAL_TEMPLATE", "sofia/gateway/carrier/{number}"),
        fs_audio_dir=_env("FS_AUDIO_DIR", str(audio_dir)),
        fs_caller_id=_env("FS_CALLER_ID", "0000000000"),
        fs_originate_timeout=_int("FS_ORIGINATE_TIMEOUT", 45),
        fs_command_timeout=_float("FS_COMMAND_TIMEOUT", 5.0),
        node_max_channels=_int("NODE_MAX_CHANNELS", 200),
        gateway_cps=_float("GATEWAY_CPS", 20.0),
        dialer_node=_env("DIALER_NODE", "fs1"),
        dialer_queue=_env("DIALER_QUEUE", "dialer"),
        dialer_sweep_seconds=_float("DIALER_SWEEP_SECONDS", 1.0),
        cap_lease_seconds=_int("CAP_LEASE_SECONDS", 120),
        ready_require_dialer=_env("READY_REQUIRE_DIALER", "true").lower() not in ("0", "false", "no"),
        ready_check_timeout=_float("READY_CHECK_TIMEOUT", 2.0),
        metrics_token=metrics_token,
        cors_origins=tuple(o.strip() for o in os.environ.get("CORS_ORIGINS", "").split(",") if o.strip()),
        fs_event_format=_env("FS_EVENT_FORMAT", "plain"),
        cdr_dir=_env("CDR_DIR", str(var_dir / "cdr")),
        cdr_wait_seconds=_float("CDR_WAIT_SECONDS", 60.0),
        dialer_owner_stale_seconds=_float("DIALER_OWNER_STALE_SECONDS", 30.0),
        import_stall_seconds=_int("IMPORT_STALL_SECONDS", 120),
        trusted_proxies=trusted_proxies,
        max_audio_samples=_int("MAX_AUDIO_SAMPLES", 300 * 48_000 * 2),
        audio_inline_cpu_ms=_int("AUDIO_INLINE_CPU_MS", 100),
        max_pending_imports=_int("MAX_PENDING_IMPORTS", 3),
        db_pool_size=_int("DB_POOL_SIZE", 20),
        api_key_cache_seconds=_float("API_KEY_CACHE_SECONDS", 5.0),
        webhook_allow_private=_env("WEBHOOK_ALLOW_PRIVATE", "false").lower() in ("1", "true", "yes"),
        webhook_timeout_seconds=_float("WEBHOOK_TIMEOUT_SECONDS", 10.0),
        webhook_backoff_base_seconds=_float("WEBHOOK_BACKOFF_BASE_SECONDS", 30.0),
        webhook_backoff_max_seconds=_float("WEBHOOK_BACKOFF_MAX_SECONDS", 3600.0),
        webhook_retry_hours=_float("WEBHOOK_RETRY_HOURS", 24.0),
        webhook_disable_after_hours=_float("WEBHOOK_DISABLE_AFTER_HOURS", 72.0),
        webhook_sweep_seconds=_float("WEBHOOK_SWEEP_SECONDS", 1.0),
        webhook_lease_seconds=_float("WEBHOOK_LEASE_SECONDS", 300.0),
        webhook_endpoint_concurrency=_int("WEBHOOK_ENDPOINT_CONCURRENCY", 4),
        webhook_order_wait_seconds=_float("WEBHOOK_ORDER_WAIT_SECONDS", 600.0),
        webhook_queue=_env("WEBHOOK_QUEUE", "webhooks"),
        console_session_hours=_int("CONSOLE_SESSION_HOURS", 12),
    )
