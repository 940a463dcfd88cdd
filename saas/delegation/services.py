"""Powers of attorney: prepare, have the representative sign, seal, present, end.

Lifecycle: draft → awaiting_signature → active (or awaiting_review when the commercial
register cannot confirm the representative, then active after an operator's review) →
suspended / revoked / expired. A change is a revocation and a new power that names the
old one. Every transition is a hash-chained history line and an outbox event in the same
transaction; revoking a power revokes its sub-delegations.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, NamedTuple

from cryptography import x509
from flask import current_app
from flask_babel import lazy_gettext as _l
from joserfc import jws
from sqlalchemy import bindparam, event, select, update
from sqlalchemy.orm import Session

from saas import clock, db, urls
from saas.delegation import records, scope, timestamps
from saas.delegation.models import (
    PowerAccessCode,
    PowerAgent,
    PowerFetch,
    PowerHistory,
    PowerOfAttorney,
    PowerStatus,
)
from saas.errors import NotFound, ServiceError
from saas.events import services as events
from saas.jpki.errors import VerificationFailed
from saas.jpki.revocation import LayeredRevocation
from saas.jpki.signatures import verify_signature
from saas.oidc import keys, login
from saas.sandbox.register import CommercialRegister, RegisterRecord, SandboxRegister
from saas.stores import jpki_stores
from saas.tenants import corporate_number
from saas.tenants import services as tenants
from saas.tenants.models import Tenant, TenantMode

MAX_AGENTS = 10
MAX_STATEMENT = 2000  # characters: what the bridge agent shows the representative, at most
SIGNING_LINK_LIFETIME = timedelta(days=7)
SIGNING_WINDOW = timedelta(minutes=10)  # from showing the text to the card's signature
ACCESS_CODE_LIFETIME = timedelta(hours=24)
RETENTION = timedelta(days=3653)  # ten years after validity ends
RECEIPT_TYPE = "kakehashi-receipt+jwt"
ENDED = (PowerStatus.REVOKED, PowerStatus.EXPIRED)


class PowerError(ServiceError):
    status = 422


def _scope_error(error: scope.ScopeError) -> PowerError:
    return PowerError(error.message, code=error.code, field=error.field)


def commercial_register(tenant: Tenant) -> CommercialRegister | None:
    """Where the representative's status is confirmed: the sandbox's stand-in, or (live)
    the configured source; None sends every power through the operator's paper review."""
    if tenants.mode_now(tenant, writing=True) is TenantMode.SANDBOX:  # a signing: it writes next
        return SandboxRegister()
    factory = current_app.config.get("DELEGATION_REGISTER")
    return factory() if callable(factory) else None


def timestamp_authority(tenant: Tenant) -> timestamps.TimestampAuthority:
    """Sandbox: the sandbox TSA; live: the TSA at ``TSA_URL``."""
    if tenants.mode_now(tenant, writing=True) is TenantMode.SANDBOX:  # a signing: it writes next
        from saas.sandbox.tsa import SandboxTimestampAuthorityService

        return SandboxTimestampAuthorityService()
    url = current_app.config.get("TSA_URL")
    if not url:
        raise PowerError(_l("No time-stamping authority is configured for live mode (TSA_URL)."),
                         code="timestamp_unavailable", status=503)
    return timestamps.HttpTimestampAuthority(url)


def tsa_roots(mode: TenantMode) -> list[x509.Certificate]:
    """The roots a time-stamp of this mode must chain to."""
    if mode is TenantMode.SANDBOX:
        from saas.sandbox import tsa

        return tsa.roots()
    path = current_app.config.get("TSA_ROOTS")
    return x509.load_pem_x509_certificates(open(path, "rb").read()) if path else []


# -- preparing ---------------------------------------------------------------------------------------

def _text(value: Any, field: str, limit: int, *, required: bool = True) -> str:
    cleaned = " ".join(str(value or "").split())
    if (required and not cleaned) or len(cleaned) > limit:
        raise PowerError(_l("%(field)s is required (at most %(limit)d characters).", field=field, limit=limit),
                         code="invalid_field", field=field)
    return cleaned


def parse_moment(value: Any, field: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value or "").replace("Z", "+00:00"))
        except ValueError:
            raise PowerError(_l("%(field)s must be a date and time (ISO 8601).", field=field),
                             code="invalid_field", field=field) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone(timedelta(hours=9)))  # a date typed in Japan
    return moment.astimezone(UTC)


def _agents(value: Any) -> list[dict[str, str | None]]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_AGENTS:
        raise PowerError(_l("Name 1 to %(count)d agents.", count=MAX_AGENTS), code="invalid_agents", field="agents")
    agents = []
    for item in value:
        if not isinstance(item, dict):
            raise PowerError(_l("Each agent is an object with a name."), code="invalid_agents", field="agents")
        email = _text(item.get("email"), "email", 254, required=False) or None
        if email is not None and ("@" not in email or " " in email):
            raise PowerError(_l("An agent's email address is not valid."), code="invalid_agents", field="agents")
        agents.append({"name": _text(item.get("name"), "agents", 200),
                       "affiliation": _text(item.get("affiliation"), "agents", 200, required=False),
                       "email": email})
    return agents


