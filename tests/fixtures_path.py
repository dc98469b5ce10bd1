"""Where the shared, read-only test material (real session fixtures, docs) lives.

One lookup for every test: ``$SESSIONSTREAM_SHARED_DIR`` when set, else the ``shared`` folder
beside the repository root. Tests that need it skip with a stated reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

__all__ = ["claude_fixtures", "codex_fixtures", "shared_dir"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The shared folder (it may not exist; callers check and skip)."""
    configured = os.environ.get("SESSIONSTREAM_SHARED_DIR")
    return Path(configured) if configured else REPO_ROOT.parent / "shared"


def claude_fixtures() -> Path:
    """The real Claude Code transcripts; skips the calling test, saying why, when absent."""
    root = shared_dir() / "fixtures" / "sessions" / "claude-code"
    if not root.exists():
        pytest.skip(f"real Claude Code transcripts not found at {root} "
                    "(set SESSIONSTREAM_SHARED_DIR)")
    return root


def codex_fixtures() -> Path:
    """The real Codex rollouts (``rollout-*.jsonl``); skips, saying why, when absent."""
    root = (shared_dir() / "fixtures" / "sessions" / "codex" / "localpush" / "codex"
            / "2026-02-23" / "raw" / "sessions")
    if not any(root.glob("rollout-*.jsonl")):
        pytest.skip(f"real Codex rollouts not found at {root} (set SESSIONSTREAM_SHARED_DIR)")
    return root
