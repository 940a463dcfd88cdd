"""The OpenID Provider under gunicorn with PostgreSQL and Redis, measured end to end.

Prints:

1. full card logins per second: GET /authorize → the login page (which carries the
   single-use challenge) → POST the agent-format token (web-eid:1.0, signed by a sandbox
   card's key over the service's origin and the challenge) → the code → POST /token with
   PKCE and private_key_jwt; with p50/p95 per login. Target ≥150/s on 2 cores (Keycloak's
   published sizing: 15 password logins per second per vCPU).
2. token-endpoint exchanges per second (code + PKCE + private_key_jwt) side by side with
   oidc-provider (npm, node) doing the same exchange on this machine in the same run, one
   server process each (per core), as a ratio. Target ≥1.0. The peer runs twice: with a
   PostgreSQL adapter (the same storage, one statement per adapter call) and with its
   in-memory store.

Client and servers share the machine's cores; the clients' CPU time is printed too, and
the service's CPU per login and per exchange (from /proc), which drifts far less than the
rates when the machine's speed does.

    .venv/bin/python bench/oidc_bench.py [--seconds 20] [--clients 4] [--workers 2]

Needs PostgreSQL at 127.0.0.1:5432 (trust), Redis at 127.0.0.1:6379, node and npm (the
peer is installed into ~/.cache/kakehashi-bench on first use).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import machine  # noqa: E402 - bench/machine.py, beside this script

PG = "postgresql+psycopg://postgres@127.0.0.1:5432"
DATABASE = "kakehashi_oidc_bench"
REDIS = "redis://127.0.0.1:6379/0"
SECRET_KEY = "b" * 48
KEK = base64.b64encode(b"k" * 32).decode()  # the signing keys' key-encryption key
REDIRECT_URI = "https://rp.example/callback"
PEER_DIR = Path(__file__).resolve().parent / "oidc_provider_peer"
PEER_CACHE = Path.home() / ".cache" / "kakehashi-bench" / "oidc-provider"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, seconds: float = 30.0) -> None:
    import requests

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {seconds:.0f} s")


# -- set-up --------------------------------------------------------------------------------

def fresh_app(database: str, instance: Path, **config: Any) -> Any:
    """The app on a new, migrated PostgreSQL database ``database`` (dropped first)."""
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c", f"drop database if exists {database}",
                    "-c", f"create database {database}"], check=True, capture_output=True)
    from alembic import command

    from saas import create_app
    from saas.cli import alembic_config

    url = f"{PG}/{database}"
    command.upgrade(alembic_config(url), "head")
    return create_app({"DATABASE_URL": url, "REDIS_URL": REDIS, "SECRET_KEY": SECRET_KEY, "KEY_ENCRYPTION_KEY": KEK,
                       "INSTANCE_PATH": str(instance), "LOG_LEVEL": "WARNING", **config})


def prepare(instance: Path) -> dict[str, Any]:
    """A fresh database with a tenant, a sandbox card with revocation data, and a client."""
    from cryptography.hazmat.primitives import serialization
    from joserfc.jwk import ECKey, KeySet

    from saas import db
    from saas.db import tenant_scope
    from saas.oidc import clients
    from saas.sandbox import jobs as sandbox_jobs
    from saas.sandbox import services as sandbox
    from saas.tenants import services as tenants

    app = fresh_app(DATABASE, instance)
    key = ECKey.generate_key("P-256", {"use": "sig"})
    key = ECKey.import_key(key.as_dict(private=True) | {"kid": key.thumbprint()})
    with app.app_context():
        tenant = tenants.create_tenant(slug="bench", display_name="ベンチ銀行", kind="bank")
        db.session.commit()
        card = sandbox.issue_card(seed=5)
        db.session.commit()
        sandbox_jobs.refresh_revocation_data()
        db.session.commit()
        with tenant_scope(db.session, tenant.id):
            client, _ = clients.register_client(
                tenant, name="bench RP", redirect_uris=[REDIRECT_URI], scopes=["openid"],
                auth_method="private_key_jwt",
                jwks=json.dumps(KeySet([ECKey.import_key(key.as_dict(private=False))]).as_dict()))
            db.session.commit()
            client_id = client.public_id
    db.get_database(app).engine.dispose()
    return {
        "client_id": client_id, "client_key": key.as_dict(private=True),
        "card_key": card.auth.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()).decode(),
        "card_certificate": base64.b64encode(card.auth.certificate.public_bytes(serialization.Encoding.DER)).decode(),
    }


def service_settings(base: str, instance: Path, log_level: str = "INFO", database: str = DATABASE) -> dict[str, str]:
    """The measured service's settings (its environment under gunicorn, or create_app's
    configuration in-process), for the database :func:`prepare` made."""
    return {"DATABASE_URL": f"{PG}/{database}", "REDIS_URL": REDIS, "SECRET_KEY": SECRET_KEY,
            "KEY_ENCRYPTION_KEY": KEK, "LOG_LEVEL": log_level, "KAKEHASHI_ENV": "development",
            "INSTANCE_PATH": str(instance),
            "ROW_CACHE_SECONDS": "5",  # as in production
            "PUBLIC_URL": base}  # as in production: issuers are not built per request


def start_service(workers: int, threads: int, port: int, instance: Path,
                  log_level: str = "INFO", database: str = DATABASE) -> subprocess.Popen[bytes]:
    env = {**os.environ, **service_settings(f"http://127.0.0.1:{port}", instance, log_level, database)}
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    process = subprocess.Popen(
        [gunicorn, "saas:create_app()", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
         *(["--worker-class", "gthread", "--threads", str(threads)] if threads else ["--worker-class", "sync"]),
         "--backlog", "2048"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(instance / "service.log").open("ab"),
        start_new_session=True)
    wait_for(f"http://127.0.0.1:{port}/healthz")
    return process


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) used so far by process ``root`` and its descendants (a
    gunicorn master and its workers, node's one process), from /proc. The machine's speed
    drifts within a session; CPU per operation drifts far less than operations per second."""
    tick = os.sysconf("SC_CLK_TCK")
    parents, used = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            parents[int(entry)], used[int(entry)] = int(fields[1]), (int(fields[11]) + int(fields[12])) / tick
    members, grown = {root}, True
    while grown:
        found = {pid for pid, parent in parents.items() if parent in members} - members
        members, grown = members | found, bool(found)
    return sum(used.get(pid, 0.0) for pid in members)


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