def create_draft(tenant: Tenant, body: Any, *, actor: str) -> PowerOfAttorney:
    """A draft power from the tenant's console or API, validated in full."""
    if not isinstance(body, dict):
        raise PowerError(_l("Send a JSON object."), code="invalid_json")
    now = clock.now()
    principal = body.get("principal") if isinstance(body.get("principal"), dict) else {}
    number = str(principal.get("corporate_number") or "").strip()
    if not corporate_number.is_valid(number):
        raise PowerError(_l("The corporate number (法人番号) must be 13 digits with a valid check digit."),
                         code="invalid_corporate_number", field="corporate_number")
    name = _text(principal.get("name"), "principal.name", 200)
    address = _text(principal.get("address"), "principal.address", 300)
    register = commercial_register(tenant)
    found = register.lookup(number) if register is not None else None
    if register is not None and found is None:
        raise PowerError(_l("The commercial register has no corporation with this number."),
                         code="corporation_not_found", field="corporate_number")
    if found is not None and (_same(found.name, name) is False or _same(found.address, address) is False):
        raise PowerError(_l("The corporation's name or address differs from the commercial register "
                            "(%(name)s, %(address)s).", name=found.name, address=found.address),
                         code="principal_mismatch", field="principal")
    try:
        matters = scope.matters(body.get("matters"))
        details = scope.authorization_details(body.get("authorization_details"))
        valid_from = parse_moment(body.get("valid_from") or now, "valid_from")
        valid_until = parse_moment(body.get("valid_until"), "valid_until")
        scope.validity(valid_from, valid_until, now=now,
                       maximum_days=int(current_app.config.get("DELEGATION_MAX_VALIDITY_DAYS", 1095)))
    except scope.ScopeError as error:
        raise _scope_error(error) from None
    agency = body.get("agency", "several")
    if agency not in ("several", "joint"):
        raise PowerError(_l("agency is several (each agent alone) or joint (all together)."),
                         code="invalid_agency", field="agency")
    method = body.get("method", "principal")
    if method not in ("principal", "operator"):
        raise PowerError(_l("method is principal (the representative's signed record) or operator "
                            "(the service's record)."), code="invalid_method", field="method")
    agents = _agents(body.get("agents"))
    parent = _parent(body.get("parent"), number, matters, details, valid_from, valid_until)
    replaces = get(str(body["replaces"])) if body.get("replaces") else None
    if replaces is not None and (replaces.status in ENDED or replaces.corporate_number != number):
        raise PowerError(_l("Only a power of the same corporation still in force can be reissued."),
                         code="invalid_replaces", field="replaces")
    ancestor = parent
    while replaces is not None and ancestor is not None:  # the replaced power's revocation reaches down
        if ancestor.id == replaces.id:
            raise PowerError(_l("A power cannot replace one it is sub-delegated from: revoking that one would "
                                "revoke it too."), code="invalid_replaces", field="replaces")
        ancestor = db.session.get(PowerOfAttorney, ancestor.parent_id) if ancestor.parent_id else None
    power = PowerOfAttorney(
        tenant_id=tenant.id, status=PowerStatus.DRAFT, corporate_number=number, principal_name=name,
        principal_address=address, matters=json.dumps(matters, ensure_ascii=False),
        authorization_details=json.dumps(details, ensure_ascii=False), agency=agency, valid_from=valid_from,
        valid_until=valid_until, subdelegation_allowed=bool(body.get("subdelegation_allowed", False)),
        parent_id=parent.id if parent else None, replaces_id=replaces.id if replaces else None, method=method,
        verification_code=_verification_code(), created_by=actor, created_at=now, updated_at=now,
        retain_until=valid_until + RETENTION, history_seq=0, history_head="")
    db.session.add(power)
    db.session.flush()
    for position, agent in enumerate(agents):
        db.session.add(PowerAgent(tenant_id=tenant.id, power_id=power.id, position=position, **agent))
    length = len(payload(tenant, power)["text"])
    if length > MAX_STATEMENT:  # the agent would refuse to show it: the power could never be signed
        raise PowerError(_l("The text the representative signs would be %(length)d characters; the card agent "
                            "shows at most %(limit)d. List fewer or shorter matters or details.",
                            length=length, limit=MAX_STATEMENT), code="statement_too_long", field="matters")
    _transition(tenant, power, "created", PowerStatus.DRAFT, actor=actor)
    return power


def _same(registered: str, given: str) -> bool:
    return "".join(registered.split()) == "".join(given.split())


def _parent(public_id: Any, number: str, matters: list[str], details: list[dict[str, Any]],
            valid_from: datetime, valid_until: datetime) -> PowerOfAttorney | None:
    if not public_id:
        return None
    parent = get(str(public_id))
    if parent.status is not PowerStatus.ACTIVE or not parent.subdelegation_allowed:
        raise PowerError(_l("The parent power is not in force or does not allow sub-delegation."),
                         code="subdelegation_not_allowed", field="parent")
    if parent.corporate_number != number:
        raise PowerError(_l("A sub-delegation acts for the same corporation as its parent."),
                         code="wider_than_parent", field="principal")
    try:
        scope.within_parent(
            {"matters": json.loads(parent.matters), "authorization_details": json.loads(parent.authorization_details),
             "valid_from": parent.valid_from, "valid_until": parent.valid_until},
            {"matters": matters, "authorization_details": details, "valid_from": valid_from,
             "valid_until": valid_until})
    except scope.ScopeError as error:
        raise _scope_error(error) from None
    return parent


def _verification_code() -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and typed from paper
    raw = "".join(secrets.choice(alphabet) for _ in range(16))
    return "-".join(raw[i:i + 4] for i in range(0, 16, 4))


# -- lookups -----------------------------------------------------------------------------------------

def get(public_id: str) -> PowerOfAttorney:
    power = db.session.scalar(select(PowerOfAttorney).where(PowerOfAttorney.public_id == public_id))
    if power is None:
        raise NotFound(_l("There is no such power of attorney."), code="power_not_found")
    return power


def agents_of(power: PowerOfAttorney) -> list[PowerAgent]:
    return list(db.session.scalars(select(PowerAgent).where(PowerAgent.power_id == power.id)
                                   .order_by(PowerAgent.position)))


class PowerState(NamedTuple):
    """What a relying party's fetch reads afresh: the columns that change after a power is
    sealed (status, end, history head), and those its receipt is made of; the rest is fixed
    by the sealed record."""

    id: int
    public_id: str
    status: PowerStatus
    updated_at: datetime
    valid_from: datetime
    valid_until: datetime
    signed_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    history_head: str
    record_digest: str | None


_POWERS = PowerOfAttorney.__table__
_STATE = tuple(_POWERS.c[name] for name in PowerState._fields)
_STATE_OF_ONE = db.TenantRead(_POWERS, *_STATE, where=_POWERS.c.public_id == bindparam("public_id"))
_STATES_OF_MANY = db.TenantRead(_POWERS, *_STATE,
                                where=_POWERS.c.public_id.in_(bindparam("public_ids", expanding=True)))
