"""Operations on tenants. Services flush; the request or the job commits."""

from __future__ import annotations

import re

from flask_babel import lazy_gettext as _l
from sqlalchemy import bindparam, select

from saas import db, rowcache
from saas.errors import NotFound, ServiceError
from saas.tenants import corporate_number
from saas.tenants.models import Tenant, TenantKind, TenantMode, TenantStatus

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,38}[a-z0-9])$")
# Slugs that would read as part of the platform rather than as a tenant.
RESERVED_SLUGS = frozenset({
    "admin", "api", "app", "auth", "console", "docs", "help", "kakehashi", "login",
    "logout", "oidc", "operator", "platform", "sandbox", "static", "status", "support",
    "system", "www",
})


class TenantError(ServiceError):
    status = 422


def validate_slug(slug: str) -> str:
    if not SLUG.match(slug) or "--" in slug:
        raise TenantError(
            _l("The identifier must be 3–40 characters of a–z, 0–9 and single hyphens, "
               "starting and ending with a letter or digit."),
            code="invalid_slug", field="slug")
    if slug in RESERVED_SLUGS:
        raise TenantError(_l("This identifier is reserved."), code="reserved_slug", field="slug")
    return slug


def validate_corporate_number(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    number = corporate_number.normalise(value)
    if len(number) != 13 or not number.isascii() or not number.isdigit():
        raise TenantError(_l("A corporate number (法人番号) has 13 digits."),
                          code="invalid_corporate_number", field="corporate_number")
    if not corporate_number.is_valid(number):
        raise TenantError(_l("This corporate number (法人番号) fails its check digit: "
                             "check it against the National Tax Agency's publication site."),
                          code="invalid_corporate_number", field="corporate_number")
    return number


def create_tenant(*, slug: str, display_name: str, kind: str,
                  corporate_number: str | None = None,
                  mode: TenantMode = TenantMode.SANDBOX) -> Tenant:
    """Register a tenant. New tenants start in sandbox mode unless an operator says otherwise."""
    slug = validate_slug(slug.strip().lower())
    display_name = display_name.strip()
    if not display_name or len(display_name) > 200:
        raise TenantError(_l("The display name must be 1–200 characters."),
                          code="invalid_display_name", field="display_name")
    try:
        tenant_kind = TenantKind(kind)
    except ValueError:
        raise TenantError(_l("Unknown kind of organisation."), code="invalid_kind",
                          field="kind") from None
    number = validate_corporate_number(corporate_number)
    if db.session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
        raise TenantError(_l("This identifier is already taken."), code="slug_taken",
                          status=409, field="slug")
    tenant = Tenant(slug=slug, display_name=display_name, kind=tenant_kind,
                    corporate_number=number, mode=mode, status=TenantStatus.ACTIVE)
    db.session.add(tenant)
    db.session.flush()
    return tenant


_BY_SLUG = rowcache.RowCache("tenants")


def find_by_slug(slug: str) -> Tenant | None:
    cached = _BY_SLUG.get(slug)
    if cached is not None:
        return rowcache.attach(Tenant, cached)
    tenant = db.session.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is not None:
        _BY_SLUG.put(slug, rowcache.snapshot(tenant))
    return tenant


_TENANTS = Tenant.__table__
_MODE_OF = select(_TENANTS.c.mode).where(_TENANTS.c.id == bindparam("tenant_id"))


def mode_now(tenant: Tenant, *, writing: bool = False) -> TenantMode:
    """The tenant's mode as the database has it this moment, for every decision that lets
    something of the sandbox through (a test card or CA, a ``kk_test_`` key, a client
    secret, the sandbox register and TSA): another server's copy of the tenant may still
    say sandbox for ROW_CACHE_SECONDS after it went live. A live tenant never goes back,
    so only a sandbox copy is read again, in one narrow statement."""
    if tenant.mode is TenantMode.LIVE:
        return TenantMode.LIVE
    # Not tenant-scoped: a plain statement, no ORM work; in autocommit unless the request
    # holds a connection already or is ``writing`` anyway (a login, a signature): a relying
    # party's sandbox fetch begins no transaction, a login takes one connection.
    found = db.read_now(_MODE_OF, {"tenant_id": tenant.id}, writing=writing)
    return TenantMode(found[0].mode) if found else tenant.mode


rowcache.forget_on_change(_BY_SLUG, Tenant)


def active_tenant(slug: str) -> Tenant:
    """The tenant a ``/t/<slug>/…`` URL names: unknown or closed is a 404."""
    tenant = find_by_slug(slug)
    if tenant is None or tenant.status == TenantStatus.CLOSED:
        raise NotFound(_l("There is no such organisation on Kakehashi."),
                       code="tenant_not_found")
    if tenant.status == TenantStatus.SUSPENDED:
        raise TenantError(_l("This organisation's service is suspended."),
                          code="tenant_suspended", status=403)
    return tenant
