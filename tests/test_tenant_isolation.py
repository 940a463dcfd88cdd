"""A session bound to one tenant can neither read nor write another tenant's rows."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Blueprint, abort, jsonify
from sqlalchemy import bindparam, delete, event, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import joinedload, mapped_column, selectinload

from saas import clock, db
from saas.db import BigId, CrossTenantAccess, TenantScoped, TenantScopeMissing, all_tenants, tenant_scope
from saas.tenants import services as tenants
from saas.tenants.models import Tenant
from tests.conftest import make_app
from tests.isolation_models import TABLES, IsolationBase, Part, Widget, metadata


@pytest.fixture
def world(db_session: Any) -> dict[str, Any]:
    """Two tenants, each with a widget named "shared" that has two parts."""
    metadata.create_all(db_session.connection(), tables=TABLES)
    a = tenants.create_tenant(slug="tenant-a", display_name="A", kind="bank")
    b = tenants.create_tenant(slug="tenant-b", display_name="B", kind="hospital")
    ids: dict[str, Any] = {"a": a.id, "b": b.id}
    for key, tenant in (("a", a), ("b", b)):
        with tenant_scope(db_session, tenant.id):
            # tenant_id given explicitly, so the fixture does not rely on the mechanism.
            widget = Widget(name="shared", tenant_id=tenant.id)
            widget.parts = [Part(label=f"{key}-{n}", tenant_id=tenant.id) for n in (1, 2)]
            db_session.add(widget)
            db_session.flush()
            ids[f"widget_{key}"] = widget.id
            ids[f"public_{key}"] = widget.public_id
    return ids


def test_query_sees_only_the_bound_tenant(db_session: Any, world: dict[str, Any]) -> None:
    with tenant_scope(db_session, world["a"]):
        names = db_session.scalars(select(Part.label).order_by(Part.label)).all()
        assert names == ["a-1", "a-2"]
        assert db_session.scalar(select(func.count()).select_from(Widget)) == 1


def test_get_by_primary_key_of_another_tenant_is_none(db_session: Any, world: dict[str, Any]) -> None:
    with tenant_scope(db_session, world["a"]):
        assert db_session.get(Widget, world["widget_b"]) is None
        assert db_session.get(Widget, world["widget_a"]) is not None


def test_join_from_an_unscoped_table_is_filtered(db_session: Any, world: dict[str, Any]) -> None:
    with tenant_scope(db_session, world["a"]):
        slugs = db_session.scalars(
            select(Tenant.slug).join(Widget, Widget.tenant_id == Tenant.id)).all()
    assert slugs == ["tenant-a"]


@pytest.mark.parametrize("loader", [None, selectinload, joinedload])
def test_relationship_loads_stay_in_the_tenant(db_session: Any, world: dict[str, Any],
                                               loader: Any) -> None:
    with tenant_scope(db_session, world["a"]):
        stmt = select(Widget)
        if loader is not None:
            stmt = stmt.options(loader(Widget.namesakes), loader(Widget.parts))
        widget = db_session.scalars(stmt).unique().one()
        # The other tenant's widget has the same name, yet is not a namesake here.
        assert widget.namesakes == []
        assert [p.label for p in widget.parts] == ["a-1", "a-2"]


def test_namesakes_do_cross_tenants_without_the_scope(db_session: Any, world: dict[str, Any]) -> None:
    # The control for the test above: with every tenant visible the join does reach B.
    with all_tenants(db_session):
        widget = db_session.get(Widget, world["widget_a"])
        assert [w.id for w in widget.namesakes] == [world["widget_b"]]


def test_bulk_update_and_delete_touch_only_the_bound_tenant(db_session: Any,
                                                            world: dict[str, Any]) -> None:
    with tenant_scope(db_session, world["a"]):
        db_session.execute(update(Part).values(label="changed"))
        db_session.execute(delete(Part).where(Part.label == "changed"))
    with all_tenants(db_session):
        labels = db_session.scalars(select(Part.label).order_by(Part.label)).all()
    assert labels == ["b-1", "b-2"]


def test_bulk_update_by_primary_key_cannot_reach_another_tenant(db_session: Any,
                                                                world: dict[str, Any]) -> None:
    with tenant_scope(db_session, world["a"]):
        db_session.execute(update(Widget), [{"id": world["widget_b"], "name": "stolen"}])
    with all_tenants(db_session):
        assert db_session.get(Widget, world["widget_b"]).name == "shared"


def test_bulk_update_cannot_move_rows_to_another_tenant(db_session: Any,
                                                        world: dict[str, Any]) -> None:
    with tenant_scope(db_session, world["a"]), pytest.raises(CrossTenantAccess):
        db_session.execute(update(Widget).values(tenant_id=world["b"]))


def test_bulk_insert_takes_the_bound_tenant_and_refuses_another(db_session: Any,
                                                                world: dict[str, Any]) -> None:
    with tenant_scope(db_session, world["a"]):
        db_session.execute(insert(Widget), [{"name": "bulk", "public_id": "wid_x"}])
        with pytest.raises(CrossTenantAccess):
            db_session.execute(insert(Widget), [{"name": "evil", "public_id": "wid_y",
                                                 "tenant_id": world["b"]}])
    with all_tenants(db_session):
        bulk = db_session.scalars(select(Widget).where(Widget.name == "bulk")).one()
    assert bulk.tenant_id == world["a"]


def test_flush_gives_new_rows_the_bound_tenant(db_session: Any, world: dict[str, Any]) -> None:
    with tenant_scope(db_session, world["b"]):
        widget = Widget(name="new")
        db_session.add(widget)
        db_session.flush()
        assert widget.tenant_id == world["b"]


def test_flush_refuses_a_new_row_for_another_tenant(db_session: Any, world: dict[str, Any]) -> None:
    with tenant_scope(db_session, world["a"]):
        db_session.add(Widget(name="planted", tenant_id=world["b"]))
        with pytest.raises(CrossTenantAccess):
            db_session.flush()
        db_session.rollback()


def test_flush_refuses_moving_a_row_to_another_tenant(db_session: Any, world: dict[str, Any]) -> None:
    with tenant_scope(db_session, world["a"]):
        widget = db_session.get(Widget, world["widget_a"])
        widget.tenant_id = world["b"]
        with pytest.raises(CrossTenantAccess):
            db_session.flush()
        db_session.rollback()


def test_a_session_without_tenant_refuses_scoped_entities(db_session: Any,
                                                          world: dict[str, Any]) -> None:
    with pytest.raises(TenantScopeMissing):
        db_session.scalars(select(Widget)).all()
    with pytest.raises(TenantScopeMissing):
        db_session.execute(update(Part).values(label="x"))
    db_session.add(Widget(name="orphan"))
    with pytest.raises(TenantScopeMissing):
        db_session.flush()
    db_session.rollback()


def test_a_join_below_the_top_level_without_tenant_finds_nothing(db_session: Any,
                                                                 world: dict[str, Any]) -> None:
    slugs = db_session.scalars(select(Tenant.slug).join(Widget, Widget.tenant_id == Tenant.id)).all()
    assert slugs == []


def test_switching_tenant_forgets_objects_of_the_previous_one(db_session: Any,
                                                              world: dict[str, Any]) -> None:
    with tenant_scope(db_session, world["a"]):
        db_session.get(Widget, world["widget_a"])
    with tenant_scope(db_session, world["b"]):
        # Not served from the identity map: the loader criteria apply again.
        assert db_session.get(Widget, world["widget_a"]) is None


def test_composite_foreign_key_refuses_a_child_in_another_tenant(db_session: Any,
                                                                 world: dict[str, Any]) -> None:
    # Even raw SQL, which bypasses the ORM hooks, cannot link two tenants' rows.
    nested = db_session.begin_nested()
    with pytest.raises(IntegrityError):
        db_session.execute(
            text("INSERT INTO test_parts (tenant_id, widget_id, label) VALUES (:t, :w, 'x')"),
            {"t": world["b"], "w": world["widget_a"]},
        )
    nested.rollback()


def test_another_tenants_object_is_a_404_over_http(database_url: str, tmp_path: Any,
                                                   world: dict[str, Any], db_session: Any) -> None:
    app = make_app(database_url, tmp_path)
    bp = Blueprint("widgets", __name__, url_prefix="/t/<tenant_slug>")

    @bp.get("/widgets/<public_id>")
    def show(public_id: str) -> Any:
        widget = db.session.scalar(select(Widget).where(Widget.public_id == public_id))
        if widget is None:
            abort(404)
        return jsonify(name=widget.name)

    app.register_blueprint(bp)
    database = db.get_database(app)
    database.sessionmaker.configure(bind=db_session.connection(),
                                    join_transaction_mode="create_savepoint")
    client = app.test_client()
    assert client.get(f"/t/tenant-a/widgets/{world['public_a']}").status_code == 200
    response = client.get(f"/t/tenant-a/widgets/{world['public_b']}",
                          headers={"Accept": "application/json"})
    assert response.status_code == 404 and response.get_json()["error"] == "not_found"
    assert "shared" not in response.get_data(as_text=True)
    assert client.get(f"/t/tenant-b/widgets/{world['public_b']}").status_code == 200
    database.engine.dispose()


@pytest.mark.parametrize("attempt", [
    "inline_values_of_another_tenant", "multi_row_values", "insert_from_select", "upsert",
])
def test_inserts_that_could_write_another_tenants_rows_are_refused(
        db_session: Any, world: dict[str, Any], attempt: str) -> None:
    dialect_insert = postgresql.insert if db_session.bind.dialect.name == "postgresql" else sqlite.insert
    statements = {
        "inline_values_of_another_tenant": lambda: insert(Widget).values(
            name="planted", tenant_id=world["b"], public_id="wid_p1"),
        "multi_row_values": lambda: insert(Widget).values(
            [{"name": "planted", "tenant_id": world["a"], "public_id": "wid_p2"}]),
        "insert_from_select": lambda: insert(Widget).from_select(
            ["name", "tenant_id", "public_id"],
            select(Widget.name + "-copy", Widget.tenant_id, Widget.public_id + "c")),
        "upsert": lambda: dialect_insert(Widget).values(
            id=world["widget_b"], name="x", public_id="wid_zz").on_conflict_do_update(
            index_elements=["id"], set_={"name": "upserted"}),
    }
    with tenant_scope(db_session, world["a"]), pytest.raises(CrossTenantAccess):
        db_session.execute(statements[attempt]())
    with all_tenants(db_session):
        assert db_session.get(Widget, world["widget_b"]).name == "shared"
        assert db_session.scalar(select(func.count()).select_from(Widget)) == 2


def test_inline_values_get_the_bound_tenant(db_session: Any, world: dict[str, Any]) -> None:
    with tenant_scope(db_session, world["b"]):
        db_session.execute(insert(Widget).values(name="inline", public_id="wid_inline"))
    with all_tenants(db_session):
        assert db_session.scalars(select(Widget.tenant_id).where(Widget.name == "inline")).one() == world["b"]


def test_core_statements_on_scoped_tables_are_refused(db_session: Any, world: dict[str, Any]) -> None:
    table = Widget.__table__
    with tenant_scope(db_session, world["a"]):
        for statement in (select(table), table.update().values(name="x"), table.delete()):
            with pytest.raises(CrossTenantAccess, match="use its ORM entity"):
                db_session.execute(statement)


def test_the_core_write_paths_write_only_the_bound_tenants_rows(db_session: Any, world: dict[str, Any]) -> None:
    """db.insert_row, db.insert_rows and db.TenantUpdate skip the ORM for the hottest
    writes; they add the same tenant criterion and checks the ORM hooks do."""
    table, parts = Widget.__table__, Part.__table__
    rename = db.TenantUpdate(table, where=table.c.name == bindparam("old"), values={"name": bindparam("new")},
                             returning=(table.c.id,))
    with pytest.raises(TenantScopeMissing):
        db.insert_row(table, {"name": "nobody's", "public_id": "wid_x"})
    with pytest.raises(TenantScopeMissing):
        rename.rows(old="shared", new="nobody's")
    with tenant_scope(db_session, world["a"]):
        made = db.insert_row(table, {"name": "core", "public_id": "wid_core"}, returning=(table.c.id, table.c.tenant_id))
        assert made.tenant_id == world["a"]
        with pytest.raises(CrossTenantAccess):
            db.insert_row(table, {"name": "theirs", "public_id": "wid_t", "tenant_id": world["b"]})
        db.insert_rows(table, [{"name": "many", "public_id": "wid_m1"}, {"name": "many", "public_id": "wid_m2"}])
        with pytest.raises(CrossTenantAccess):
            db.insert_rows(table, [{"name": "mine", "public_id": "wid_m3"},
                                   {"name": "theirs", "public_id": "wid_t", "tenant_id": world["b"]}])
        renamed = rename.rows(old="shared", new="renamed")
        assert [row.id for row in renamed] == [world["widget_a"]]  # not tenant b's namesake
        with pytest.raises(ValueError, match="kakehashi_tenant"):
            rename.rows(old="shared", new="x", kakehashi_tenant=world["b"])
    with pytest.raises(CrossTenantAccess, match="tenant_id"):
        db.TenantUpdate(table, where=table.c.id == bindparam("id"), values={"tenant_id": world["b"]})
    with pytest.raises(CrossTenantAccess, match="test_parts"):
        db.TenantUpdate(table, where=table.c.id.in_(select(parts.c.widget_id)), values={"name": "x"})
    with pytest.raises(ValueError, match="kakehashi_tenant"):
        db.TenantUpdate(table, where=table.c.tenant_id == bindparam("kakehashi_tenant"), values={"name": "x"})
    with pytest.raises(TypeError):
        db.TenantUpdate(Tenant.__table__, where=Tenant.__table__.c.id == world["a"], values={"display_name": "x"})
    with pytest.raises(TenantScopeMissing):
        db.insert_rows(table, [{"name": "nobody's", "public_id": "wid_y"}])
    with all_tenants(db_session):  # platform code names each row's tenant
        with pytest.raises(TenantScopeMissing, match="names its tenant"):
            db.insert_rows(table, [{"name": "whose?", "public_id": "wid_z"}])
        db.insert_rows(table, [{"name": "platform", "public_id": "wid_p", "tenant_id": world["b"]}])
        names = sorted(db_session.execute(select(Widget.tenant_id, Widget.name)
                                          .where(Widget.name.not_in(["core", "many"]))).all())
        assert sorted(db_session.execute(select(Widget.tenant_id).where(Widget.name == "many")).scalars()) == [
            world["a"], world["a"]]
    assert names == sorted([(world["a"], "renamed"), (world["b"], "shared"), (world["b"], "platform")])


def test_insert_rows_writes_every_row_as_given_in_one_statement_or_many(db_session: Any,
                                                                        world: dict[str, Any]) -> None:
    """Several rows go as one INSERT from arrays on PostgreSQL: each row keeps its own
    values (None included), and rows leaving out a column with a Python-side default (a
    public id) still get one each (executemany: from arrays it would be one for all)."""
    table = Widget.__table__
    statements: list[str] = []
    event.listen(db_session.get_bind(), "before_cursor_execute",
                 lambda _c, _k, statement, *_: statements.append(statement))
    with tenant_scope(db_session, world["a"]):
        db.insert_rows(table, [{"name": f"batch-{n}", "public_id": f"wid_b{n}"} for n in range(5)])
        given = len(statements)
        db.insert_rows(table, [{"name": "fresh"}, {"name": "fresh"}, {"name": "fresh"}])
        defaulted = len(statements) - given
        with pytest.raises(ValueError, match="same columns"):
            db.insert_rows(table, [{"name": "x", "public_id": "wid_x1"}, {"name": "x"}])
        rows = db_session.execute(select(Widget.name, Widget.public_id, Widget.tenant_id)
                                  .where(Widget.name.like("batch-%")).order_by(Widget.id)).all()
        fresh = db_session.scalars(select(Widget.public_id).where(Widget.name == "fresh")).all()
    assert rows == [(f"batch-{n}", f"wid_b{n}", world["a"]) for n in range(5)]
    assert len(set(fresh)) == 3 and all(public_id.startswith("wid_") for public_id in fresh)
    if db_session.get_bind().dialect.name == "postgresql":
        assert given == 1 and "unnest" in statements[0]
        assert defaulted == 1 and "unnest" not in statements[given]  # one executemany
    else:
        assert given == 1 and defaulted == 1


def test_an_over_long_string_is_refused_not_cut_short_and_matches_nothing(db_session: Any,
                                                                          world: dict[str, Any]) -> None:
    """An array parameter of a VARCHAR(50) column is cast without the length: cast to
    VARCHAR(50)[] a 55-character string was cut to 50, inserted so, and matched by them."""
    with tenant_scope(db_session, world["a"]):
        db.insert_rows(Widget.__table__, [{"name": "y" * 50, "public_id": "wid_y50"},
                                          {"name": "z", "public_id": "wid_z1"}])
        assert list(db_session.scalars(select(Widget.public_id).where(db.one_of(Widget.name, ["y" * 55])))) == []
        assert list(db_session.scalars(select(Widget.public_id).where(db.one_of(Widget.name, ["y" * 50])))) == [
            "wid_y50"]
        if db_session.get_bind().dialect.name == "postgresql":  # (SQLite keeps any length)
            with pytest.raises(DBAPIError, match="too long"), db_session.begin_nested():
                db.insert_rows(Widget.__table__, [{"name": "w" * 55, "public_id": "wid_w55"},
                                                  {"name": "w", "public_id": "wid_w1"}])


def test_insert_linked_writes_a_row_and_its_child_for_the_bound_tenant(db_session: Any, world: dict[str, Any]) -> None:
    """One statement on PostgreSQL (the parent's INSERT in a WITH), two elsewhere: either
    way both rows take the session's tenant and the child points at the new parent."""
    widgets, parts = Widget.__table__, Part.__table__
    with pytest.raises(TenantScopeMissing):
        db.insert_linked(widgets, {"name": "nobody's", "public_id": "wid_n"}, parts, {"label": "n"}, link="widget_id")
    with tenant_scope(db_session, world["a"]):
        db.insert_linked(widgets, {"name": "linked", "public_id": "wid_l"}, parts, {"label": "l-1"}, link="widget_id")
        with pytest.raises(CrossTenantAccess):
            db.insert_linked(widgets, {"name": "theirs", "public_id": "wid_t"}, parts,
                             {"label": "t-1", "tenant_id": world["b"]}, link="widget_id")
        with pytest.raises(ValueError, match="widget_id"):
            db.insert_linked(widgets, {"name": "pointed", "public_id": "wid_p"}, parts,
                             {"label": "p-1", "widget_id": world["widget_a"]}, link="widget_id")
    with all_tenants(db_session):
        rows = db_session.execute(select(Widget.id, Widget.tenant_id, Part.tenant_id, Part.label)
                                  .join(Part, Part.widget_id == Widget.id).where(Widget.name == "linked")).all()
        assert [(tenant, part_tenant, label) for _id, tenant, part_tenant, label in rows] == [
            (world["a"], world["a"], "l-1")]
        assert db_session.scalar(select(func.count()).select_from(Widget).where(Widget.name != "linked")) == 2


def test_one_of_is_in_on_any_database_and_keeps_the_tenant_criterion(db_session: Any, world: dict[str, Any]) -> None:
    ids = [world["widget_a"], world["widget_b"], 10_000_000]
    with tenant_scope(db_session, world["a"]):
        assert list(db_session.scalars(select(Widget.id).where(db.one_of(Widget.id, ids)))) == [world["widget_a"]]
        assert list(db_session.scalars(select(Widget.id).where(db.one_of(Widget.id, [])))) == []
    with all_tenants(db_session):
        assert sorted(db_session.scalars(select(Widget.id).where(db.one_of(Widget.id, iter(ids))))) == sorted(
            [world["widget_a"], world["widget_b"]])


def test_an_array_of_integers_goes_as_one_typed_string(db_session: Any, world: dict[str, Any]) -> None:
    """On PostgreSQL the ids go as the text of an array literal typed as the column's array
    (not a list psycopg converts element by element, and not a cast from text, which hid
    the array's length from the planner); NULLs and large ids arrive as given."""
    sent: list[tuple[str, Any]] = []
    event.listen(db_session.get_bind(), "before_cursor_execute",
                 lambda _c, _k, statement, parameters, *_: sent.append((statement, parameters)))
    ids = [world["widget_a"], None, 2**62]
    with all_tenants(db_session):
        found = list(db_session.scalars(select(Widget.id).where(db.one_of(Widget.id, ids))))
    assert found == [world["widget_a"]]
    if db_session.get_bind().dialect.name == "postgresql":
        statement, parameters = sent[-1]
        assert "::BIGINT[]" in statement and "CAST" not in statement
        assert f"{{{world['widget_a']},NULL,{2**62}}}" in parameters.values()


def test_legacy_bulk_methods_are_refused(db_session: Any, world: dict[str, Any]) -> None:
    with tenant_scope(db_session, world["a"]):
        with pytest.raises(CrossTenantAccess):
            db_session.bulk_update_mappings(Widget, [{"id": world["widget_b"], "name": "bulk"}])
        with pytest.raises(CrossTenantAccess):
            db_session.bulk_insert_mappings(Widget, [{"name": "b", "tenant_id": world["b"]}])
        with pytest.raises(CrossTenantAccess):
            db_session.bulk_save_objects([Widget(name="b", tenant_id=world["b"])])


def test_a_scoped_model_cannot_replace_the_table_arguments() -> None:
    from sqlalchemy import Index

    with pytest.raises(TypeError, match="__extra_table_args__"):
        class Broken(TenantScoped, IsolationBase):  # noqa: F841
            __tablename__ = "test_broken"
            __table_args__ = (Index("ix_broken", "tenant_id"),)
            id: Any = mapped_column(BigId, primary_key=True)


def test_a_tables_tenant_is_its_own_key_or_implied_by_a_non_null_composite_key() -> None:
    # A key to tenants locks the tenant's one row on every INSERT (TenantScoped.__tenant_key__):
    # a table goes without it only where a composite key that cannot be null, to a parent
    # whose own tenant is guaranteed, implies the tenant; and the outbox, which only
    # events.services writes, with the tenant it was handed.
    import saas.models  # noqa: F401 - every model, whatever ran before this test
    from saas.db import _SCOPED_TABLES

    tables = {table.name: table for table in _SCOPED_TABLES if not table.name.startswith("test_")}
    assert {"events", "webhook_deliveries", "oidc_tokens", "oidc_grants", "power_history", "checkins"} <= set(tables)

    def implied_by(table: Any) -> list[str]:
        return [key.referred_table.name for key in table.foreign_key_constraints
                if len(key.columns) == 2 and not any(column.nullable for column in key.columns)
                and {element.parent.name: element.column.name for element in key.elements}.get("tenant_id")
                == "tenant_id"]

    def own_key(table: Any) -> bool:
        return any(key.referred_table.name == "tenants" for key in table.foreign_key_constraints)

    guaranteed = {name for name, table in tables.items() if own_key(table)}
    for _ in tables:  # the tables whose tenant is implied, through a chain of parents
        guaranteed |= {name for name, table in tables.items() if set(implied_by(table)) & guaranteed}
    assert not own_key(tables["events"]) and not implied_by(tables["events"])
    for name, table in tables.items():
        if name != "events":
            assert own_key(table) != bool(implied_by(table)), (name, implied_by(table))
            assert name in guaranteed, name


def test_a_child_whose_tenant_is_implied_still_cannot_point_into_another_tenant(db_session: Any) -> None:
    from saas.events.models import Delivery, Event, WebhookEndpoint

    a = tenants.create_tenant(slug="tenant-a", display_name="A", kind="bank")
    b = tenants.create_tenant(slug="tenant-b", display_name="B", kind="bank")
    assert not any(key.referred_table.name == "tenants" for key in Delivery.__table__.foreign_key_constraints)
    with tenant_scope(db_session, a.id):
        event_a = Event(type="webhook.ping", subject="s", payload="{}", created_at=clock.now())
        db_session.add(event_a)
        db_session.flush()
    with tenant_scope(db_session, b.id):
        endpoint_b = WebhookEndpoint(url="https://hooks.example/b", event_types="[\"*\"]", created_at=clock.now(),
                                     updated_at=clock.now())
        db_session.add(endpoint_b)
        db_session.flush()
        with pytest.raises(IntegrityError), db_session.begin_nested():  # tenant b's delivery of tenant a's event
            db_session.add(Delivery(event_id=event_a.id, endpoint_id=endpoint_b.id, subject="s",
                                    next_attempt_at=clock.now(), created_at=clock.now()))
            db_session.flush()


def test_an_upsert_on_a_key_with_tenant_id_touches_only_the_bound_tenants_row(
        db_session: Any, world: dict[str, Any]) -> None:
    from saas.oidc import stats
    from saas.oidc.models import LoginStat

    with tenant_scope(db_session, world["a"]):
        stats.count(world["a"], 7, "success")
        stats.count(world["a"], 7, "success")
        with pytest.raises(CrossTenantAccess):
            stats.count(world["b"], 7, "success")  # a row of another tenant, even by upsert
    with tenant_scope(db_session, world["b"]):
        stats.count(world["b"], 7, "success")
    with all_tenants(db_session):
        counts = dict(db_session.execute(select(LoginStat.tenant_id, LoginStat.count)).all())
    assert counts == {world["a"]: 2, world["b"]: 1}
