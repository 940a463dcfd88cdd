"""Background jobs: rq queues by kind when ``REDIS_URL`` is set, in-process otherwise.

Callers see one API whichever runner is configured::

    job = jobs.enqueue("imports", "saas.idlink.services:import_rows", upload_id)
    jobs.fetch(job.id).status          # queued / started / finished / failed
    jobs.fetch(job.id).progress        # {"done": 300, "total": 5000}

A job is a module-level function named by ``"module:function"``. It runs in an app
context with a fresh database session, and the runner commits once when it returns
(or rolls back when it raises), like a request. Inside, :func:`report_progress`
feeds progress bars.

A job enqueued inside a unit of work is submitted when that unit commits, and dropped
when it rolls back: it never runs before, or without, the data it is about. (Work that
must survive Redis being down goes through the events outbox instead.)

With Redis, jobs survive web restarts and run on ``kakehashi worker`` processes; the
in-process runner (the embedded default) runs them on a small thread pool of the web
process and keeps their state in memory.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from flask import Flask, current_app
from sqlalchemy import event
from sqlalchemy.orm import Session

from saas import db

log = logging.getLogger("kakehashi.jobs")

# Queues by kind of work (STYLE.md): a worker can be pointed at some kinds only.
KINDS = ("default", "webhooks", "sweeps", "imports", "crl")
# Kinds of many short jobs that a worker serving only them runs in its own process
# (rq's SimpleWorker) rather than in a fork per job: a webhook batch posts in tens of
# milliseconds, and a fork and a new database connection per job cost more than that
# (bench/events_bench.py). A worker that serves any other kind forks, so a crashing or
# leaking import cannot take it down.
IN_PROCESS_KINDS = frozenset({"webhooks"})
DEFAULT_TIMEOUT = 30 * 60


@dataclass(frozen=True)
class JobState:
    id: str
    kind: str
    status: str  # pending (until commit) | queued | started | finished | failed
    result: Any = None
    error: str | None = None
    progress: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PendingJob:
    id: str
    kind: str
    target: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    timeout: int


class JobRunner(Protocol):
    def submit(self, job: PendingJob) -> None: ...

    def fetch(self, job_id: str) -> JobState | None: ...


_PENDING = "kakehashi.pending_jobs"


def enqueue(kind: str, target: str | Callable[..., Any], *args: Any,
            timeout: int = DEFAULT_TIMEOUT, **kwargs: Any) -> JobState:
    """Queue ``target(*args, **kwargs)`` on the ``kind`` queue when the session commits."""
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}; one of {', '.join(KINDS)}")
    path = target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"
    resolve(path)  # fail in the caller, not later in a worker
    job = PendingJob(str(uuid.uuid4()), kind, path, args, kwargs, timeout)
    db.session.connection()  # the job joins the unit of work: begin it if need be
    db.session.info.setdefault(_PENDING, []).append((runner(), job))
    return JobState(id=job.id, kind=kind, status="pending")


@event.listens_for(Session, "after_commit")
def _submit_committed(session: Session) -> None:
    for jobs_runner, job in session.info.pop(_PENDING, []):
        jobs_runner.submit(job)


@event.listens_for(Session, "after_rollback")
def _drop_rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)


def fetch(job_id: str) -> JobState | None:
    return runner().fetch(job_id)


def runner(app: Flask | None = None) -> JobRunner:
    return (app or current_app).extensions["kakehashi.jobs"]


def resolve(path: str) -> Callable[..., Any]:
    module_name, _, name = path.partition(":")
    if not module_name or not name:
        raise ValueError(f"job target must be 'module:function', got {path!r}")
    obj: Any = importlib.import_module(module_name)
    for part in name.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"job target {path!r} is not callable")
    return obj


# The progress sink of the job running in this context (set by execute()).
_progress_sink: ContextVar[Callable[[int, int], None] | None] = ContextVar(
    "kakehashi_job_progress", default=None)


def report_progress(done: int, total: int) -> None:
    """Record how far the current job is; a no-op outside a job."""
    sink = _progress_sink.get()
    if sink is not None:
        sink(done, total)


def execute(target: str, args: tuple[Any, ...], kwargs: dict[str, Any],
            progress: Callable[[int, int], None] | None = None,
            app: Flask | None = None) -> Any:
    """Run one job in an app context and commit its session once, like a request."""
    if app is None:
        from saas import create_app  # a bare rq work horse: build the app once per process

        app = _worker_app or create_app()
    token = _progress_sink.set(progress)
    try:
        with app.app_context():
            try:
                result = resolve(target)(*args, **kwargs)
                db.session.commit()
                return result
            except BaseException:
                db.session.rollback()
                raise
    finally:
        _progress_sink.reset(token)


class InProcessRunner:
    """Runs jobs on a thread pool of this process; state lives in memory (the newest
    ``MAX_KEPT`` jobs), so it suits one process: production uses rq."""

    MAX_KEPT = 10_000

    def __init__(self, app: Flask, workers: int = 2) -> None:
        self._app = app
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kk-job")
        self._jobs: dict[str, JobState] = {}
        self._lock = threading.Lock()

    def submit(self, job: PendingJob) -> None:
        self._put(JobState(id=job.id, kind=job.kind, status="queued"))
        self._pool.submit(self._run, job.id, job.target, job.args, job.kwargs)

    def fetch(self, job_id: str) -> JobState | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _put(self, job: JobState) -> None:
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self.MAX_KEPT:  # forget the oldest, like rq's result TTL
                del self._jobs[next(iter(self._jobs))]

    def _update(self, job_id: str, **changes: Any) -> None:
        with self._lock:
            self._jobs[job_id] = _replace(self._jobs[job_id], **changes)

    def _run(self, job_id: str, target: str, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> None:
        self._update(job_id, status="started")

        def progress(done: int, total: int) -> None:
            self._update(job_id, progress={"done": done, "total": total})

        try:
            result = execute(target, args, kwargs, progress, app=self._app)
        except Exception as exc:
            log.exception("job failed", extra={"job_id": job_id, "target": target})
            self._update(job_id, status="failed", error=f"{type(exc).__name__}: {exc}")
        else:
            self._update(job_id, status="finished", result=result)


def _replace(job: JobState, **changes: Any) -> JobState:
    return JobState(**{**job.__dict__, **changes})


class RqRunner:
    """Enqueues on rq queues named ``<prefix><kind>`` in Redis."""

    def __init__(self, redis_url: str, prefix: str = "") -> None:
        from redis import Redis

        self.connection = Redis.from_url(redis_url)
        self.prefix = prefix

    def queue(self, kind: str) -> Any:
        from rq import Queue

        return Queue(self.prefix + kind, connection=self.connection)

    def submit(self, job: PendingJob) -> None:
        self.queue(job.kind).enqueue(
            "saas.jobs.run_rq_job", job.target, job.args, job.kwargs, job_id=job.id,
            job_timeout=job.timeout, result_ttl=24 * 3600, failure_ttl=7 * 24 * 3600,
            meta={"kind": job.kind},
        )

    def fetch(self, job_id: str) -> JobState | None:
        from rq.exceptions import NoSuchJobError
        from rq.job import Job

        try:
            job = Job.fetch(job_id, connection=self.connection)
        except NoSuchJobError:
            return None
        status = job.get_status(refresh=True)
        mapped = {"finished": "finished", "failed": "failed", "started": "started"}.get(
            status.value if status else "queued", "queued")
        error = None
        if mapped == "failed":
            latest = job.latest_result()
            trace = (latest.exc_string if latest else None) or ""
            # The last line of the trace: "ValueError: row 3 has …", never the whole stack.
            error = trace.strip().splitlines()[-1] if trace.strip() else "failed"
        return JobState(id=job.id, kind=job.meta.get("kind", "default"), status=mapped,
                        result=job.return_value() if mapped == "finished" else None,
                        error=error, progress=dict(job.meta.get("progress", {})))


_worker_app: Flask | None = None
_worker_pid: int | None = None


def run_rq_job(target: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """What an rq worker runs: the job, with progress written to the rq job's meta."""
    from rq import get_current_job

    rq_job = get_current_job()

    def progress(done: int, total: int) -> None:
        if rq_job is not None:
            rq_job.meta["progress"] = {"done": done, "total": total}
            rq_job.save_meta()

    if _worker_app is not None and os.getpid() != _worker_pid:
        # The work horse is a fork of the worker: never reuse the parent's connections.
        db.get_database(_worker_app).engine.dispose(close=False)
    return execute(target, args, kwargs, progress, app=_worker_app)


def init_app(app: Flask) -> None:
    if app.config.get("REDIS_URL"):
        app.extensions["kakehashi.jobs"] = RqRunner(app.config["REDIS_URL"],
                                                    app.config["JOB_QUEUE_PREFIX"])
    else:
        app.extensions["kakehashi.jobs"] = InProcessRunner(app)


def work(app: Flask, kinds: tuple[str, ...], burst: bool = False) -> bool:
    """Run an rq worker on the queues of ``kinds`` (``kakehashi worker``)."""
    global _worker_app, _worker_pid
    from rq import SimpleWorker, Worker

    jobs_runner = runner(app)
    if not isinstance(jobs_runner, RqRunner):
        raise RuntimeError("REDIS_URL is not set: jobs run inside the web process, "
                           "no worker is needed")
    _worker_app, _worker_pid = app, os.getpid()
    kind_of_worker = SimpleWorker if set(kinds) <= IN_PROCESS_KINDS else Worker
    worker = kind_of_worker([jobs_runner.queue(kind) for kind in kinds], connection=jobs_runner.connection)
    return worker.work(burst=burst, logging_level=app.config["LOG_LEVEL"])
