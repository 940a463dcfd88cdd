"""Linking a tenant's own ids to verified persons: invitations, links made at card
logins, lookups and unlinking. Every change is an event in the same transaction."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import Select, func, insert, select, update

from saas import clock, db
from saas.errors import NotFound, ServiceError
from saas.events import services as events
from saas.idlink import sweep
from saas.idlink.models import IdLink, IdLinkHistory, LinkInvitation, LinkPolicy
from saas.tenants.models import Tenant, TenantKind

LINK_DETAIL_TYPE = "kakehashi_id_link"
MAX_INVITATIONS = 1000
INVITATION_LIFETIME = timedelta(days=30)
_LOCAL_ID = re.compile(r"[\w.\-/#:@+]{1,100}")
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: typed from a letter


class LinkError(ServiceError):
    status = 422


def checked_local_id(value: Any) -> str:
    local_id = str(value or "").strip()
    if not _LOCAL_ID.fullmatch(local_id):
        raise LinkError(_l("A local id is 1 to 100 letters, digits or . - / # : @ + _ (no spaces)."),
                        code="invalid_local_id", field="local_ids")
    return local_id


def _hash(code: str) -> str:
    return hashlib.sha256("".join(code.upper().split()).replace("-", "").encode()).hexdigest()


def _new_code(prefix: str = "LNK") -> str:
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(12))
    return f"{prefix}-{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def create_invitations(tenant: Tenant, local_ids: Any) -> list[dict[str, str]]:
    """One-time codes (``LNK-XXXX-XXXX-XXXX``) that link each local id to the person who
    logs in with it; each code is returned once."""
    if not isinstance(local_ids, list) or not 1 <= len(local_ids) <= MAX_INVITATIONS:
        raise LinkError(_l("local_ids is a list of 1 to %(count)d ids.", count=MAX_INVITATIONS),
                        code="invalid_local_ids", field="local_ids")
    cleaned = []
    for index, value in enumerate(local_ids):
        try:
            cleaned.append(checked_local_id(value))
        except LinkError as error:  # say which one: the whole list is refused, nothing is made
            raise LinkError(_l("local_ids[%(index)d]: %(reason)s", index=index, reason=error.message),
                            code=error.code, field="local_ids") from None
    return invite_all(tenant, cleaned)


def invite_all(tenant: Tenant, local_ids: list[str]) -> list[dict[str, str]]:
    """Invitations for already checked local ids (no limit: the bulk import's chunks)."""
    now = clock.now()
    issued, rows = [], []
    for local_id in local_ids:
        code = _new_code()
        rows.append({"tenant_id": tenant.id, "code_hash": _hash(code), "local_id": local_id, "created_at": now,
                     "expires_at": now + INVITATION_LIFETIME, "transfer": False})
        issued.append({"local_id": local_id, "code": code, "expires_at": (now + INVITATION_LIFETIME).isoformat()})
    if rows:
        db.session.execute(insert(LinkInvitation), rows)  # one executemany: imports make tens of thousands
    return issued


def offer_transfer(tenant: Tenant, found: IdLink) -> dict[str, str]:
    """A one-time code that moves this link (a resold ticket) to the verified person who
    logs in with it; until then the current holder keeps it. The code is void once the link
    changes hands, ends or is linked again."""
    if found.status != "active":
        raise LinkError(_l("This link is not active."), code="invalid_state", status=409)
    now, code = clock.now(), _new_code("TRF")
    db.session.add(LinkInvitation(tenant_id=tenant.id, code_hash=_hash(code), local_id=found.local_id,
                                  created_at=now, expires_at=now + INVITATION_LIFETIME, link_id=found.id,
                                  transfer=True, holder_sub=found.sub))
    db.session.flush()
    return {"local_id": found.local_id, "code": code, "expires_at": (now + INVITATION_LIFETIME).isoformat()}


def _void_offers(found: IdLink) -> None:
    """Void the link's open transfer codes: it changed hands, ended or was linked again (a
    ticket listed twice is not taken from its buyer by the other listing). A code being
    redeemed at this moment is skipped, not waited for: its redemption waits for this link,
    then finds it changed."""
    offers = (select(LinkInvitation.id).where(LinkInvitation.link_id == found.id, LinkInvitation.transfer,
                                              LinkInvitation.used_at.is_(None), LinkInvitation.voided_at.is_(None))
              .with_for_update(skip_locked=True))
    db.session.execute(update(LinkInvitation).where(LinkInvitation.id.in_(offers)).values(voided_at=clock.now())
                       .execution_options(synchronize_session=False))


def _history(found: IdLink, action: str, by: str) -> None:
    db.session.add(IdLinkHistory(tenant_id=found.tenant_id, link_id=found.id, at=clock.now(), action=action,
                                 sub=found.sub, by=by[:64]))


def history(found: IdLink) -> list[IdLinkHistory]:
    return list(db.session.scalars(select(IdLinkHistory).where(IdLinkHistory.link_id == found.id)
                                   .order_by(IdLinkHistory.id)))


def several_per_person(tenant: Tenant) -> bool:
    """Whether a person may hold several of the tenant's local ids: as the tenant set it, else
    by its kind (a ticket vendor's customer holds many tickets; a patient has one number)."""
    chosen = db.session.scalar(select(LinkPolicy.several_per_person))
    return tenant.kind == TenantKind.TICKETING if chosen is None else chosen


def set_several_per_person(tenant: Tenant, several: bool, *, by: str) -> None:
    policy = db.session.scalar(select(LinkPolicy))
    if policy is None:
        policy = LinkPolicy(tenant_id=tenant.id, several_per_person=several, updated_at=clock.now(), updated_by=by)
        db.session.add(policy)
    policy.several_per_person, policy.updated_at, policy.updated_by = several, clock.now(), by
    db.session.flush()


def _already_linked() -> LinkError:
    return LinkError(_l("This person already holds another local id, and this organisation allows one per person "
                        "(unlink it first, or allow several in the console)."), code="person_already_linked",
                     status=409)


def _holds_another(tenant: Tenant, person_id: int, local_id: str) -> bool:
    """Whether the person already holds another local id where the tenant allows one each."""
    if several_per_person(tenant):
        return False
    if db.session.get_bind().dialect.name == "postgresql":  # two first links of one person at once: one waits
        db.session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(
            f"idlink:{tenant.id}:{person_id}", 0))))
    return db.session.scalar(select(IdLink.id).where(IdLink.person_id == person_id, IdLink.status == "active",
                                                     IdLink.local_id != local_id).limit(1)) is not None


