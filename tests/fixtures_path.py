"""Where the shared, read-only test material (real session fixtures, docs) lives.

One lookup for every test: ``$SESSIONSTREAM_SHARED_DIR`` when set, else the ``shared`` folder
beside the repository root. Tests that need it skip with a stated reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["shared_dir"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The shared folder (it may not exist; callers check and skip)."""
    configured = os.environ.get("SESSIONSTREAM_SHARED_DIR")
    return Path(configured) if configured else REPO_ROOT.parent / "shared"
