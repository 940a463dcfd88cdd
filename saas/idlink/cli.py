"""``kakehashi idlink sweep``: the daily status sweep of every linked person."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from saas import db
from saas.idlink import sweep

group = AppGroup("idlink", help="ID linking (官民認証連携): the daily status sweep.")


@group.command("sweep")
@click.option("--resume", is_flag=True, help="Queue workers again for the sweep still running (after a crash).")
@click.option("--here", is_flag=True, help="Sweep in this process instead of queueing jobs for the workers.")
@click.option("--workers", default=sweep.WORKERS, show_default=True, type=click.IntRange(1, 32),
              help="Jobs to queue on the sweeps queue (each takes chunks until none is left).")
def sweep_command(resume: bool, here: bool, workers: int) -> None:
    """Judge every linked person's card (run daily, after the CRLs and the linkage feed
    were read) and tell the tenants what changed."""
    queued = 0 if here else workers
    run = None
    if not resume:
        try:
            run = sweep.start(workers=queued)
        except sweep.SweepBusy:
            # Yesterday's sweep did not finish (a crash, a stopped queue): finish it first;
            # the next run starts a new one. Chunks already done are not swept again.
            click.echo("a sweep was still running: resuming it", err=True)
    if run is None:
        run = sweep.resume(workers=queued)
    if run is None:
        raise click.ClickException("no sweep is running")
    sweep_id = run.id
    db.session.commit()
    if here:
        sweep.work(sweep_id)
    click.echo(json.dumps(sweep.summary(sweep_id), ensure_ascii=False))
