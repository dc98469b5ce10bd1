"""Measures what the default filter policy saves on real transcripts: events and encoded bytes
per kind, before (``sessions.events.v1``) and after (``sessions.filtered.v1``).

Every ``*.jsonl`` under the given folder (default: the shared Claude Code fixtures) is described
the way the Claude Code producer describes it (session, main or sub-agent file), each line goes
through the real parser and then through :func:`agents.filter_events.decide`.

Usage: ``.venv/bin/python scripts/measure_filter.py [FOLDER] [--summary-chars N]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agents.filter_events import FilterPolicy, decide  # noqa: E402
from agents.parsers import claude as parse_claude_lines  # noqa: E402
from schemas.file_changes import FileChanged, FileLine, file_line_event  # noqa: E402
from streams.codecs import encode  # noqa: E402
from streams.errors import InvalidEvent  # noqa: E402
from streams.producers.claude import ClaudeCodeProducer  # noqa: E402

__all__ = ["main", "measure"]

DEFAULT_ROOT = REPO.parent / "shared" / "fixtures" / "sessions" / "claude-code"


async def _discard(batch: list[FileChanged]) -> None:  # the producer is only used to describe
    return None


def line_events(producer: ClaudeCodeProducer, path: Path) -> list[FileChanged]:
    """One file-changes event per non-empty line, with its byte offset, as the tailer makes."""
    data = path.read_bytes()
    first = data.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    session_id, kind, agent_id = producer.describe(path, first)
    mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    events, offset = [], 0
    for line_no, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            line = FileLine(path=str(path), offset=offset, line_no=line_no,
                            line=raw.decode("utf-8", errors="replace"), mtime=mtime,
                            file_kind=kind, agent_id=agent_id)
            events.append(file_line_event(producer.source, session_id, line))
        offset += len(raw) + 1
    return events


def measure(root: Path, policy: FilterPolicy) -> tuple[dict[str, Counter[str]], int]:
    """``({kind: Counter(events, before, after)}, invalid lines)`` over every file of ``root``."""
    root = root.resolve()  # the producer's roots are absolute; so must the paths be
    with tempfile.TemporaryDirectory() as scratch:
        producer = ClaudeCodeProducer(roots=[root], publish=_discard,
                                      checkpoint_path=Path(scratch) / "checkpoint.json")
        figures: dict[str, Counter[str]] = {}
        invalid = 0
        for path in sorted(p for p in root.rglob("*.jsonl") if producer.matches(p)):
            for change in line_events(producer, path):
                try:
                    parsed = parse_claude_lines.decide(change)
                except InvalidEvent:
                    invalid += 1
                    continue
                for event in parsed:
                    counts = figures.setdefault(event.type, Counter())
                    counts["events"] += 1
                    counts["before"] += len(encode(event))
                    counts["after"] += sum(len(encode(out)) for out in decide(policy, event))
    return figures, invalid


def _percent(before: int, after: int) -> str:
    return f"{100 * (before - after) / before:5.1f}%" if before else "    -"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--summary-chars", type=int, default=FilterPolicy().summary_chars)
    args = parser.parse_args(argv)
    policy = FilterPolicy(summary_chars=args.summary_chars)
    figures, invalid = measure(args.root, policy)
    print(f"{args.root} (summary_chars={policy.summary_chars}, {invalid} invalid lines skipped)")
    print(f"{'kind':<22}{'mode':>8}{'events':>9}{'bytes before':>15}{'bytes after':>14}"
          f"{'saved':>8}")
    total: Counter[str] = Counter()
    for kind in sorted(figures):
        c = figures[kind]
        total.update(c)
        print(f"{kind:<22}{policy.mode_for(kind).value:>8}{c['events']:>9}{c['before']:>15,}"
              f"{c['after']:>14,}{_percent(c['before'], c['after']):>8}")
    print(f"{'total':<22}{'':>8}{total['events']:>9}{total['before']:>15,}{total['after']:>14,}"
          f"{_percent(total['before'], total['after']):>8}")


if __name__ == "__main__":
    main()