# -- what a relying party and the agent do --------------------------------------------------

class Browser:
    """One keep-alive HTTP/1.1 connection with a cookie jar, on http.client: the load
    generator shares the two cores with the servers, so it should cost them little
    (requests took ~7 ms of CPU per login, a third of what the service spent)."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, url: str, *, form: dict[str, str] | None = None, json_body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
        parts = urlsplit(url)
        sent = dict(headers or {})
        body = None
        if form is not None:
            body, sent["Content-Type"] = urlencode(form), "application/x-www-form-urlencoded"
        elif json_body is not None:
            body, sent["Content-Type"] = json.dumps(json_body), "application/json"
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            self.connection.request(method, target, body=body, headers=sent)
            response = self.connection.getresponse()
        except ConnectionError:  # RemoteDisconnected too
            # The server closed the kept-alive connection while it was idle (gunicorn after
            # 2 s), before reading this request: send it again on a new connection, once,
            # as a browser would (a POST too: the server never saw it).
            self.connection.close()
            self.connection.request(method, target, body=body, headers=sent)
            response = self.connection.getresponse()
        data = response.read()
        for cookie in response.headers.get_all("Set-Cookie") or ():
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0]
            if value and "max-age=0" not in cookie.lower():
                self.cookies[name.strip()] = value
            else:
                self.cookies.pop(name.strip(), None)
        return response.status, response.headers, data


class Kakehashi:
    def __init__(self, base: str, setup: dict[str, Any]) -> None:
        from cryptography.hazmat.primitives import serialization
        from joserfc.jwk import ECKey

        self.base, self.issuer = base, f"{base}/t/bench"
        self.client_id = setup["client_id"]
        self.client_key = ECKey.import_key(setup["client_key"])
        self.card_key = serialization.load_pem_private_key(setup["card_key"].encode(), password=None)
        self.certificate = setup["card_certificate"]
        self.http = Browser(base)  # the person's browser
        self.backend = Browser(base)  # the relying party's server: no browser cookies at /token

    def assertion(self) -> dict[str, str]:
        from joserfc import jwt

        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": f"{self.issuer}/token",
                  "jti": secrets.token_urlsafe(12), "iat": now, "exp": now + 60}
        return {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": jwt.encode({"alg": "ES256", "kid": self.client_key.kid}, claims,
                                               self.client_key)}

    def card_token(self, challenge: str) -> dict[str, str]:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        data = hashlib.sha256(self.base.encode()).digest() + hashlib.sha256(challenge.encode()).digest()
        signature = self.card_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return {"format": "web-eid:1.0", "algorithm": "RS256", "unverifiedCertificate": self.certificate,
                "signature": base64.b64encode(signature).decode(),
                "appVersion": "https://kakehashi.example/bridge-agent/0.1.0"}

    def code(self) -> tuple[str, str]:
        """Authorize and log in with the card: (code, PKCE verifier)."""
        verifier = secrets.token_urlsafe(48)
        params = {"response_type": "code", "client_id": self.client_id, "redirect_uri": REDIRECT_URI,
                  "scope": "openid", "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8),
                  "code_challenge": s256(verifier), "code_challenge_method": "S256"}
        self.http.cookies.clear()  # a new browser each time: every login uses the card
        _status, headers, _body = self.http.request("GET", f"{self.issuer}/authorize?{urlencode(params)}")
        login = headers["Location"]
        page = self.http.request("GET", login)[2].decode()
        csrf = re.search(r'data-csrf="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        challenge = re.search(r'data-challenge="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        answer = json.loads(self.http.request("POST", login + "/card", json_body={"token": self.card_token(challenge)},
                                              headers={"X-CSRFToken": csrf, "Accept": "application/json"})[2])
        if "redirect" not in answer:
            raise RuntimeError(f"card login: {answer}")
        return parse_qs(urlsplit(answer["redirect"]).query)["code"][0], verifier

    def exchange(self, code: str, verifier: str) -> None:
        status, _headers, body = self.backend.request("POST", f"{self.issuer}/token", form={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier, **self.assertion()})
        if status != 200 or "id_token" not in json.loads(body):
            raise RuntimeError(f"token endpoint: {status} {body[:200]!r}")


class Peer:
    """The same exchange against oidc-provider; codes are minted by the peer's own
    bench-only endpoint (its Grant and AuthorizationCode models), untimed."""

    def __init__(self, base: str, setup: dict[str, Any]) -> None:
        from joserfc.jwk import ECKey

        self.base, self.client_id = base, "bench-rp"
        self.client_key = ECKey.import_key(setup["client_key"])
        self.http = Browser(base)

    def code(self) -> tuple[str, str]:
        verifier = secrets.token_urlsafe(48)
        answer = json.loads(self.http.request("POST", f"{self.base}/_bench/code",
                                              json_body={"code_challenge": s256(verifier)})[2])
        return answer["code"], verifier

    def exchange(self, code: str, verifier: str) -> None:
        from joserfc import jwt

        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": f"{self.base}/token",
                  "jti": secrets.token_urlsafe(12), "iat": now, "exp": now + 60}
        assertion = jwt.encode({"alg": "ES256", "kid": self.client_key.kid}, claims, self.client_key)
        status, _headers, body = self.http.request("POST", f"{self.base}/token", form={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier, "client_id": self.client_id,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion})
        if status != 200 or "id_token" not in json.loads(body):
            raise RuntimeError(f"oidc-provider token endpoint: {status} {body[:200]!r}")


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


# -- load ------------------------------------------------------------------------------------

def login_worker(base: str, setup: dict[str, Any], seconds: float, start: float, out: Any) -> None:
    site = Kakehashi(base, setup)
    site.exchange(*site.code())  # warm the connection
    while time.time() < start:
        time.sleep(0.001)
    latencies: list[float] = []
    cpu = time.process_time()
    while time.time() < start + seconds:
        began = time.perf_counter()
        site.exchange(*site.code())
        latencies.append(time.perf_counter() - began)
    out.put((latencies, time.process_time() - cpu))


def exchange_worker(kind: str, base: str, setup: dict[str, Any], count: int, ready: Any, go: Any, out: Any) -> None:
    site = Kakehashi(base, setup) if kind == "kakehashi" else Peer(base, setup)
    try:
        site.exchange(*site.code())
        codes = [site.code() for _ in range(count)]  # untimed
    except Exception as error:  # noqa: BLE001 - reported by the parent
        ready.put(repr(error))
        return
    ready.put(1)
    go.wait()
    began = time.perf_counter()
    cpu = time.process_time()
    try:
        for code, verifier in codes:
            site.exchange(code, verifier)
    except Exception as error:  # noqa: BLE001 - reported by the parent
        out.put(repr(error))
        return
    out.put((count, time.perf_counter() - began, time.process_time() - cpu))


def run_logins(base: str, setup: dict[str, Any], clients: int, seconds: float, service: int) -> dict[str, float]:
    out: Any = multiprocessing.Queue()
    start = time.time() + 3.0
    workers = [multiprocessing.Process(target=login_worker, args=(base, setup, seconds, start, out))
               for _ in range(clients)]
    for worker in workers:
        worker.start()
    time.sleep(max(0.0, start - time.time()))
    began = tree_cpu(service)
    time.sleep(seconds)
    service_cpu = tree_cpu(service) - began
    results = [out.get(timeout=seconds + 120) for _ in workers]
    for worker in workers:
        worker.join()
    latencies = sorted(latency for got, _ in results for latency in got)
    return {"logins": len(latencies), "per_second": len(latencies) / seconds,
            "p50": statistics.median(latencies) * 1000,
            "p95": latencies[int(len(latencies) * 0.95) - 1] * 1000,
            "client_cpu": sum(cpu for _, cpu in results) / seconds,
            "service_ms": service_cpu * 1000 / max(1, len(latencies))}


def run_exchanges(kind: str, base: str, setup: dict[str, Any], clients: int, per_client: int,
                  service: int) -> dict[str, float]:
    ready: Any = multiprocessing.Queue()
    out: Any = multiprocessing.Queue()
    go: Any = multiprocessing.Event()
    workers = [multiprocessing.Process(target=exchange_worker,
                                       args=(kind, base, setup, per_client, ready, go, out)) for _ in range(clients)]
    for worker in workers:
        worker.start()
    problems = [got for got in (ready.get(timeout=300) for _ in workers) if got != 1]
    began = tree_cpu(service)
    go.set()
    if problems:
        for worker in workers:
            worker.join()
        raise SystemExit(f"{kind}: {problems[0]}")
    results = [out.get(timeout=300) for _ in workers]
    service_cpu = tree_cpu(service) - began
    for worker in workers:
        worker.join()
    failed = [r for r in results if isinstance(r, str)]
    if failed:
        raise SystemExit(f"{kind}: {failed[0]}")
    count = sum(r[0] for r in results)
    wall = max(r[1] for r in results)
    return {"exchanges": count, "per_second": count / wall, "client_cpu": sum(r[2] for r in results) / wall,
            "service_ms": service_cpu * 1000 / max(1, count)}


# -- the peer -----------------------------------------------------------------------------------

def install_peer() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise SystemExit("node and npm are needed for the oidc-provider comparison")
    PEER_CACHE.mkdir(parents=True, exist_ok=True)
    shutil.copy(PEER_DIR / "package.json", PEER_CACHE / "package.json")
    shutil.copy(PEER_DIR / "server.mjs", PEER_CACHE / "server.mjs")
    if not all((PEER_CACHE / "node_modules" / name).exists() for name in ("oidc-provider", "pg")):
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=PEER_CACHE, check=True)
    version = json.loads((PEER_CACHE / "node_modules" / "oidc-provider" / "package.json").read_text())["version"]
    print(f"oidc-provider {version} on node {subprocess.check_output(['node', '--version'], text=True).strip()}")
    return PEER_CACHE


def start_peer(directory: Path, port: int, setup: dict[str, Any], database: str | None) -> subprocess.Popen[bytes]:
    from joserfc.jwk import ECKey

    public = ECKey.import_key(setup["client_key"]).as_dict(private=False)
    env = {**os.environ, "PORT": str(port), "CLIENT_JWKS": json.dumps({"keys": [public]}),
           "REDIRECT_URI": REDIRECT_URI, "NODE_ENV": "production", "PEER_DATABASE_URL": database or ""}
    process = subprocess.Popen(["node", "server.mjs"], cwd=directory, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(f"http://127.0.0.1:{port}/.well-known/openid-configuration")
    return process


# -- main -----------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the login run")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers for the login run")
    # One thread per worker for the logins: on two cores more threads only contend for the
    # GIL (2 × 4 threads: 16.7 ms of CPU per login and 78.8/s; 2 × 1: 14.7 ms and 93.0/s).
    # The token run has one process, and a second thread lets it work while the first waits
    # for PostgreSQL or Redis (1: 221.8/s; 2: 245.7/s; 4: 238.2/s). 0: gunicorn's sync worker.
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker (logins)")
    parser.add_argument("--token-threads", type=int, default=2, help="threads of the token run's one worker")
    parser.add_argument("--exchanges", type=int, default=200, help="token exchanges per client process and round")
    parser.add_argument("--rounds", type=int, default=3, help="turns of Kakehashi and oidc-provider")
    parser.add_argument("--skip-peer", action="store_true", help="no oidc-provider comparison")
    parser.add_argument("--log-level", default="INFO", help="the service's LOG_LEVEL (INFO logs every request)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, {machine.reference()}; PostgreSQL + Redis; gunicorn {'gthread' if args.threads else 'sync'}; "
          f"LOG_LEVEL={args.log_level}")
    instance = Path(tempfile.mkdtemp(prefix="oidc-bench-"))
    service = peer = None
    try:
        setup = prepare(instance)
        port = free_port()
        base = f"http://127.0.0.1:{port}"

        service = start_service(args.workers, args.threads, port, instance, args.log_level)
        logins = run_logins(base, setup, args.clients, args.seconds, service.pid)
        print(f"\nfull card logins (authorize → login page with challenge → agent token → code → token), "
              f"{args.workers} workers × {args.threads} threads, {args.clients} clients, {args.seconds:.0f} s:")
        print(f"  {logins['per_second']:8.1f} logins/s   p50 {logins['p50']:.1f} ms   p95 {logins['p95']:.1f} ms"
              f"   ({logins['logins']} logins; the service used {logins['service_ms']:.1f} ms of CPU per login, "
              f"the clients {logins['client_cpu']:.2f} cores)   target ≥150/s")
        stop(service)

        # One server process each: per-core throughput of the same exchange. The two are
        # measured in turns, round after round, so that a drift in the machine's speed
        # (this one's wanders by up to 40 % within minutes) falls on both alike; the ratio
        # reported is the median of the rounds'.
        service = start_service(1, args.token_threads, port, instance, args.log_level)
        if not args.skip_peer:
            directory = install_peer()
            # Its storage is an adapter the deployer writes: PostgreSQL (Kakehashi's storage,
            # one table, every call committed) is the like-for-like run; its in-memory Map
            # keeps nothing across a restart and is shown for scale.
            peer_base = f"http://127.0.0.1:{free_port()}"
            peer = start_peer(directory, int(peer_base.rsplit(":", 1)[1]), setup,
                              f"postgresql://postgres@127.0.0.1:5432/{DATABASE}")
        print(f"\ntoken endpoint (code + PKCE S256 + private_key_jwt → ID token), one server process each "
              f"(Kakehashi {args.token_threads} threads), {args.rounds} rounds in turns:")
        ours_rates, ratios = [], []
        for round_ in range(1, args.rounds + 1):
            ours = run_exchanges("kakehashi", base, setup, args.clients, args.exchanges, service.pid)
            ours_rates.append(ours["per_second"])
            line = (f"  round {round_}: Kakehashi {ours['per_second']:6.1f}/s ({ours['service_ms']:.2f} ms of CPU each, "
                    f"clients {ours['client_cpu']:.2f} cores)")
            if peer is not None:
                theirs = run_exchanges("peer", peer_base, setup, args.clients, args.exchanges, peer.pid)
                ratios.append(ours["per_second"] / theirs["per_second"])
                line += (f"   oidc-provider on PostgreSQL {theirs['per_second']:6.1f}/s ({theirs['service_ms']:.2f} ms, "
                         f"clients {theirs['client_cpu']:.2f} cores)   ratio {ratios[-1]:.2f}")
            print(line)
        stop(service)
        service = None
        print(f"  Kakehashi      median {statistics.median(ours_rates):8.1f} exchanges/s")
        if peer is not None:
            stop(peer)
            peer = None
            print(f"  ratio Kakehashi / oidc-provider on PostgreSQL: median {statistics.median(ratios):.2f} "
                  f"(rounds {min(ratios):.2f}–{max(ratios):.2f})   target ≥1.0")
            peer_port = free_port()
            peer = start_peer(directory, peer_port, setup, None)
            theirs = run_exchanges("peer", f"http://127.0.0.1:{peer_port}", setup, args.clients, args.exchanges,
                                   peer.pid)
            print(f"  oidc-provider with its in-memory store, for scale: {theirs['per_second']:.1f}/s "
                  f"({theirs['service_ms']:.2f} ms of CPU each)")
    finally:
        stop(service)
        stop(peer)
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c",
                        f"drop database if exists {DATABASE}"], capture_output=True)
        errors = [line for line in (instance / "service.log").read_text(errors="replace").splitlines()
                  if '"level": "error"' in line] if (instance / "service.log").exists() else []
        if errors:
            print(f"\n{len(errors)} server errors; the first:\n{errors[0][-3000:]}")
        shutil.rmtree(instance, ignore_errors=True)


if __name__ == "__main__":
    main()