_CONTENTS = "kakehashi.sealed_power_contents"
CONTENTS_KEPT = 1_000  # a record file with its certificates and time-stamp: tens of KB parsed


def for_party(public_id: str, *, mode: TenantMode) -> tuple[PowerState, dict[str, Any]]:
    """A power as a relying party fetches it with a key of ``mode``: its state read now (one
    narrow query), and what the sealed record fixes (principal, agents, matters, the record
    file) kept per process by the record's digest, so a fetch reads no agent and parses no
    record."""
    found = _for_parties([public_id])
    if not found:
        raise NotFound(_l("There is no such power of attorney."), code="power_not_found")
    if not shown_to(found[0][1]["mode"], mode):
        raise _sandbox_power()
    return found[0]


def shown_to(signed_in: str | None, mode: TenantMode) -> bool:
    """Whether a relying party's key of ``mode`` sees a power signed in ``signed_in`` mode.
    A power signed in the sandbox (a test card, the register's stand-in) is in force for
    nobody live: a live key does not find it, as it does not find another organisation's.
    One not signed yet is shown (not in force), whatever the mode."""
    return not (signed_in == TenantMode.SANDBOX.value and mode is TenantMode.LIVE)


def _sandbox_power() -> NotFound:
    return NotFound(_l("There is no such power of attorney in live mode: this one was signed in the sandbox."),
                    code="power_not_found")


def for_parties(public_ids: list[str], *, mode: TenantMode) -> list[tuple[PowerState, dict[str, Any]]]:
    """:func:`for_party` for many, in the order given (unknown ids, and those ``mode`` does
    not see, left out)."""
    return [(state, body) for state, body in _for_parties(public_ids) if shown_to(body["mode"], mode)]


def _for_parties(public_ids: list[str]) -> list[tuple[PowerState, dict[str, Any]]]:
    """The states and contents of these powers: one query for the states, and for the
    contents not kept yet one for the powers and one for their agents."""
    if len(public_ids) == 1:  # a fetch: "=" (an IN list is expanded into the SQL at each call)
        found = _STATE_OF_ONE.rows(public_id=public_ids[0])
    else:
        found = _STATES_OF_MANY.rows(public_ids=public_ids)
    states = {row.public_id: PowerState(*row) for row in found}
    kept: OrderedDict[tuple[int, str], dict[str, Any]] = current_app.extensions.setdefault(_CONTENTS, OrderedDict())
    contents = {state.id: kept.get((state.id, state.record_digest)) for state in states.values()
                if state.record_digest}
    missing = [state.id for state in states.values() if contents.get(state.id) is None]
    if missing:
        agents: dict[int, list[PowerAgent]] = {}
        for agent in db.session.scalars(select(PowerAgent).where(PowerAgent.power_id.in_(missing))
                                        .order_by(PowerAgent.power_id, PowerAgent.position)):
            agents.setdefault(agent.power_id, []).append(agent)
        for power in db.session.scalars(select(PowerOfAttorney).where(PowerOfAttorney.id.in_(missing))):
            contents[power.id] = content = {**_content(power, agents.get(power.id, [])), "record": record_file(power)}
            if power.record_digest and power.record_digest == states[power.public_id].record_digest:
                kept[(power.id, power.record_digest)] = content  # sealed: nothing of it changes any more
        while len(kept) > CONTENTS_KEPT:
            kept.popitem(last=False)
    return [(state, {**contents[state.id], **_state_fields(state)})
            for state in (states.get(public_id) for public_id in dict.fromkeys(public_ids))
            if state is not None and contents.get(state.id) is not None]


def record_file(power: PowerOfAttorney) -> dict[str, Any] | None:
    record = json.loads(power.record) if power.record else None
    return record if record and "format" in record else None


def list_powers(*, status: str | None = None, limit: int = 100) -> list[PowerOfAttorney]:
    query = select(PowerOfAttorney).order_by(PowerOfAttorney.id.desc()).limit(limit)
    if status:
        query = query.where(PowerOfAttorney.status == PowerStatus(status))
    return list(db.session.scalars(query))


# -- history -----------------------------------------------------------------------------------------

def _chain(prev: str, entry: dict[str, Any]) -> str:
    return hashlib.sha256(prev.encode() + records.canonical(entry)).hexdigest()


def _entry(power: PowerOfAttorney, seq: int, at: datetime, action: str, status: str, actor: str,
           reason: str | None) -> dict[str, Any]:
    return {"power": power.public_id, "seq": seq, "at": at.astimezone(UTC).isoformat(),
            "action": action, "status": status, "actor": actor, "reason": reason}


def _lock(power: PowerOfAttorney) -> None:
    """Hold the power's row until the transaction ends, and read it afresh: of two changes
    at once (two revocations), the second waits for the first and then sees what it did.
    (SQLite has no row locks: there a request that changes state holds the write lock.)"""
    db.session.scalars(select(PowerOfAttorney).where(PowerOfAttorney.id == power.id).with_for_update()
                       .execution_options(populate_existing=True)).one()


def _transition(tenant: Tenant, power: PowerOfAttorney, action: str, status: PowerStatus, *, actor: str,
                reason: str | None = None, at: datetime | None = None, event: str | None = None) -> None:
    """Move ``power`` to ``status``: a history line chained to the last, and an event."""
    now = at or clock.now()
    seq = power.history_seq + 1
    digest = _chain(power.history_head, _entry(power, seq, now, action, status.value, actor, reason))
    db.session.add(PowerHistory(tenant_id=tenant.id, power_id=power.id, seq=seq, at=now, action=action,
                                status=status.value, actor=actor, reason=reason, prev_hash=power.history_head,
                                hash=digest))
    power.status, power.history_seq, power.history_head, power.updated_at = status, seq, digest, clock.now()
    db.session.flush()
    if event is not None:
        fetched_by = list(db.session.scalars(select(PowerFetch.fetched_by).where(PowerFetch.power_id == power.id)
                                             .order_by(PowerFetch.id)))
        events.emit(tenant, event, f"power:{power.public_id}",
                    {"power": power.public_id, "status": status.value, "corporate_number": power.corporate_number,
                     "reason": reason, "at": now.isoformat(), "fetched_by": fetched_by})


