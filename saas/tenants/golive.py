"""Going live: an organisation's owner asks, a platform operator approves or rejects with
the reason kept. Approval switches the organisation to live mode (real JPKI cards only,
pinned J-LIS roots); its ``kk_test_`` keys stop working there and it makes ``kk_live_`` ones."""

from __future__ import annotations

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from saas import clock, db
from saas.db import all_tenants, tenant_scope
from saas.errors import NotFound, ServiceError
from saas.events import services as events
from saas.mail import services as mail
from saas.tenants import audit
from saas.tenants.models import (
    ConsoleUser,
    LiveModeRequest,
    LiveModeStatus,
    Membership,
    Role,
    Tenant,
    TenantMode,
)

MIN_USE_CASE = 20


class GoLiveError(ServiceError):
    status = 422


def pending(tenant: Tenant) -> LiveModeRequest | None:
    return db.session.scalar(select(LiveModeRequest).where(LiveModeRequest.status == LiveModeStatus.PENDING))


def history() -> list[LiveModeRequest]:
    return list(db.session.scalars(select(LiveModeRequest).order_by(LiveModeRequest.id.desc())))


def request_live(tenant: Tenant, *, use_case: str, by: ConsoleUser) -> LiveModeRequest:
    if tenant.mode is TenantMode.LIVE:
        raise GoLiveError(_l("This organisation is live already."), code="already_live", status=409)
    if pending(tenant) is not None:
        raise GoLiveError(_l("A request is waiting for review already."), code="request_pending", status=409)
    use_case = (use_case or "").strip()
    if len(use_case) < MIN_USE_CASE or len(use_case) > 4000:
        raise GoLiveError(_l("Describe in 20–4,000 characters who will log in, for what, and how many people."),
                          code="invalid_use_case", field="use_case")
    row = LiveModeRequest(tenant_id=tenant.id, requested_by=by.id, use_case=use_case,
                          status=LiveModeStatus.PENDING, created_at=clock.now())
    db.session.add(row)
    db.session.flush()
    audit.record(tenant, "live_mode.requested", actor=by, target=tenant.public_id)
    return row


# -- the operator's side --------------------------------------------------------------------------

def waiting() -> list[tuple[LiveModeRequest, Tenant]]:
    with all_tenants(db.session):
        return [(r, t) for r, t in db.session.execute(
            select(LiveModeRequest, Tenant).join(Tenant, Tenant.id == LiveModeRequest.tenant_id)
            .where(LiveModeRequest.status == LiveModeStatus.PENDING).order_by(LiveModeRequest.id)).all()]


def decide(request_id: int, *, approve: bool, reason: str, operator: ConsoleUser) -> Tenant:
    """Approve or reject a waiting request; the reason is required to reject and kept either way."""
    if not operator.is_operator:
        raise ServiceError(_l("Only platform operators decide this."), code="forbidden", status=403)
    reason = (reason or "").strip()
    if not approve and not reason:
        raise GoLiveError(_l("Say why the request is rejected: the organisation reads it."), code="reason_required",
                          field="reason")
    with all_tenants(db.session):
        row = db.session.get(LiveModeRequest, request_id)
        if row is None or row.status is not LiveModeStatus.PENDING:
            raise NotFound(_l("There is no such waiting request."), code="request_not_found")
        tenant = db.session.get(Tenant, row.tenant_id)
        assert tenant is not None
        tenant_id = tenant.id
    with tenant_scope(db.session, tenant_id):
        row = db.session.get(LiveModeRequest, request_id)
        tenant = db.session.get(Tenant, tenant_id)
        assert row is not None and tenant is not None
        row.status = LiveModeStatus.APPROVED if approve else LiveModeStatus.REJECTED
        row.decided_by, row.decision_reason, row.decided_at = operator.id, reason or None, clock.now()
        actor = f"operator {audit.actor_of(operator)}"
        if approve:
            tenant.mode = TenantMode.LIVE
            audit.record(tenant, "live_mode.approved", actor=actor, target=tenant.public_id,
                         details={"reason": reason or None})
            events.emit(tenant, "tenant.mode_changed", f"tenant:{tenant.public_id}", {"mode": "live"})
        else:
            audit.record(tenant, "live_mode.rejected", actor=actor, target=tenant.public_id, details={"reason": reason})
        owners = list(db.session.scalars(select(ConsoleUser.email).join(Membership, Membership.user_id == ConsoleUser.id)
                                         .where(Membership.role == Role.OWNER)))
        db.session.flush()
    subject = (_("%(organisation)s is live on Kakehashi", organisation=tenant.display_name) if approve
               else _("Your request to go live was not approved"))
    body = (_("Your organisation %(organisation)s is now in live mode: real My Number Cards work, test cards "
              "no longer do. Make kk_live_ API keys in the console; kk_test_ keys stop working.\n\n%(reason)s\n",
              organisation=tenant.display_name, reason=reason) if approve
            else _("The request of %(organisation)s to go live was not approved, for this reason:\n\n%(reason)s\n\n"
                   "You can send a new request from the console.\n", organisation=tenant.display_name, reason=reason))
    for email in owners:
        mail.send(email, subject, body)
    return tenant
