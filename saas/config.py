"""Configuration from the environment.

Every setting has a documented default that runs the embedded mode (SQLite file and
in-process jobs under ``instance/``). Production (``KAKEHASHI_ENV=production``) refuses
to start with SQLite, a missing or short ``SECRET_KEY``, or debug on.

| variable | default | meaning |
|---|---|---|
| ``KAKEHASHI_ENV`` | ``development`` | ``development`` or ``production`` |
| ``DATABASE_URL`` | ``sqlite:///instance/kakehashi.db`` | SQLAlchemy URL; ``postgres://`` and ``postgresql://`` use psycopg 3 |
| ``REDIS_URL`` | unset | set: jobs go to rq queues; unset: jobs run in-process (development only) |
| ``SECRET_KEY`` | generated into ``instance/secret_key`` (development only) | signs sessions and CSRF tokens |
| ``KAKEHASHI_DEBUG`` | ``0`` | Flask debug mode (development only) |
| ``KAKEHASHI_TRUSTED_PROXIES`` | ``0`` | how many reverse proxies set ``X-Forwarded-*`` in front of the app |
| ``JOB_QUEUE_PREFIX`` | empty | prefix of the rq queue names, to share one Redis between deployments |
| ``LOG_LEVEL`` | ``INFO`` | level of the JSON log on standard error |
| ``KEY_ENCRYPTION_KEY`` | generated into ``instance/key_encryption_key`` (development only) | 32 bytes, base64: encrypts the tenants' token-signing keys at rest |
| ``BRIDGE_ORIGINS`` | empty | more origins (comma-separated) whose pages may use the bridge agent, besides the service's own |
| ``BRIDGE_AGENT_PORTS`` | ``24817,24818,24819`` | loopback ports the login page tries, in order, to find the bridge agent |
| ``PUBLIC_URL`` | unset (development: the request's own address) | the service's address as users reach it, e.g. ``https://id.example.jp``; required in production: issuers, links in mail and SSF metadata are built from it, and requests for any other host are refused |
| ``ROW_CACHE_SECONDS`` | ``5`` in production, ``0`` otherwise | how long each process keeps a tenant (by slug), an API key (by hash), an OpenID client and the sandbox root generations it read: a change takes effect on other servers within this time (at once on the server that made it); going live is read afresh wherever something of the sandbox would be let through |
| ``BATCH_FLUSH_SECONDS`` | ``1`` (``0`` on SQLite) | the API request log and the login counters are written in batches this often by each process (``0``: each line in its own request's transaction) |
| ``KAKEHASHI_TRUSTED_HOSTS`` | empty | more host names (comma-separated) the service answers to besides ``PUBLIC_URL``'s, e.g. a load balancer's health check |
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENVIRONMENTS = ("development", "production")
MIN_SECRET_LENGTH = 32


class ConfigurationError(RuntimeError):
    """The configuration cannot run the service; the message says what to change."""


def load(instance_path: Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The Flask config: environment first, then ``overrides`` (tests, embedding)."""
    source: dict[str, Any] = {**os.environ, **(overrides or {})}
    env = str(source.get("KAKEHASHI_ENV") or "development")
    if env not in ENVIRONMENTS:
        raise ConfigurationError(
            f"KAKEHASHI_ENV must be one of {', '.join(ENVIRONMENTS)}, got {env!r}"
        )
    production = env == "production"
    database_url = normalise_database_url(
        str(source.get("DATABASE_URL") or f"sqlite:///{instance_path / 'kakehashi.db'}")
    )
    secret_key = source.get("SECRET_KEY") or None
    debug = _flag(source.get("KAKEHASHI_DEBUG"))
    public_url = str(source.get("PUBLIC_URL") or "").strip().rstrip("/")

    problems = []
    if production:
        if database_url.startswith("sqlite"):
            problems.append("DATABASE_URL points at SQLite; production needs PostgreSQL")
        if not secret_key:
            problems.append("SECRET_KEY is not set")
        elif len(str(secret_key)) < MIN_SECRET_LENGTH:
            problems.append(f"SECRET_KEY is shorter than {MIN_SECRET_LENGTH} characters")
        if debug:
            problems.append("KAKEHASHI_DEBUG is on")
        if not source.get("REDIS_URL"):
            problems.append("REDIS_URL is not set; production runs jobs on rq workers")
        if _key(source.get("KEY_ENCRYPTION_KEY")) is None:
            problems.append("KEY_ENCRYPTION_KEY is not 32 bytes of base64")
        if not source.get("MAIL_SMTP_URL"):
            problems.append("MAIL_SMTP_URL is not set; sign-up and invitations send mail")
        if not public_url:
            problems.append("PUBLIC_URL is not set; issuers and links in mail are built from it")
    if public_url:
        parsed = urlsplit(public_url)
        if parsed.scheme not in ("https", "http") or not parsed.hostname or parsed.path not in ("", "/") \
                or parsed.query or parsed.fragment or (production and parsed.scheme != "https"):
            problems.append(f"PUBLIC_URL must be {'an https' if production else 'an http(s)'} origin "
                            f"such as https://id.example.jp, not {public_url!r}")
    if problems:
        raise ConfigurationError(
            ("Kakehashi refuses to start in production: " if production else "Kakehashi cannot start: ") + "; ".join(problems) + "."
        )
    if not secret_key:
        secret_key = _instance_secret(instance_path)
    key_encryption_key = _key(source.get("KEY_ENCRYPTION_KEY"))
    if key_encryption_key is None:
        if source.get("KEY_ENCRYPTION_KEY"):
            raise ConfigurationError("KEY_ENCRYPTION_KEY must be 32 bytes, base64-encoded")
        key_encryption_key = bytes.fromhex(_instance_secret(instance_path, "key_encryption_key"))

    config: dict[str, Any] = {
        "KAKEHASHI_ENV": env,
        "DATABASE_URL": database_url,
        "REDIS_URL": source.get("REDIS_URL") or None,
        "SECRET_KEY": secret_key,
        "KEY_ENCRYPTION_KEY": key_encryption_key,
        "DEBUG": debug,
        "TRUSTED_PROXIES": int(source.get("KAKEHASHI_TRUSTED_PROXIES") or 0),
        "JOB_QUEUE_PREFIX": str(source.get("JOB_QUEUE_PREFIX") or ""),
        "LOG_LEVEL": str(source.get("LOG_LEVEL") or "INFO").upper(),
        "BRIDGE_ORIGINS": tuple(o.strip() for o in str(source.get("BRIDGE_ORIGINS") or "").split(",")
                                if o.strip()),
        "BRIDGE_AGENT_PORTS": _ports(source.get("BRIDGE_AGENT_PORTS") or "24817,24818,24819"),
        "MAIL_SMTP_URL": source.get("MAIL_SMTP_URL") or None,
        "MAIL_FROM": str(source.get("MAIL_FROM") or "Kakehashi <no-reply@kakehashi.example>"),
        "PUBLIC_URL": public_url,
        # With a public address, a request naming any other host is refused (400): nothing
        # built from the request's host (issuers, links, metadata) can be steered elsewhere.
        "TRUSTED_HOSTS": _trusted_hosts(public_url, source.get("KAKEHASHI_TRUSTED_HOSTS")),
        # The platform's own tenant whose provider signs console users in with the card.
        "CONSOLE_OIDC_TENANT": str(source.get("CONSOLE_OIDC_TENANT") or "kk-console"),
        # Console passwords: Argon2id; tests and the embedded demo may choose a cheaper profile.
        "ARGON2_PROFILE": str(source.get("ARGON2_PROFILE") or "RFC_9106_LOW_MEMORY"),
        # Webhooks: where they may go, and how hard the service tries.
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": _flag(source.get("WEBHOOK_ALLOW_PRIVATE_NETWORKS", not production)),
        "WEBHOOK_ALLOW_HTTP": _flag(source.get("WEBHOOK_ALLOW_HTTP", not production)),
        "WEBHOOK_MAX_ATTEMPTS": int(source.get("WEBHOOK_MAX_ATTEMPTS") or 12),
        "WEBHOOK_RETRY_BASE_SECONDS": float(source.get("WEBHOOK_RETRY_BASE_SECONDS") or 30),
        "WEBHOOK_LEASE_SECONDS": float(source.get("WEBHOOK_LEASE_SECONDS") or 60),
        "WEBHOOK_TIMEOUT_SECONDS": float(source.get("WEBHOOK_TIMEOUT_SECONDS") or 10),
        # Live-mode time-stamps of powers of attorney: the RFC 3161 TSA, and its roots (PEM file).
        "TSA_URL": source.get("TSA_URL") or None,
        "TSA_ROOTS": source.get("TSA_ROOTS") or None,
        # Rows nearly every request reads, kept briefly per process (see saas/rowcache.py).
        "ROW_CACHE_SECONDS": float(5 if production else 0) if source.get("ROW_CACHE_SECONDS") in (None, "")
        else float(source["ROW_CACHE_SECONDS"]),
        # SQLite (the embedded set-up, one process) writes each line in its request: a batch
        # writer's commit between a request's read and its write would refuse the write (a
        # stale WAL snapshot: "database is locked"), and one process needs no batching.
        "BATCH_FLUSH_SECONDS": float(source.get("BATCH_FLUSH_SECONDS", 0 if database_url.startswith("sqlite") else 1)
                                     or 0),
        # The longest a power of attorney may run (days).
        "DELEGATION_MAX_VALIDITY_DAYS": int(source.get("DELEGATION_MAX_VALIDITY_DAYS") or 1095),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "SESSION_COOKIE_NAME": "__Host-kk_session" if production else "kk_session",
        "PERMANENT_SESSION_LIFETIME": 8 * 3600,
        "PREFERRED_URL_SCHEME": "https" if production else "http",
        "MAX_CONTENT_LENGTH": 16 * 1024 * 1024,
        "BABEL_DEFAULT_LOCALE": "ja",
        "BABEL_DEFAULT_TIMEZONE": "Asia/Tokyo",
        "WTF_CSRF_TIME_LIMIT": None,
        "WTF_CSRF_SSL_STRICT": production,
    }
    passthrough = {k: v for k, v in (overrides or {}).items() if k not in config}
    config.update(passthrough)
    return config