def history(power: PowerOfAttorney | PowerState) -> list[PowerHistory]:
    return list(db.session.scalars(select(PowerHistory).where(PowerHistory.power_id == power.id)
                                   .order_by(PowerHistory.seq)))


def verify_history(power: PowerOfAttorney) -> list[str]:
    """Problems with the power's history chain (an edited, removed or added line); [] if none."""
    problems, prev = [], ""
    entries = history(power)
    for expected, row in enumerate(entries, start=1):
        if row.seq != expected:
            problems.append(f"line {expected} is missing")
            break
        digest = _chain(prev, _entry(power, row.seq, row.at, row.action, row.status, row.actor, row.reason))
        if row.prev_hash != prev or row.hash != digest:
            problems.append(f"line {row.seq} was altered")
        prev = row.hash
    if not problems and (power.history_seq != len(entries) or power.history_head != prev):
        problems.append("the newest lines were removed")
    return problems


# -- the signing ceremony ----------------------------------------------------------------------------

def submit(tenant: Tenant, power: PowerOfAttorney, *, actor: str) -> str:
    """Send the draft to the representative: returns the signing link (shown once)."""
    _lock(power)
    if power.status is not PowerStatus.DRAFT:
        raise PowerError(_l("Only a draft can be sent for signature."), code="invalid_state", status=409)
    token = secrets.token_urlsafe(32)
    power.signing_token_hash = hashlib.sha256(token.encode()).hexdigest()
    power.signing_expires_at = clock.now() + SIGNING_LINK_LIFETIME
    _transition(tenant, power, "submitted", PowerStatus.AWAITING_SIGNATURE, actor=actor,
                event="delegation.power.submitted")
    return urls.external("delegation_pages.sign", tenant_slug=tenant.slug, token=token)


def by_signing_token(token: str) -> PowerOfAttorney:
    power = db.session.scalar(select(PowerOfAttorney).where(
        PowerOfAttorney.signing_token_hash == hashlib.sha256(token.encode()).hexdigest()))
    if power is None or power.status is not PowerStatus.AWAITING_SIGNATURE \
            or power.signing_expires_at is None or power.signing_expires_at <= clock.now():
        raise NotFound(_l("This signing link is unknown, used or expired. Ask for a new one."),
                       code="signing_link_invalid")
    return power


def payload(tenant: Tenant, power: PowerOfAttorney) -> dict[str, Any]:
    """The power as the representative signs it, with the text the agent shows."""
    agents = [{"name": a.name, "affiliation": a.affiliation} for a in agents_of(power)]
    body: dict[str, Any] = {
        "type": "kakehashi/power-of-attorney", "version": 1, "id": power.public_id,
        # The mode read afresh, as the register and the roots it is checked with are.
        "issuer": urls.tenant_issuer(tenant.slug), "mode": tenants.mode_now(tenant, writing=True).value,
        "method": power.method,
        "principal": {"corporate_number": power.corporate_number, "name": power.principal_name,
                      "address": power.principal_address},
        "agents": agents, "agency": power.agency, "matters": json.loads(power.matters),
        "authorization_details": json.loads(power.authorization_details),
        "valid_from": records.signing_time(power.valid_from), "valid_until": records.signing_time(power.valid_until),
        "subdelegation_allowed": power.subdelegation_allowed, "verification_code": power.verification_code,
    }
    if power.parent_id is not None:
        body["parent"] = db.session.scalar(select(PowerOfAttorney.public_id).where(PowerOfAttorney.id == power.parent_id))
    if power.replaces_id is not None:
        body["replaces"] = db.session.scalar(select(PowerOfAttorney.public_id)
                                             .where(PowerOfAttorney.id == power.replaces_id))
    body["text"] = statement(body)
    return body


def statement(body: dict[str, Any]) -> str:
    """The human-readable power (Japanese; the card's language), as the agent shows it."""
    jst = timezone(timedelta(hours=9))

    def day(value: str) -> str:
        return records.parse_time(value).astimezone(jst).strftime("%Y年%m月%d日 %H:%M")

    lines = [f"委任状（{body['id']}）",
             f"委任者: {body['principal']['name']}（法人番号 {body['principal']['corporate_number']}）",
             f"所在地: {body['principal']['address']}",
             "代理人: " + "、".join(f"{a['name']}（{a['affiliation']}）" if a["affiliation"] else a["name"]
                                  for a in body["agents"]),
             "共同代理: 全員が共同して行う" if body["agency"] == "joint" else "各代理人が単独で行う",
             "委任事項:"]
    lines += [f"  {i}. {matter}" for i, matter in enumerate(body["matters"], start=1)]
    lines.append("委任の範囲（機械可読、RFC 9396 authorization_details）:")
    for i, detail in enumerate(body["authorization_details"], start=1):
        lines += [f"  {i}. " + line if n == 0 else "     " + line for n, line in enumerate(_detail_lines(detail))]
    lines += [f"期間: {day(body['valid_from'])} から {day(body['valid_until'])} まで（日本時間）",
              "復代理: " + ("認める" if body["subdelegation_allowed"] else "認めない")]
    if body.get("parent"):
        lines.append(f"復代理の元となる委任状: {body['parent']}")
    if body.get("replaces"):
        lines.append(f"置き換える委任状: {body['replaces']}（この委任状が効力を生じた時に取り消されます）")
    lines += [f"検証コード: {body['verification_code']}",
              "上記の事項を委任します。"]
    return "\n".join(lines)


_DETAIL_LABELS = {"type": "種別", "actions": "行為", "locations": "利用先", "identifier": "識別子",
                  "datatypes": "データの種類", "privileges": "権限"}


