"""Job functions the job tests enqueue (importable by the rq worker process too)."""

from __future__ import annotations

from saas import jobs
from saas.tenants import services as tenants


def tenant_exists(slug: str) -> bool:
    return tenants.find_by_slug(slug) is not None


def create_tenant(slug: str) -> str:
    tenant = tenants.create_tenant(slug=slug, display_name=f"Job {slug}", kind="other")
    jobs.report_progress(1, 2)
    jobs.report_progress(2, 2)
    return tenant.public_id


def create_tenant_then_fail(slug: str) -> None:
    tenants.create_tenant(slug=slug, display_name="never committed", kind="other")
    raise ValueError("row 3 has no member number")
