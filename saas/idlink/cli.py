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
    try:
        run = sweep.resume(workers=0 if here else workers) if resume else sweep.start(workers=0 if here else workers)
    except sweep.SweepBusy as error:
        raise click.ClickException(f"{error}: kakehashi idlink sweep --resume") from None
    if run is None:
        raise click.ClickException("no sweep is running")
    sweep_id = run.id
    db.session.commit()
    if here:
        sweep.work(sweep_id)
    click.echo(json.dumps(sweep.summary(sweep_id), ensure_ascii=False))