def _detail_lines(detail: dict[str, Any]) -> list[str]:
    """One RFC 9396 object as the representative reads it: every member, none left out."""
    lines = []
    for name in (*_DETAIL_LABELS, "limits", *sorted(set(detail) - {*_DETAIL_LABELS, "limits"})):
        if name not in detail:
            continue
        value = detail[name]
        amount = value.get("amount") if name == "limits" and isinstance(value, dict) and len(value) == 1 else None
        if isinstance(amount, dict) and set(amount) == {"currency", "max"}:
            ceiling = amount["max"]
            shown = f"{int(ceiling):,}" if isinstance(ceiling, float) and ceiling.is_integer() else f"{ceiling:,}"
            lines.append(f"金額の上限: {shown} {amount['currency']}")
        elif isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            shown = value if isinstance(value, str) else "、".join(value)
            lines.append(f"{_DETAIL_LABELS.get(name, name)}: {shown}")
        else:
            lines.append(f"{name}: {json.dumps(value, ensure_ascii=False, sort_keys=True)}")
    return lines


@dataclass(frozen=True)
class SigningRequest:
    digest: bytes
    text: str


def start_signing(tenant: Tenant, power: PowerOfAttorney) -> SigningRequest:
    """What the card signs now: the JWS signing input of the power, with the time."""
    now = clock.now()
    body = payload(tenant, power)
    prepared = records.signing_input(body, now)
    power.signing_time = records.signing_time(now)
    power.signing_digest = prepared.digest.hex()
    db.session.flush()
    return SigningRequest(prepared.digest, body["text"])


def complete_signing(tenant: Tenant, power: PowerOfAttorney, *, signature: bytes, certificate: bytes,
                     expected_person: int) -> None:
    """Verify the representative's signature (its certificate paired with the card that
    logged in: ``expected_person``) and status; seal and activate, or queue the paper
    review when the register cannot confirm the representative."""
    _lock(power)  # a second release of the same signature finds it done
    if power.signing_time is None or power.signing_digest is None:
        raise PowerError(_l("Start the signature again."), code="signing_not_started", status=409)
    signed_at = records.parse_time(power.signing_time)
    if clock.now() - signed_at > SIGNING_WINDOW:
        raise PowerError(_l("The signature took too long. Start again."), code="signing_expired", status=409)
    prepared = records.signing_input(payload(tenant, power), signed_at)
    if prepared.digest.hex() != power.signing_digest:
        raise PowerError(_l("The power changed while it was being signed. Start again."), code="signing_stale",
                         status=409)
    shared = jpki_stores()
    try:
        verified = verify_signature(digest=prepared.digest, signature=signature, certificate=certificate,
                                    store=login.trust_stores(tenant).signature,
                                    revocation=LayeredRevocation(shared.revocations), signed_at=signed_at)
    except VerificationFailed as error:
        raise PowerError(_l("The card's signature was not accepted: %(reason)s", reason=error.detail),
                         code=f"signature_{error.code.split(':')[0]}") from None
    person = shared.persons.person_of(verified.issuer_key_id, verified.serial)
    if person != expected_person:
        # J-LIS pairs a person's two certificates; an unpaired signature certificate could
        # be anyone's.
        raise PowerError(_l("The signature certificate is not paired with the card you logged in with."),
                         code="signature_not_paired", status=403)
    power.representative_name = verified.attributes.name
    power.representative_person_id = person
    power.signed_at = signed_at
    power.signing_token_hash = power.signing_digest = None
    signed = records.representative_jws(prepared, signature, certificate)
    confirmed = _confirm_representative(tenant, power, verified.attributes.name, verified.attributes.address)
    if confirmed is None:
        power.record = json.dumps({"pending_review": signed}, ensure_ascii=False)
        _transition(tenant, power, "signed", PowerStatus.AWAITING_REVIEW, actor=f"representative {power.representative_name}",
                    event="delegation.power.review_requested")
        return
    register, title = confirmed
    power.representative_title = title
    power.verification_route = "register"
    _seal(tenant, power, signed, {"route": "register", "register_as_of": register.as_of.isoformat(),
                                  "title": title}, certificate=certificate, serial=verified.serial)
    _transition(tenant, power, "activated", PowerStatus.ACTIVE, actor=f"representative {power.representative_name}",
                event="delegation.power.activated")
    _revoke_replaced(tenant, power, actor=f"representative {power.representative_name}")


def _confirm_representative(tenant: Tenant, power: PowerOfAttorney, name: str,
                            address: str) -> tuple[RegisterRecord, str] | None:
    """(register record, title) when the register lists this person as a current
    representative, matched by name and address; None when it cannot say (no register,
    or the company keeps the representative's address out of it)."""
    register = commercial_register(tenant)
    record = register.lookup(power.corporate_number) if register is not None else None
    if record is None:
        return None
    for representative in record.representatives:
        if _same(representative.name, name) and representative.address is not None \
                and _same(representative.address, address):
            return record, representative.title
    if any(_same(r.name, name) and r.address is None for r in record.representatives):
        return None  # the name matches but the address is hidden: the paper route
    raise PowerError(_l("The commercial register does not list the card holder as a representative of "
                        "%(name)s.", name=record.name), code="not_a_representative", status=403)