def normalise_database_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whichever spelling the URL has."""
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme):]
    return url


def _flag(value: Any) -> bool:
    return str(value or "").strip().lower() in {"1", "true", "yes", "on"}


def _key(value: Any) -> bytes | None:
    """32 bytes from base64 (either alphabet), or None."""
    if not value:
        return None
    try:
        raw = base64.b64decode(str(value).replace("-", "+").replace("_", "/") + "==", validate=False)
    except (ValueError, binascii.Error):
        return None
    return raw if len(raw) == 32 else None


def _instance_secret(instance_path: Path, name: str = "secret_key") -> str:
    """A secret generated once and kept in ``instance/<name>`` (mode 0600)."""
    path = instance_path / name
    if path.exists():
        return path.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its secret
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret


def _ports(value: Any) -> tuple[int, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    try:
        ports = tuple(int(str(item).strip()) for item in items if str(item).strip())
    except ValueError:
        raise ConfigurationError(f"BRIDGE_AGENT_PORTS must be port numbers, not {value!r}") from None
    if not ports or any(not 1024 <= port <= 65535 for port in ports):
        raise ConfigurationError(f"BRIDGE_AGENT_PORTS must be ports 1024-65535, not {value!r}")
    return ports


def _trusted_hosts(public_url: str, extra: Any) -> list[str] | None:
    """PUBLIC_URL's host name and the extra names; None (any host) without it.

    Werkzeug compares host names only; the port is ignored.
    """
    if not public_url:
        return None
    hosts = [str(urlsplit(public_url).hostname)] + [h.strip().lower() for h in str(extra or "").split(",") if h.strip()]
    return list(dict.fromkeys(hosts))
