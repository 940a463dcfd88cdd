"""Keeping the service's view of the sandbox current (queue ``crl``).

The same ingest code reads the live feeds: a CRL goes through
:meth:`RevocationStore.ingest` and a linkage feed through
:meth:`PersonRegistry.apply_linkage`, whoever published them.
"""

from __future__ import annotations

from typing import Any

from saas import clock, db
from saas.jpki.certificates import CertificateKind
from saas.jpki.errors import JPKIError
from saas.sandbox import services
from saas.stores import jpki_stores

LINKAGE_FEED = "sandbox"
PAGE = 1000


def refresh_revocation_data() -> dict[str, Any]:
    """Ingest the sandbox's newest CRLs and apply its linkage feed; safe to repeat."""
    stores = services.trust_stores()
    crls = {kind: services.current_crls(kind) for kind in CertificateKind}  # every generation
    db.session.commit()  # publish first: the stores below use their own connections
    shared = jpki_stores()
    revocations = shared.revocations
    ingested: dict[str, int] = {}
    for kind, generations in crls.items():
        for der in generations.values():
            try:
                entries = revocations.ingest(der, stores.for_kind(kind), at=clock.now()).entries
            except JPKIError as error:
                if error.code != "stale_crl_number":  # already have this one: nothing to do
                    raise
                continue
            ingested[kind.value] = ingested.get(kind.value, 0) + entries
    registry = shared.persons
    linked = 0
    while entries := services.linkage_feed(after=registry.position(LINKAGE_FEED), limit=PAGE):
        linked += registry.apply_linkage(LINKAGE_FEED, entries, at=clock.now())
        if len(entries) < PAGE:
            break
    return {"crl_entries": ingested, "linked": linked}