def link(tenant: Tenant, *, local_id: str, person_id: int, sub: str, assurance: str, made_by: str) -> IdLink:
    """Link ``local_id`` to the person; a local id already held by another person stays theirs,
    and where the tenant allows one local id per person, a person holding one gets no other."""
    now = clock.now()
    found = db.session.scalar(select(IdLink).where(IdLink.local_id == local_id))
    if found is not None and found.status == "active" and found.person_id != person_id:
        raise LinkError(_l("This local id is linked to another person."), code="local_id_taken", status=409)
    if (found is None or found.status != "active") and _holds_another(tenant, person_id, local_id):
        raise _already_linked()
    if found is None:
        found = IdLink(tenant_id=tenant.id, local_id=local_id, person_id=person_id, sub=sub, assurance=assurance,
                       made_by=made_by, status="active", created_at=now, updated_at=now)
        db.session.add(found)
    elif found.status != "active" or found.person_id != person_id:
        found.person_id, found.sub, found.status, found.assurance = person_id, sub, "active", assurance
        found.made_by, found.updated_at = made_by, now
        _void_offers(found)  # linked again: its last holder's offers are void
    else:
        return found  # linked already
    sweep.baseline(found)
    db.session.flush()
    _history(found, "linked", made_by)
    events.emit(tenant, "idlink.link.created", f"link:{found.public_id}",
                {"link": found.public_id, "local_id": local_id, "sub": sub, "assurance": assurance})
    return found


