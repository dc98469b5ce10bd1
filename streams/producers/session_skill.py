"""Session-skill folders: the state an agent keeps about its work inside a project tree.

No single standard exists (session-formats.md section 3.4); three layouts are read, each a
folder per session, named by its slug, below a project directory:

- ``<project>/agents/sessions/<slug>/``: ``state.json``, ``spec.md``, ``plan.json``;
- ``<project>/.agents/sessions/<slug>/`` (openbuff): ``STATE.json``, ``SPEC.md``, ``PLAN.md``,
  ``STATUS.md`` and the append-only ``EVENTS.jsonl``;
- ``<project>/.harness/sessions/<slug>/`` (harness-autopilot): ``state.json``,
  ``autopilot-state.json``, ``handoff.json``.

File names are matched case-insensitively, and the first two layouts accept each other's names
(a ``plan.md`` beside a ``state.json`` is read too). Every file but ``EVENTS.jsonl`` is rewritten
in place and published whole on change (``file.snapshot``); ``EVENTS.jsonl`` is tailed line by
line. All are ``artifact`` files of the session ``<project name>/<slug>``: removing one does not
end the session. Roots are project directories, or directories of projects, given explicitly or
in ``SESSIONSTREAM_SKILL_ROOTS``; the walk skips dependency, VCS and build trees (:meth:`prune`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import ClassVar

from schemas.file_changes import FileKind
from streams.producers.base import FileProducer

__all__ = ["ROOTS_ENV", "SessionSkillProducer", "SkillFile", "skill_file"]

ROOTS_ENV = "SESSIONSTREAM_SKILL_ROOTS"
EVENTS_FILE = "events.jsonl"
_AGENTS_FILES = frozenset({"state.json", "spec.md", "plan.json", "plan.md", "status.md",
                           EVENTS_FILE})
LAYOUTS: dict[str, frozenset[str]] = {
    "agents": _AGENTS_FILES,
    ".agents": _AGENTS_FILES,
    ".harness": frozenset({"state.json", "autopilot-state.json", "handoff.json"}),
}
HIDDEN_LAYOUTS = frozenset({".agents", ".harness"})  # never a project: only sessions/ matters
# Trees that never hold a session folder but can hold hundreds of thousands of files.
SKIP_DIRS = frozenset({
    ".git", ".hg", ".svn", "node_modules", "bower_components", ".venv", "venv", "__pycache__",
    ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox", ".nox", ".cache", ".gradle",
    ".next", ".nuxt", ".terraform", ".direnv", ".yarn", ".pnpm-store", "site-packages",
})
# Usually build output, but also plausible project names: kept when they hold a session layout.
BUILD_DIRS = frozenset({"build", "dist", "target", "out"})


@dataclass(frozen=True)
class SkillFile:
    """Where a session-skill file sits: ``<project_dir>/<layout>/sessions/<slug>/<name>``."""

    project_dir: PurePath
    layout: str
    slug: str
    name: str

    @property
    def session_id(self) -> str:
        return f"{self.project_dir.name}/{self.slug}"

    @property
    def session_dir(self) -> PurePath:
        return self.project_dir / self.layout / "sessions" / self.slug


def skill_file(path: PurePath) -> SkillFile | None:
    """The parts of a session-skill file path, or None for any other path."""
    slug_dir = path.parent
    sessions = slug_dir.parent
    layout = sessions.parent.name
    if sessions.name != "sessions" or path.name.lower() not in LAYOUTS.get(layout, ()):
        return None
    return SkillFile(sessions.parent.parent, layout, slug_dir.name, path.name)


class SessionSkillProducer(FileProducer):
    """Publishes the session folders agents keep under ``agents/``, ``.agents/``, ``.harness/``."""

    source: ClassVar[str] = "session-skill"
    help_text: ClassVar[str] = f"agents/sessions/<slug>/ folders under ${ROOTS_ENV}"
    example_root: ClassVar[str] = "~/code"
    rank: ClassVar[int] = 50

    @classmethod
    def default_roots(cls, env: Mapping[str, str]) -> list[Path]:
        """The ``os.pathsep``-separated paths of ``SESSIONSTREAM_SKILL_ROOTS``, else none:
        project trees have no conventional location."""
        raw = env.get(ROOTS_ENV, "")
        return [Path(part.strip()).expanduser() for part in raw.split(os.pathsep) if part.strip()]

    @classmethod
    def claims(cls, root: Path) -> bool:
        """A bare ``--source`` path is ours when it, or a directory directly in it, holds a
        ``<layout>/sessions/<slug>/`` folder."""
        root = Path(root)
        try:
            bases = [root, *(p for p in root.iterdir() if p.is_dir())]
        except OSError:
            return False
        return any(_holds_sessions(base) for base in bases)

    def matches(self, path: Path) -> bool:
        """A known file name directly in a ``<layout>/sessions/<slug>/`` folder."""
        return skill_file(path) is not None

    def snapshot(self, path: Path) -> bool:
        """Everything but ``EVENTS.jsonl`` is rewritten in place."""
        return path.name.lower() != EVENTS_FILE

    def prune(self, dirpath: Path, dirnames: list[str]) -> None:
        """Skip dependency, cache and VCS trees; build-output names unless they hold a session
        layout themselves; inside ``.agents``/``.harness`` only ``sessions``; below a slug
        folder, everything (``findings/`` and the like are not read)."""
        if dirpath.parent.name == "sessions" and dirpath.parent.parent.name in LAYOUTS:
            dirnames.clear()
            return
        if dirpath.name in HIDDEN_LAYOUTS:
            dirnames[:] = [name for name in dirnames if name == "sessions"]
            return
        dirnames[:] = [name for name in dirnames if name not in SKIP_DIRS
                       and (name not in BUILD_DIRS or _has_layout(dirpath / name))]

    def describe(self, path: Path, first_line: str | None) -> tuple[str, FileKind, str | None]:
        """``("<project name>/<slug>", "artifact", None)``, from the path alone."""
        parts = skill_file(path)
        return (parts.session_id if parts else str(path.parent)), "artifact", None


def _has_layout(base: Path) -> bool:
    return any((base / layout / "sessions").is_dir() for layout in LAYOUTS)


def _holds_sessions(base: Path) -> bool:
    for layout in LAYOUTS:
        try:
            if any(p.is_dir() for p in (base / layout / "sessions").iterdir()):
                return True
        except OSError:
            continue
    return False