def _seal(tenant: Tenant, power: PowerOfAttorney, signed: dict[str, Any] | None, route: dict[str, Any], *,
          certificate: bytes | None = None, serial: int | None = None, payload_b64: str | None = None,
          evidence: dict[str, Any] | None = None) -> None:
    kid, key = keys.signing_key(tenant, "ES256")
    payload_b64 = signed["payload"] if signed is not None else payload_b64
    assert payload_b64 is not None
    stamped = records.unb64u(signed["signature"] if signed is not None else payload_b64)
    try:
        token = timestamp_authority(tenant).stamp(stamped)
    except timestamps.TimestampError as error:
        raise PowerError(_l("The time-stamping authority could not stamp the signature (%(reason)s). Try again.",
                            reason=error.detail), code=error.code, status=503) from None
    claims: dict[str, Any] = {
        "iss": urls.tenant_issuer(tenant.slug), "power": power.public_id, "method": power.method,
        "payload_digest": records.sha256_hex(records.unb64u(payload_b64)), "tst_digest": records.sha256_hex(token),
        "evidence_digest": records.evidence_digest(evidence), "sealed_at": records.signing_time(clock.now()), **route}
    if signed is not None and certificate is not None:
        claims["sigT"] = power.signing_time
        claims["signer"] = {"x5t#S256": records.b64u(hashlib.sha256(certificate).digest()), "serial": str(serial),
                            "name": power.representative_name}
        claims["revocation_checked_at"] = power.signing_time
    record = records.record_file(method=power.method, seal_value=records.seal(claims, key),
                                 seal_key=key.as_dict(private=False), signature=signed,
                                 payload=None if signed is not None else payload_b64, evidence=evidence,
                                 timestamp={"token": base64.b64encode(token).decode(),
                                            "over": "signature" if signed is not None else "payload"})
    power.record = json.dumps(record, ensure_ascii=False)
    power.record_digest = records.sha256_hex(records.canonical(record))
    power.activated_at = clock.now()


def review(tenant: Tenant, power: PowerOfAttorney, *, approve: bool, reviewer: str, evidence: str) -> None:
    """An operator's decision on the paper route (seal certificate, register extract)."""
    _lock(power)
    if power.status is not PowerStatus.AWAITING_REVIEW:
        raise PowerError(_l("This power is not waiting for a review."), code="invalid_state", status=409)
    evidence = _text(evidence, "evidence", 500)
    if not approve:
        power.ended_at, power.end_reason, power.ended_by = clock.now(), evidence, reviewer
        _transition(tenant, power, "review_rejected", PowerStatus.REVOKED, actor=reviewer, reason=evidence,
                    event="delegation.power.revoked")
        return
    pending = json.loads(power.record or "{}").get("pending_review")
    power.verification_route = "paper"
    _seal(tenant, power, None, {"route": "paper", "reviewed_by": reviewer},
          payload_b64=pending["payload"] if pending else None,
          evidence={"reviewed_by": reviewer, "evidence": evidence, "representative_signature": pending})
    _transition(tenant, power, "reviewed", PowerStatus.ACTIVE, actor=reviewer, reason=evidence,
                event="delegation.power.activated")
    _revoke_replaced(tenant, power, actor=reviewer)


def _revoke_replaced(tenant: Tenant, power: PowerOfAttorney, *, actor: str) -> None:
    """A reissue now in force revokes the power it replaces (a change is a revocation and a
    new power), with that one's sub-delegations."""
    replaced = db.session.get(PowerOfAttorney, power.replaces_id) if power.replaces_id is not None else None
    if replaced is None:
        return
    _lock(replaced)
    if replaced.status not in ENDED:
        revoke(tenant, replaced, actor=actor, reason=f"replaced by {power.public_id}")


# -- ending and suspending ----------------------------------------------------------------------------

def suspend(tenant: Tenant, power: PowerOfAttorney, *, actor: str, reason: str) -> None:
    _lock(power)
    if power.status is not PowerStatus.ACTIVE:
        raise PowerError(_l("Only a power in force can be suspended."), code="invalid_state", status=409)
    _transition(tenant, power, "suspended", PowerStatus.SUSPENDED, actor=actor,
                reason=_text(reason, "reason", 500), event="delegation.power.suspended")


def resume(tenant: Tenant, power: PowerOfAttorney, *, actor: str) -> None:
    _lock(power)
    if power.status is not PowerStatus.SUSPENDED:
        raise PowerError(_l("Only a suspended power can be resumed."), code="invalid_state", status=409)
    _transition(tenant, power, "resumed", PowerStatus.ACTIVE, actor=actor, event="delegation.power.resumed")


def revoke(tenant: Tenant, power: PowerOfAttorney, *, actor: str, reason: str) -> list[str]:
    """Revoke the power and, Civil Code art. 104 permitting sub-agents only under it,
    every sub-delegation below it; returns the ids revoked."""
    _lock(power)
    if power.status in ENDED:
        raise PowerError(_l("This power has already ended."), code="invalid_state", status=409)
    reason = _text(reason, "reason", 500)
    now = clock.now()
    revoked, pending = [], [power]
    while pending:
        current = pending.pop()
        if current.status in ENDED:
            continue
        current.ended_at, current.end_reason, current.ended_by = now, reason, actor
        current.signing_token_hash = None
        why = reason if current is power else f"parent {power.public_id} revoked: {reason}"[:500]
        _transition(tenant, current, "revoked", PowerStatus.REVOKED, actor=actor, reason=why, at=now,
                    event="delegation.power.revoked")
        revoked.append(current.public_id)
        pending += list(db.session.scalars(select(PowerOfAttorney).where(PowerOfAttorney.parent_id == current.id)
                                           .with_for_update().execution_options(populate_existing=True)))
    return revoked


def expire_due(tenant: Tenant) -> int:
    """Powers past their end: expired as of that moment (a job runs this daily)."""
    count = 0
    for power in db.session.scalars(select(PowerOfAttorney).where(
            PowerOfAttorney.status.in_([PowerStatus.ACTIVE, PowerStatus.SUSPENDED]),
            PowerOfAttorney.valid_until <= clock.now()).with_for_update()):
        _transition(tenant, power, "expired", PowerStatus.EXPIRED, actor="kakehashi", at=power.valid_until,
                    event="delegation.power.expired")
        count += 1
    return count


# -- presenting ---------------------------------------------------------------------------------------

def status_as_of(power: PowerOfAttorney | PowerState, at: datetime, entries: list[PowerHistory] | None = None) -> str:
    """The power's status at ``at``, from its history and validity: ``active``,
    ``suspended``, ``revoked``, ``expired``, ``not_yet_valid`` or ``not_in_force``
    (not signed yet at that moment)."""
    status = None
    for row in history(power) if entries is None else entries:
        if row.at > at:
            break
        status = row.status
    return _in_effect(power, status, at)