def redeem(tenant: Tenant, code: str, *, person_id: int, sub: str, made_by: str) -> IdLink:
    """The link an invitation (or transfer) code makes for this person. A refused code is
    left unused and the LinkError says why: ``invitation_invalid`` (unknown, used or
    expired), ``local_id_taken``, ``person_already_linked`` (they may unlink the other
    first), ``transfer_void`` (the link ended or changed hands since the code was made, or
    its holder used their own code)."""
    now = clock.now()
    usable = (LinkInvitation.code_hash == _hash(code or ""), LinkInvitation.used_at.is_(None),
              LinkInvitation.expires_at > now)
    with db.session.begin_nested():  # a refusal below rolls the use of the code back
        invitation = db.session.scalar(update(LinkInvitation).where(*usable).values(used_at=now)
                                       .returning(LinkInvitation).execution_options(synchronize_session=False))
        if invitation is None:
            raise LinkError(_l("This code is unknown, used or expired."), code="invitation_invalid", status=404)
        if invitation.transfer:
            return _take_over(tenant, invitation, person_id=person_id, sub=sub, made_by=made_by)
        made = link(tenant, local_id=invitation.local_id, person_id=person_id, sub=sub, assurance="card_login",
                    made_by=made_by)
        invitation.link_id = made.id
        db.session.flush()
    return made


def _take_over(tenant: Tenant, invitation: LinkInvitation, *, person_id: int, sub: str,
               made_by: str) -> IdLink:
    # Locked: of two codes of one link redeemed at once, the second finds the link moved.
    found = (db.session.get(IdLink, invitation.link_id, with_for_update=True, populate_existing=True)
             if invitation.link_id is not None else None)
    if found is not None and found.status == "active" and (invitation.voided_at is not None
                                                           or invitation.holder_sub != found.sub):
        raise LinkError(_l("This transfer no longer applies: the link changed hands or was unlinked after the code "
                           "was made."), code="transfer_void", status=409)
    if found is None or found.status != "active" or found.person_id == person_id:
        raise LinkError(_l("This transfer no longer applies: the link ended, or it is your own."),
                        code="transfer_void", status=409)
    if _holds_another(tenant, person_id, found.local_id):
        raise _already_linked()  # the buyer holds one already, where one each is the rule
    previous = found.sub
    found.person_id, found.sub, found.assurance, found.made_by, found.updated_at = (
        person_id, sub, "card_login", made_by, clock.now())
    sweep.baseline(found)
    db.session.flush()
    _void_offers(found)
    _history(found, "transferred", made_by)
    events.emit(tenant, "idlink.link.transferred", f"link:{found.public_id}",
                {"link": found.public_id, "local_id": found.local_id, "from_sub": previous, "sub": sub})
    return found


def links_of(person_id: int) -> list[IdLink]:
    return list(db.session.scalars(select(IdLink).where(IdLink.person_id == person_id, IdLink.status == "active")
                                   .order_by(IdLink.id)))


def present_for_login(tenant: Tenant, person_id: int, sub: str, client_id: str,
                      requested: dict[str, Any]) -> list[dict[str, Any]]:
    """RFC 9396 objects for an OIDC login: the local ids this person holds at the tenant
    (with ``invitation``, after the link it makes), and when the invitation linked nothing,
    an object that says why (``invitation_refused``: the LinkError's code)."""
    refused = None
    if isinstance(requested.get("invitation"), str):
        try:
            redeem(tenant, requested["invitation"], person_id=person_id, sub=sub, made_by=client_id)
        except LinkError as error:
            refused = {"type": LINK_DETAIL_TYPE, "invitation_refused": error.code, "description": str(error.message)}
    held = [{"type": LINK_DETAIL_TYPE, "link_id": found.public_id, "local_id": found.local_id,
             "assurance": found.assurance, "linked_at": found.updated_at.isoformat()}
            for found in links_of(person_id)]
    return held + ([refused] if refused else [])


PAGE_LIMIT = 1000
CARD_FILTERS = ("valid", "revoked", "lost", "expired", "unchecked")  # unchecked: not judged yet
EXPORT_HEADER = ("link_id", "local_id", "sub", "status", "assurance", "made_by", "created_at", "updated_at",
                 "card_status", "card_reason", "card_changed_at")


