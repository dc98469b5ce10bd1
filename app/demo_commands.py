"""``sessionstream demo``: the sample sessions shipped with sessionstream, ingested once.

The samples under ``app/samples/<source>/`` are small sessions the project wrote, one folder per
source laid out as that agent writes its files (a Claude projects dir, a Codex sessions dir, a
Gemini ``tmp`` dir, Antigravity's folders, a project with session-skill folders). A source's
folder is named by its source name, so a new source ships its samples by adding a folder.
"""

from __future__ import annotations

from pathlib import Path

import click

from app.cli_base import cli, fails_cleanly, settings_of
from app.endpoints import resolve_endpoints
from app.worker_commands import start_worker

__all__ = ["SAMPLES", "demo", "sample_sources"]

SAMPLES = Path(__file__).resolve().parent / "samples"


def sample_sources() -> list[str]:
    """``KIND=PATH`` of every shipped sample folder, as ``--source`` takes them."""
    return [f"{folder.name}={folder}" for folder in sorted(SAMPLES.iterdir()) if folder.is_dir()]


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
    endpoints = resolve_endpoints(settings, tuple(Path(s) for s in sources), click.echo)
    start_worker(settings, endpoints, backfill=True)