def _in_effect(power: PowerOfAttorney | PowerState, status: str | None, at: datetime) -> str:
    """A recorded status as a relying party reads it at ``at``, validity taken into account."""
    if status in (None, "draft", "awaiting_signature", "awaiting_review"):
        return "not_in_force"
    if status in ("active", "suspended") and at >= power.valid_until:
        return "expired"
    if status == "active" and at < power.valid_from:
        return "not_yet_valid"
    return str(status)


def describe(power: PowerOfAttorney) -> dict[str, Any]:
    return {**_content(power), **_state_fields(power)}


def _content(power: PowerOfAttorney, agents: list[PowerAgent] | None = None) -> dict[str, Any]:
    """What a power says that its sealed record fixes."""
    return {
        "id": power.public_id, "method": power.method, "mode": signed_mode(power),
        "principal": {"corporate_number": power.corporate_number, "name": power.principal_name,
                      "address": power.principal_address},
        "representative": {"name": power.representative_name, "title": power.representative_title,
                           "confirmed_by": power.verification_route} if power.representative_name else None,
        "agents": [{"name": a.name, "affiliation": a.affiliation}
                   for a in (agents_of(power) if agents is None else agents)],
        "agency": power.agency, "matters": json.loads(power.matters),
        "authorization_details": json.loads(power.authorization_details),
        "subdelegation_allowed": power.subdelegation_allowed, "verification_code": power.verification_code,
    }


def _state_fields(power: PowerOfAttorney | PowerState) -> dict[str, Any]:
    return {
        "status": power.status.value, "valid_from": power.valid_from.isoformat(),
        "valid_until": power.valid_until.isoformat(),
        "signed_at": power.signed_at.isoformat() if power.signed_at else None,
        "ended_at": power.ended_at.isoformat() if power.ended_at else None, "end_reason": power.end_reason,
        "record_digest": power.record_digest,
    }


def receipt(tenant: Tenant, power: PowerOfAttorney | PowerState, *, at: datetime, fetched_by: str,
            mode: TenantMode, entries: list[PowerHistory] | None = None) -> tuple[str, str]:
    """(status as of ``at``, a signed statement of it: ES256 with the tenant's key), made in
    ``mode`` (the fetching key's: a sandbox receipt proves nothing live)."""
    kid, key = keys.signing_key(tenant, "ES256")
    if entries is None and at >= power.updated_at:  # nothing happened since: the row says it all
        head, status = power.history_head, _in_effect(power, power.status.value, at)
    else:
        entries = history(power) if entries is None else entries
        head = ""
        for row in entries:
            if row.at > at:
                break
            head = row.hash
        status = status_as_of(power, at, entries)
    claims = {"iss": urls.tenant_issuer(tenant.slug), "iat": int(clock.now().timestamp()),
              "power": power.public_id, "mode": mode.value, "as_of": records.signing_time(at), "status": status,
              "record_digest": power.record_digest, "history_hash": head, "aud": fetched_by,
              "valid_from": records.signing_time(power.valid_from),
              "valid_until": records.signing_time(power.valid_until)}
    return status, jws.serialize_compact({"alg": "ES256", "typ": RECEIPT_TYPE, "kid": kid},
                                         records.canonical(claims), key)


# What a relying party's own webhook hears of the powers its key fetched.
RELYING_PARTY_EVENTS = ("delegation.power.suspended", "delegation.power.resumed", "delegation.power.revoked",
                        "delegation.power.expired")
_PENDING_FETCHES = "kakehashi.pending_fetches"


def _fetches_recorded() -> set[tuple[int, int, str]]:
    """(tenant, power, party) this app knows to be stored (per app: per database)."""
    return current_app.extensions.setdefault("kakehashi.recorded_fetches", set())  # type: ignore[no-any-return]


def record_fetch(tenant: Tenant, power: PowerOfAttorney | PowerState, fetched_by: str) -> None:
    """Remember who fetched the power, to tell them when it ends (one statement; a party
    this process has seen fetch it already costs none)."""
    seen = (tenant.id, power.id, fetched_by)
    if seen in _fetches_recorded():
        return
    db.session.execute(db.dialect_insert(PowerFetch).values(tenant_id=tenant.id, power_id=power.id, fetched_by=fetched_by,
                                                 first_at=clock.now())
                       .on_conflict_do_nothing(index_elements=["tenant_id", "power_id", "fetched_by"]))
    db.session.info.setdefault(_PENDING_FETCHES, []).append(seen)


@event.listens_for(Session, "after_commit")
def _fetches_stored(session: Session) -> None:
    stored = session.info.pop(_PENDING_FETCHES, ())
    if stored:  # (kept per app: an app whose test data is rolled back away takes its memo with it)
        recorded = _fetches_recorded()
        if len(recorded) > 200_000:
            recorded.clear()
        recorded.update(stored)


@event.listens_for(Session, "after_rollback")
def _fetches_not_stored(session: Session) -> None:
    session.info.pop(_PENDING_FETCHES, None)


def counts() -> tuple[dict[str, int], int]:
    """(powers per status, fetches by relying parties) for the session's tenant."""
    from sqlalchemy import func

    per_status = {status.value: n for status, n in db.session.execute(
        select(PowerOfAttorney.status, func.count()).group_by(PowerOfAttorney.status))}
    return per_status, db.session.scalar(select(func.count()).select_from(PowerFetch)) or 0


def search(*, corporate_number_value: str, mode: TenantMode, agent_name: str | None = None,
           limit: int = 100) -> list[PowerOfAttorney]:
    """The corporation's powers (newest first) that a relying party's key of ``mode`` sees."""
    query = select(PowerOfAttorney).where(PowerOfAttorney.corporate_number == corporate_number_value)
    if agent_name:
        query = query.where(PowerOfAttorney.id.in_(select(PowerAgent.power_id).where(
            PowerAgent.name == " ".join(agent_name.split()))))
    return [power for power in db.session.scalars(query.order_by(PowerOfAttorney.id.desc()).limit(limit))
            if shown_to(signed_mode(power), mode)]