def listing(*, status: str = "", card: str = "", prefix: str = "") -> Select[tuple[IdLink]]:
    """The session's tenant's links, oldest first, filtered by the link's status, the card's
    status as the sweep last saw it, and the start of the local id."""
    found = select(IdLink).order_by(IdLink.id)
    if status:
        if status not in ("active", "unlinked"):
            raise LinkError(_l("status is active or unlinked."), code="invalid_filter", field="status")
        found = found.where(IdLink.status == status)
    if card:
        if card not in CARD_FILTERS:
            raise LinkError(_l("card is one of %(values)s.", values=", ".join(CARD_FILTERS)), code="invalid_filter",
                            field="card")
        found = found.where(IdLink.card_status.is_(None) if card == "unchecked" else IdLink.card_status == card)
    if prefix:
        if not _LOCAL_ID.fullmatch(prefix):
            raise LinkError(_l("Search by the start of a local id (letters, digits or . - / # : @ + _)."),
                            code="invalid_filter", field="local_id_prefix")
        found = found.where(IdLink.local_id.startswith(prefix, autoescape=True))
    return found


def page(found: Select[tuple[IdLink]], *, after: str = "", limit: str = "100") -> tuple[list[IdLink], str | None]:
    """Up to ``limit`` links of a listing after the link ``after`` (a page's last), and the
    last of this page when more follow."""
    if not limit.isdigit() or not 1 <= int(limit) <= PAGE_LIMIT:
        raise LinkError(_l("limit is a whole number from 1 to %(most)d.", most=PAGE_LIMIT), code="invalid_filter",
                        field="limit")
    if after:
        position = db.session.scalar(select(IdLink.id).where(IdLink.public_id == after))
        if position is None:
            raise LinkError(_l("after names no link of this organisation."), code="invalid_cursor", field="after")
        found = found.where(IdLink.id > position)
    rows = list(db.session.scalars(found.limit(int(limit) + 1)))
    return rows[:int(limit)], rows[int(limit) - 1].public_id if len(rows) > int(limit) else None


def export_row(found: IdLink) -> tuple[Any, ...]:
    return (found.public_id, found.local_id, found.sub, found.status, found.assurance, found.made_by,
            found.created_at, found.updated_at, found.card_status or "", found.card_reason or "",
            found.card_changed_at)


def counts() -> dict[str, int]:
    """Links per status for the session's tenant."""
    return dict(db.session.execute(select(IdLink.status, func.count()).group_by(IdLink.status)).all())


def overview() -> dict[str, Any]:
    """For the console: links per status, active links per card status, the sweep's latest
    50 changes (with their local ids)."""
    cards = dict(db.session.execute(select(IdLink.card_status, func.count()).where(IdLink.status == "active")
                                    .group_by(IdLink.card_status)).all())
    changes = db.session.execute(select(IdLinkHistory, IdLink.local_id).join(
        IdLink, IdLink.id == IdLinkHistory.link_id).where(IdLinkHistory.by == "sweep")
        .order_by(IdLinkHistory.id.desc()).limit(50)).all()
    return {"counts": counts(), "cards": cards, "changes": changes}


def get(public_id: str) -> IdLink:
    found = db.session.scalar(select(IdLink).where(IdLink.public_id == public_id))
    if found is None:
        raise NotFound(_l("There is no such link."), code="link_not_found")
    return found


def find(local_id: str) -> IdLink:
    found = db.session.scalar(select(IdLink).where(IdLink.local_id == local_id))
    if found is None:
        raise NotFound(_l("There is no such link."), code="link_not_found")
    return found


def unlink(tenant: Tenant, found: IdLink, *, by: str) -> None:
    if found.status != "active":
        raise LinkError(_l("This link is not active."), code="invalid_state", status=409)
    found.status, found.updated_at = "unlinked", clock.now()
    db.session.flush()
    _void_offers(found)
    _history(found, "unlinked", by)
    events.emit(tenant, "idlink.link.unlinked", f"link:{found.public_id}",
                {"link": found.public_id, "local_id": found.local_id, "sub": found.sub})


def describe(found: IdLink) -> dict[str, Any]:
    return {"id": found.public_id, "local_id": found.local_id, "sub": found.sub, "assurance": found.assurance,
            "made_by": found.made_by, "status": found.status, "created_at": found.created_at.isoformat(),
            "updated_at": found.updated_at.isoformat(),
            # The person's card as the daily sweep last saw it (null until it could judge).
            "card": {"status": found.card_status, "reason": found.card_reason,
                     "changed_at": found.card_changed_at.isoformat() if found.card_changed_at else None}}
