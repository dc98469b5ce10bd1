"""``sessionstream demo``: the sample sessions shipped with sessionstream, ingested once.

The samples under ``app/samples/<source>/`` are small sessions the project wrote, one folder per
source laid out as that agent writes its files (a Claude projects dir, a Codex sessions dir, a
Gemini ``tmp`` dir, Antigravity's folders, a project with session-skill folders). A source's
folder is named by its source name, so a new source ships its samples by adding a folder.
A source kept in SQLite ships its database as the SQL script ``<name>.sql`` that builds it
(text, reviewable); :func:`materialized` builds such folders under the state directory before
they are read.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import click

from app.cli_base import cli, fails_cleanly, settings_of
from app.endpoints import resolve_endpoints
from app.worker_commands import start_worker

__all__ = ["SAMPLES", "build_databases", "demo", "materialized", "sample_sources"]

SAMPLES = Path(__file__).resolve().parent / "samples"


def sample_sources() -> list[str]:
    """``KIND=PATH`` of every shipped sample folder, as ``--source`` takes them."""
    return [f"{folder.name}={folder}" for folder in sorted(SAMPLES.iterdir()) if folder.is_dir()]


def build_databases(folder: Path) -> list[Path]:
    """Run every ``X.sql`` below ``folder`` into the SQLite database ``X`` beside it (made
    afresh) and remove the script; the databases built. How a sample of a source kept in
    SQLite is shipped (as reviewable text) and made readable."""
    built = []
    for script in sorted(folder.rglob("*.sql")):
        database = script.with_suffix("")
        database.unlink(missing_ok=True)
        conn = sqlite3.connect(database)
        try:
            conn.executescript(script.read_text())
            conn.commit()
        finally:
            conn.close()
        script.unlink()
        built.append(database)
    return built


def materialized(sources: list[str], state_dir: Path) -> list[str]:
    """``sources`` as they can be read: a folder holding ``*.sql`` scripts is copied to
    ``state_dir/demo-samples/<kind>`` and its databases built there (:func:`build_databases`,
    every time, so the demo stays repeatable); other folders are read in place."""
    ready = []
    for spec in sources:
        kind, _, folder = spec.partition("=")
        if not any(Path(folder).rglob("*.sql")):
            ready.append(spec)
            continue
        target = state_dir / "demo-samples" / kind
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(folder, target)
        build_databases(target)
        ready.append(f"{kind}={target}")
    return ready


@cli.command()
@click.pass_context
@fails_cleanly
def demo(ctx: click.Context) -> None:
    """Backfill the sample sessions shipped with sessionstream (every source), then exit.

    A first look without your own data: the same as `sessionstream backfill --source KIND=PATH`
    for each folder of the bundled samples (printed below), into the configured stores (the
    embedded default unless configured). The sample sessions keep their own ids, so running it
    twice changes nothing. Then look at them:

    \b
      sessionstream usage                 tokens and cost per session
      sessionstream usage --by model      ... per model
      sessionstream status                positions, lag, dead letters
    """
    settings = settings_of(ctx)
    sources = sample_sources()
    click.echo("samples:  " + "\n          ".join(sources))
    readable = materialized(sources, settings.state_dir)
    endpoints = resolve_endpoints(settings, tuple(Path(s) for s in readable), click.echo)
    start_worker(settings, endpoints, backfill=True)