def signed_mode(power: PowerOfAttorney) -> str | None:
    """The mode the power was signed in, as its signed payload says; None until signed."""
    record = json.loads(power.record) if power.record else {}
    signed = record.get("signature") or record.get("pending_review") or {}
    payload_b64 = signed.get("payload") or record.get("payload")
    return json.loads(records.unb64u(payload_b64)).get("mode") if payload_b64 else None


# -- agents and their cards -----------------------------------------------------------------------

BINDING_LINK_LIFETIME = timedelta(days=14)
POWER_DETAIL_TYPE = "kakehashi_power_of_attorney"


def binding_link(tenant: Tenant, power: PowerOfAttorney, position: int) -> str:
    """A one-time link for the agent at ``position`` to bind their card to the power (also
    mailed when the agent has an address); shown once."""
    if power.status in ENDED:
        raise PowerError(_l("This power has already ended."), code="invalid_state", status=409)
    agent = db.session.scalar(select(PowerAgent).where(PowerAgent.power_id == power.id,
                                                       PowerAgent.position == position))
    if agent is None:
        raise NotFound(_l("This power has no such agent."), code="agent_not_found")
    token = secrets.token_urlsafe(32)
    agent.binding_token_hash = hashlib.sha256(token.encode()).hexdigest()
    agent.binding_expires_at = clock.now() + BINDING_LINK_LIFETIME
    db.session.flush()
    link = urls.external("delegation_pages.bind", tenant_slug=tenant.slug, token=token)
    if agent.email:
        from saas.mail import services as mail

        mail.send(agent.email, f"【架け橋】{power.principal_name} の代理人としてカードを登録してください",
                  f"{agent.name} 様\n\n{power.principal_name} があなたを代理人とする電子委任状を用意しました。"
                  f"\n次のリンクを開き、マイナンバーカードで本人確認をしてください（{BINDING_LINK_LIFETIME.days}日間有効）。"
                  f"\n\n{link}\n\n{tenant.display_name}（架け橋）")
    return link


def agent_by_binding_token(token: str) -> tuple[PowerOfAttorney, PowerAgent]:
    agent = db.session.scalar(select(PowerAgent).where(
        PowerAgent.binding_token_hash == hashlib.sha256(token.encode()).hexdigest()))
    power = db.session.get(PowerOfAttorney, agent.power_id) if agent is not None else None
    if agent is None or power is None or power.status in ENDED or agent.binding_expires_at is None \
            or agent.binding_expires_at <= clock.now():
        raise NotFound(_l("This link is unknown, used or expired. Ask for a new one."), code="binding_link_invalid")
    return power, agent


def bind_agent(agent: PowerAgent, person_id: int) -> None:
    """The card that logged in through the agent's link is the agent's from now on."""
    agent.person_id, agent.bound_at = person_id, clock.now()
    agent.binding_token_hash = agent.binding_expires_at = None
    db.session.flush()


def present_for_login(tenant: Tenant, person_id: int, sub: str, client_id: str,
                      requested: dict[str, Any]) -> list[dict[str, Any]]:
    """RFC 9396 objects for an OIDC login: the powers in force now in which this person is
    a bound agent (optionally of one corporation); the client is told when one ends."""
    now = clock.now()
    query = (select(PowerOfAttorney).join(PowerAgent, PowerAgent.power_id == PowerOfAttorney.id)
             .where(PowerAgent.person_id == person_id, PowerOfAttorney.status == PowerStatus.ACTIVE,
                    PowerOfAttorney.valid_from <= now, PowerOfAttorney.valid_until > now)
             .order_by(PowerOfAttorney.id))
    if isinstance(requested.get("corporate_number"), str):
        query = query.where(PowerOfAttorney.corporate_number == requested["corporate_number"])
    presented = []
    for power in db.session.scalars(query).unique():
        record_fetch(tenant, power, client_id)
        body = describe(power)
        presented.append({
            "type": POWER_DETAIL_TYPE, "power_id": power.public_id, "principal": body["principal"],
            "agents": body["agents"], "agency": body["agency"], "matters": body["matters"],
            "authorization_details": body["authorization_details"], "valid_from": body["valid_from"],
            "valid_until": body["valid_until"], "verification_code": power.verification_code,
            "record_digest": power.record_digest,
            # RFC 8693-style: the person logged in (sub) acts for the principal.
            "act": {"sub": sub}})
    return presented


def issue_access_code(tenant: Tenant, power: PowerOfAttorney) -> str:
    """A one-time code for the agent to give a relying party (``PAC-XXXX-XXXX-XXXX``)."""
    if power.status is not PowerStatus.ACTIVE:
        raise PowerError(_l("Only a power in force can be shown with an access code."), code="invalid_state",
                         status=409)
    code = "PAC-" + _verification_code()[:14]
    db.session.add(PowerAccessCode(tenant_id=tenant.id, power_id=power.id, code_hash=_code_hash(code),
                                   created_at=clock.now(), expires_at=clock.now() + ACCESS_CODE_LIFETIME))
    db.session.flush()
    return code


def _code_hash(code: str) -> str:
    return hashlib.sha256("".join(code.upper().split()).encode()).hexdigest()


def redeem_access_code(code: str, *, used_by: str, mode: TenantMode) -> PowerOfAttorney:
    """The power behind a one-time code, once; another tenant's code is not found, nor a
    sandbox power's by a live key (:func:`shown_to`)."""
    now = clock.now()
    power_id = db.session.scalar(
        update(PowerAccessCode).where(PowerAccessCode.code_hash == _code_hash(code or ""),
                                      PowerAccessCode.used_at.is_(None), PowerAccessCode.expires_at > now)
        .values(used_at=now, used_by=used_by).returning(PowerAccessCode.power_id)
        .execution_options(synchronize_session=False))
    if power_id is None:
        raise NotFound(_l("This access code is unknown, used or expired."), code="access_code_not_found")
    power = db.session.get(PowerOfAttorney, power_id)
    assert power is not None
    if not shown_to(signed_mode(power), mode):
        raise _sandbox_power()  # the request rolls back: the code stays unused
    return power
