"""Fixtures: a migrated database per test process, each test inside a savepoint.

The suite runs on SQLite by default and on PostgreSQL when ``TEST_DATABASE_URL`` is set
(``make test`` runs both). Under ``CI=true`` a missing PostgreSQL or Redis fails the run
instead of skipping tests.
"""

from __future__ import annotations

import contextvars
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from saas import create_app, db
from saas.cli import migrate_database
from saas.config import normalise_database_url

CI = os.environ.get("CI", "").lower() == "true"
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET = "test-secret-" + "x" * 40
ROOT_ARTIFACTS = Path(__file__).resolve().parent / "artifacts"  # screenshots, not committed


def backend() -> str:
    return "postgresql" if TEST_DATABASE_URL else "sqlite"


def pytest_report_header(config: pytest.Config) -> str:
    return f"kakehashi: database backend {backend()}, CI={CI}"


def _worker(request: pytest.FixtureRequest) -> str:
    return getattr(request.config, "workerinput", {}).get("workerid", "main")


@contextmanager
def empty_database(tag: str, tmp_dir: Path) -> Iterator[str]:
    """A new, empty database on the backend under test, dropped afterwards."""
    if not TEST_DATABASE_URL:
        yield f"sqlite:///{tmp_dir / f'{tag}.db'}"
        return
    base = make_url(normalise_database_url(TEST_DATABASE_URL))
    name = f"kk_{tag}_{secrets.token_hex(4)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # unreachable server: fail, saying why
        admin.dispose()
        pytest.fail(f"PostgreSQL at {base.render_as_string()} is unreachable: {exc}", pytrace=False)
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database migrated to head, private to this test process."""
    with empty_database(f"test_{_worker(request)}", tmp_path_factory.mktemp("db")) as url:
        migrate_database(url)
        yield url


class RequestClient(FlaskClient):
    """Each request runs in fresh context variables, as in production.

    Otherwise a request would reuse the app context a test pushed (and with it ``g``,
    the cached locale and the bound tenant of earlier requests).
    """

    def open(self, *args: Any, **kwargs: Any) -> Any:
        return contextvars.Context().run(super().open, *args, **kwargs)


def make_app(database_url: str, tmp_path: Path, **overrides: Any) -> Flask:
    # API calls are logged in the request's own transaction: tests that roll their data back
    # keep the log lines with it (the batched log has a test of its own).
    config = {"DATABASE_URL": database_url, "SECRET_KEY": SECRET, "TESTING": True, "ARGON2_PROFILE": "CHEAPEST",
              "INSTANCE_PATH": str(tmp_path), "LOG_LEVEL": "WARNING", "BATCH_FLUSH_SECONDS": 0, **overrides}
    application = create_app(config)
    application.test_client_class = RequestClient
    return application


@pytest.fixture(autouse=True)
def fresh_rate_limits() -> None:
    """Each test starts with no rate-limit counts of this process (sign-ups, sign-ins)."""
    from saas import ratelimit

    ratelimit.reset()


@pytest.fixture
def committed_url(tmp_path: Path) -> Iterator[str]:
    """A migrated database of the test's own, for code that commits on other connections
    or in other threads and processes (jobs, stores, servers)."""
    with empty_database("committed", tmp_path) as url:
        migrate_database(url)
        yield url


@pytest.fixture(scope="session")
def app(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    application = make_app(database_url, tmp_path_factory.mktemp("instance"))
    yield application
    db.get_database(application).engine.dispose()


@pytest.fixture
def db_session(app: Flask) -> Iterator[Any]:
    """The app's session, inside a transaction rolled back after the test.

    Requests made by the test client commit into a savepoint of that transaction, so they
    see each other's writes and nothing outlives the test.
    """
    database = db.get_database(app)
    connection = database.engine.connect()
    transaction = connection.begin()
    database.sessionmaker.configure(bind=connection, join_transaction_mode="create_savepoint")
    try:
        with app.app_context():
            yield db.session
            db.session.remove()
    finally:
        database.sessionmaker.configure(bind=database.engine, join_transaction_mode="conservative_savepoint")
        transaction.rollback()
        connection.close()


@pytest.fixture
def client(app: Flask, db_session: Any) -> Any:
    return app.test_client()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis; its absence fails the run under CI and skips elsewhere."""
    from redis import Redis
    from redis.exceptions import RedisError

    try:
        Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2).ping()
    except RedisError as exc:
        message = f"Redis at {TEST_REDIS_URL} is unreachable: {exc}"
        if CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return TEST_REDIS_URL


# When the session's sandbox roots and card are issued, however late a worker first asks
# for them: before any test module's own NOW (taken when it is imported, after this
# file). Issued at the first request instead, a card made 7 minutes into a slow run was
# "not valid before" the NOW of a module collected at the start (5 minutes' skew allowed).
SESSION_START = datetime.now(UTC)


@pytest.fixture(scope="session")
def sandbox_roots() -> dict[str, Any]:
    """One generation of sandbox roots for each kind (RSA key generation is slow: once)."""
    from saas.jpki.certificates import CertificateKind
    from saas.sandbox import ca

    return {"auth": ca.create_root(CertificateKind.AUTH, SESSION_START),
            "signature": ca.create_root(CertificateKind.SIGNATURE, SESSION_START)}


@pytest.fixture(scope="session")
def sandbox_card(sandbox_roots: dict[str, Any]) -> Any:
    """An adult's sandbox card whose name has a substitute character."""
    import random
    from datetime import date

    from saas.jpki.certificates import Era, Gender, PersonAttributes
    from saas.sandbox.cards import issue_card
    from saas.sandbox.persons import SyntheticPerson, synthetic_person

    person = synthetic_person(random.Random(7), era=Era.SHOWA, gender=Gender.FEMALE)
    attributes = PersonAttributes(
        name="𠮷田\u3000花子".replace("𠮷", "吉"), name_substitutes=(0,), gender=Gender.FEMALE,
        birthdate=date(1975, 2, 28), birth_era=Era.SHOWA,
        address="東京都千代田区霞が関２丁目１番２号", address_substitutes=())
    person = SyntheticPerson(attributes=attributes, prefecture_romaji=person.prefecture_romaji)
    return issue_card(sandbox_roots["auth"], sandbox_roots["signature"], person, now=SESSION_START,
                      auth_serial=0x1001, signature_serial=0x2001, auth_pin="1234",
                      signature_password="SANDBOX1")
