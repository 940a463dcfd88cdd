"""Card login for a tenant: the challenge, the token's verification, and the subject.

The trust stores follow the tenant's mode (live: the pinned J-LIS roots; sandbox: the
sandbox roots, never both). Revocation comes from the shared store (and OCSP when one is
configured); a first verified login creates the person, renewals keep it through the
linkage feed, and the relying party sees a pairwise ``sub``: the same person has a
different, stable subject at every tenant, and no global identifier leaves the service.
The session must be bound to the tenant (the URL does it; tenant_scope elsewhere).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from saas import clock, db
from saas.jpki.certificates import CertificateKind
from saas.jpki.revocation import LayeredRevocation
from saas.jpki.trust import TrustStores, live_stores
from saas.jpki.webeid import Challenge, VerifiedAuthentication, new_challenge, verify_token
from saas.oidc.models import Subject
from saas.stores import jpki_stores
from saas.tenants.models import Tenant, TenantMode
from saas.tenants.services import mode_now


@dataclass(frozen=True)
class CardLogin:
    sub: str
    person_id: int
    authentication: VerifiedAuthentication


def trust_stores(tenant: Tenant) -> TrustStores:
    if mode_now(tenant, writing=True) is TenantMode.LIVE:  # a login: it writes next
        return live_stores()
    from saas.sandbox import services as sandbox

    return sandbox.trust_stores()


def issue_challenge() -> Challenge:
    """A single-use challenge for the login page to hand to the bridge agent."""
    challenge = new_challenge(at=clock.now())
    jpki_stores().nonces.put(challenge)
    return challenge


def verify_card_login(tenant: Tenant, token: object, *, nonce: str, origin: str) -> CardLogin:
    """Verify the agent's token for this tenant; raises VerificationFailed with its code."""
    # The stores below write on their own connections (a spent challenge must stay spent
    # even when this request fails).
    auth_store = trust_stores(tenant).auth
    db.before_writes_elsewhere(db.session)
    shared = jpki_stores()
    now = clock.now()
    authentication = verify_token(token, nonce=nonce, origin=origin, nonces=shared.nonces,
                                  store=auth_store, revocation=LayeredRevocation(shared.revocations),
                                  at=now)
    person_id = shared.persons.resolve(authentication.issuer_key_id, authentication.serial,
                                       CertificateKind.AUTH, at=now, not_after=authentication.not_after)
    return CardLogin(sub=pairwise_sub(tenant, person_id), person_id=person_id,
                     authentication=authentication)


_SUBJECTS = Subject.__table__
_SUB_OF_PERSON = db.TenantRead(_SUBJECTS, _SUBJECTS.c.sub, where=_SUBJECTS.c.person_id == bindparam("person_id"))


def pairwise_sub(tenant: Tenant, person_id: int) -> str:
    """The person's subject at this tenant, made on the first login there."""
    known = _SUB_OF_PERSON.rows(person_id=person_id, writing=True)
    if known:  # the login writes next: read on its connection
        return str(known[0].sub)
    subject = Subject(tenant_id=tenant.id, person_id=person_id, created_at=clock.now(),
                      sub=secrets.token_urlsafe(32))
    try:
        with db.session.begin_nested():  # two first logins at once: one subject wins
            db.session.add(subject)
    except IntegrityError:
        subject = db.session.scalars(select(Subject).where(Subject.person_id == person_id)).one()
    return subject.sub
