"""The samples ``sessionstream demo`` ships: every folder is read by its own source as the demo
reads it (``app.demo_commands.materialized`` builds the SQLite ones), and every file it
publishes parses into sessions, without servers; a demo folder that copies a tested sample
holds the same files.

The end-to-end demo test shares its broker with the whole run, so a folder its producer never
reads could pass there on what other tests published; this catches it on its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.parse_lines import decide
from app.demo_commands import SAMPLES, materialized, sample_sources
from app.sources import PRODUCERS
from schemas.file_changes import FileChanged

pytestmark = pytest.mark.unit

FOLDERS = sorted(path.name for path in SAMPLES.iterdir() if path.is_dir())


@pytest.mark.parametrize("kind", FOLDERS)
async def test_each_sample_folder_is_read_and_parsed_by_its_source(
        kind: str, tmp_path: Path) -> None:
    spec = next(s for s in sample_sources() if s.startswith(f"{kind}="))
    root = Path(materialized([spec], tmp_path / "state")[0].partition("=")[2])
    published: list[FileChanged] = []

    async def publish(events: list[FileChanged]) -> None:
        published.extend(events)

    producer = PRODUCERS[kind](roots=[root], checkpoint_path=tmp_path / "cp.json",
                               publish=publish)
    assert await producer.scan_once() > 0, f"{kind}: its producer reads nothing in {root}"
    derived = [event for change in published for event in decide(change)]
    sessions = {event.session_id for event in derived if event.type != "line.unknown"}
    assert sessions, f"{kind}: its samples give no session events"


def _contents(root: Path) -> list[bytes]:
    """Every sample file's bytes under ``root``, sorted (notes and expected totals left out)."""
    return sorted(p.read_bytes() for p in root.rglob("*")
                  if p.is_file() and p.name not in {"README.md", "expected.json"})


TESTED = Path(__file__).parents[1] / "samples"
# Demo folders that copy a tested sample whole (the older sources' demo folders hold a subset).
COPIES = sorted(kind for kind in FOLDERS if (TESTED / kind / "expected.json").is_file())


@pytest.mark.parametrize("kind", COPIES)
def test_a_demo_copy_holds_the_tested_sample_byte_for_byte(kind: str) -> None:
    # The package ships its own copy (tests/ is not installed) in its own folder layout: the
    # files, not their paths, must match the sample whose totals the tests check by hand.
    assert _contents(SAMPLES / kind) == _contents(TESTED / kind), (
        f"app/samples/{kind} and tests/samples/{kind} hold different files: copy the tested "
        f"sample again")
