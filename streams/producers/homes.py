"""Where a user's folders are, read from an environment: what each source's default roots
start from. Pure functions of the mapping given (and of ``platform``), so the roots of every
OS can be tested from any OS.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["data_home", "home_of"]


def home_of(env: Mapping[str, str], platform: str = sys.platform) -> Path:
    """The user's home as the agents find it: ``HOME``, else ``USERPROFILE`` (Windows sets
    only that; on Windows it is tried first, as a shell there may set a foreign ``HOME``),
    else this process's home. Blank values count as unset."""
    names = ("USERPROFILE", "HOME") if platform.startswith("win") else ("HOME", "USERPROFILE")
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return Path(value)
    return Path.home()


def data_home(env: Mapping[str, str], platform: str = sys.platform) -> Path:
    """``$XDG_DATA_HOME``, else ``<home>/.local/share``: where XDG-following agents (OpenCode,
    goose, Amp) keep their data, on every OS."""
    configured = env.get("XDG_DATA_HOME", "").strip()
    if configured:
        return Path(configured).expanduser()
    return home_of(env, platform) / ".local" / "share"

