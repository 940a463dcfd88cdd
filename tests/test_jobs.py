"""Jobs: the same API in-process and on real rq workers against the real Redis."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from saas import ROOT, db, jobs
from saas.tenants.models import Tenant
from tests.conftest import SECRET, make_app


def tenant_slugs(app: Flask) -> set[str]:
    with app.app_context():
        return set(db.session.scalars(select(Tenant.slug)))


def wait_for(app: Flask, job_id: str, timeout: float = 30) -> jobs.JobState:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            state = jobs.fetch(job_id)
        if state and state.status in {"finished", "failed"}:
            return state
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not end within {timeout}s")


def test_in_process_job_commits_and_reports_progress(committed_url: str, tmp_path: Path) -> None:
    app = make_app(committed_url, tmp_path)
    assert isinstance(jobs.runner(app), jobs.InProcessRunner)
    with app.app_context():
        job = jobs.enqueue("imports", "tests.jobs_for_tests:create_tenant", "in-process")
        assert job.status == "pending" and jobs.fetch(job.id) is None
        db.session.commit()
    state = wait_for(app, job.id)
    assert state.status == "finished" and state.result.startswith("ten_")
    assert state.progress == {"done": 2, "total": 2}
    assert "in-process" in tenant_slugs(app)
    db.get_database(app).engine.dispose()


def test_in_process_job_failure_rolls_back_and_says_why(committed_url: str, tmp_path: Path) -> None:
    app = make_app(committed_url, tmp_path)
    with app.app_context():
        job = jobs.enqueue("imports", "tests.jobs_for_tests:create_tenant_then_fail", "rolled-back")
        db.session.commit()
    state = wait_for(app, job.id)
    assert state.status == "failed" and "row 3 has no member number" in (state.error or "")
    assert "rolled-back" not in tenant_slugs(app)
    db.get_database(app).engine.dispose()


def test_a_job_runs_only_after_its_transaction_commits(committed_url: str, tmp_path: Path) -> None:
    from saas.tenants import services as tenants

    app = make_app(committed_url, tmp_path)
    with app.app_context():
        tenants.create_tenant(slug="made-with-job", display_name="Made", kind="other")
        job = jobs.enqueue("default", "tests.jobs_for_tests:tenant_exists", "made-with-job")
        db.session.commit()
    assert wait_for(app, job.id).result is True
    db.get_database(app).engine.dispose()


def test_a_rolled_back_transaction_drops_its_jobs(committed_url: str, tmp_path: Path) -> None:
    app = make_app(committed_url, tmp_path)
    with app.app_context():
        job = jobs.enqueue("default", "tests.jobs_for_tests:create_tenant", "never-runs")
        db.session.rollback()
        db.session.commit()
        time.sleep(0.2)
        assert jobs.fetch(job.id) is None
    assert "never-runs" not in tenant_slugs(app)
    db.get_database(app).engine.dispose()


def test_enqueue_refuses_unknown_kinds_and_targets(app: Flask) -> None:
    with app.app_context():
        with pytest.raises(ValueError, match="unknown job kind"):
            jobs.enqueue("emails", "tests.jobs_for_tests:create_tenant", "x")
        with pytest.raises(ValueError, match="module:function"):
            jobs.enqueue("imports", "tests.jobs_for_tests.create_tenant", "x")
        with pytest.raises(AttributeError):
            jobs.enqueue("imports", "tests.jobs_for_tests:no_such_job", "x")


def test_enqueue_accepts_a_function_object(committed_url: str, tmp_path: Path) -> None:
    from tests.jobs_for_tests import create_tenant

    app = make_app(committed_url, tmp_path)
    with app.app_context():
        job = jobs.enqueue("default", create_tenant, "by-reference")
        db.session.commit()
    assert wait_for(app, job.id).status == "finished"
    db.get_database(app).engine.dispose()


@pytest.mark.redis
def test_real_rq_worker_runs_jobs_from_redis(committed_url: str, tmp_path: Path, redis_url: str) -> None:
    prefix = f"kktest-{secrets.token_hex(4)}-"
    app = make_app(committed_url, tmp_path, REDIS_URL=redis_url, JOB_QUEUE_PREFIX=prefix)
    runner = jobs.runner(app)
    assert isinstance(runner, jobs.RqRunner)
    with app.app_context():
        good = jobs.enqueue("imports", "tests.jobs_for_tests:create_tenant", "from-rq")
        bad = jobs.enqueue("sweeps", "tests.jobs_for_tests:create_tenant_then_fail", "rq-fails")
        db.session.commit()
        assert jobs.fetch(good.id).status == "queued"
    assert runner.queue("imports").count == 1 and runner.queue("sweeps").count == 1

    env = {**os.environ, "DATABASE_URL": committed_url, "REDIS_URL": redis_url,
           "JOB_QUEUE_PREFIX": prefix, "SECRET_KEY": SECRET, "KAKEHASHI_ENV": "development",
           "PYTHONPATH": str(ROOT)}
    worker = subprocess.run([sys.executable, "-m", "saas.cli", "worker", "--burst"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert worker.returncode == 0, worker.stderr[-2000:]

    good_state = wait_for(app, good.id, timeout=10)
    assert good_state.status == "finished" and good_state.result.startswith("ten_")
    assert good_state.progress == {"done": 2, "total": 2}
    bad_state = wait_for(app, bad.id, timeout=10)
    assert bad_state.status == "failed" and "row 3 has no member number" in (bad_state.error or "")
    slugs = tenant_slugs(app)
    assert "from-rq" in slugs and "rq-fails" not in slugs
    for kind in jobs.KINDS:
        runner.queue(kind).delete(delete_jobs=True)
    db.get_database(app).engine.dispose()


@pytest.mark.redis
def test_worker_only_takes_the_kinds_it_is_given(committed_url: str, tmp_path: Path, redis_url: str) -> None:
    prefix = f"kktest-{secrets.token_hex(4)}-"
    app = make_app(committed_url, tmp_path, REDIS_URL=redis_url, JOB_QUEUE_PREFIX=prefix)
    with app.app_context():
        job = jobs.enqueue("crl", "tests.jobs_for_tests:create_tenant", "crl-job")
        db.session.commit()
    env = {**os.environ, "DATABASE_URL": committed_url, "REDIS_URL": redis_url,
           "JOB_QUEUE_PREFIX": prefix, "SECRET_KEY": SECRET, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "saas.cli", "worker", "--burst", "--queue", "webhooks"],
                   cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True)
    with app.app_context():
        assert jobs.fetch(job.id).status == "queued"
    jobs.runner(app).queue("crl").delete(delete_jobs=True)
    db.get_database(app).engine.dispose()


def test_worker_without_redis_explains_itself(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}", SECRET_KEY=SECRET)
    result = subprocess.run([sys.executable, "-m", "saas.cli", "worker", "--burst"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "REDIS_URL is not set" in result.stderr


def test_kinds_are_the_documented_queues() -> None:
    assert set(jobs.KINDS) >= {"webhooks", "sweeps", "imports", "crl"}


