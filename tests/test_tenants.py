from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from saas.tenants import services as tenants
from saas.tenants.models import Tenant, TenantMode, TenantStatus
from saas.tenants.services import TenantError


def test_a_new_tenant_starts_active_in_sandbox(db_session: Any) -> None:
    tenant = tenants.create_tenant(slug="Sakura-Bank", display_name=" さくら銀行 ", kind="bank",
                                   corporate_number="７００００１２０５０００２")
    assert tenant.slug == "sakura-bank"
    assert tenant.display_name == "さくら銀行"
    assert tenant.mode == TenantMode.SANDBOX and tenant.status == TenantStatus.ACTIVE
    assert tenant.corporate_number == "7000012050002"
    assert tenant.public_id.startswith("ten_")


def test_corporate_number_is_optional(db_session: Any) -> None:
    tenant = tenants.create_tenant(slug="neighbourhood", display_name="町内会", kind="association")
    assert tenant.corporate_number is None


@pytest.mark.parametrize("fields, code", [
    ({"slug": "a"}, "invalid_slug"),
    ({"slug": "-bad"}, "invalid_slug"),
    ({"slug": "double--hyphen"}, "invalid_slug"),
    ({"slug": "日本語"}, "invalid_slug"),
    ({"slug": "admin"}, "reserved_slug"),
    ({"display_name": "  "}, "invalid_display_name"),
    ({"kind": "casino"}, "invalid_kind"),
    ({"corporate_number": "7000012050003"}, "invalid_corporate_number"),
    ({"corporate_number": "12345"}, "invalid_corporate_number"),
])
def test_bad_input_is_refused_with_a_code_and_field(db_session: Any, fields: dict[str, str],
                                                    code: str) -> None:
    values = {"slug": "good-slug", "display_name": "Good", "kind": "hospital", **fields}
    with pytest.raises(TenantError) as error:
        tenants.create_tenant(**values)
    assert error.value.code == code
    assert error.value.field in {"slug", "display_name", "kind", "corporate_number"}
    assert db_session.scalar(select(Tenant).where(Tenant.slug == "good-slug")) is None


def test_a_taken_slug_is_a_conflict(db_session: Any) -> None:
    tenants.create_tenant(slug="taken", display_name="First", kind="other")
    with pytest.raises(TenantError) as error:
        tenants.create_tenant(slug="taken", display_name="Second", kind="other")
    assert (error.value.code, error.value.status) == ("slug_taken", 409)


def test_tenant_page_shows_the_mode(client: Any, db_session: Any) -> None:
    tenants.create_tenant(slug="kobe-clinic", display_name="神戸クリニック", kind="hospital")
    db_session.commit()
    page = client.get("/t/kobe-clinic/", headers={"Accept-Language": "ja"})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "神戸クリニック" in html and "サンドボックス" in html


def test_unknown_tenant_is_a_404_in_json_and_html(client: Any) -> None:
    api = client.get("/t/nobody/", headers={"Accept": "application/json", "Accept-Language": "en"})
    assert api.status_code == 404
    assert api.get_json() == {"error": "tenant_not_found",
                              "message": "There is no such organisation on Kakehashi."}
    page = client.get("/t/nobody/", headers={"Accept-Language": "ja"})
    assert page.status_code == 404 and "tenant_not_found" in page.get_data(as_text=True)


def test_closed_tenant_is_a_404_and_suspended_is_a_403(client: Any, db_session: Any) -> None:
    closed = tenants.create_tenant(slug="closed-co", display_name="Closed", kind="other")
    suspended = tenants.create_tenant(slug="paused-co", display_name="Paused", kind="other")
    closed.status = TenantStatus.CLOSED
    suspended.status = TenantStatus.SUSPENDED
    db_session.commit()
    assert client.get("/t/closed-co/").status_code == 404
    response = client.get("/t/paused-co/", headers={"Accept": "application/json"})
    assert response.status_code == 403 and response.get_json()["error"] == "tenant_suspended"
