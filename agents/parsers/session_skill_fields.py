"""Lenient readers of the JSON agents keep in session folders: fields, labels and progress.

No two skills write ``state.json`` or ``plan.json`` alike, so :mod:`agents.parsers.session_skill`
reads them through these: a field is found whatever its case, ``_`` or ``-``
(``currentTask`` = ``current_task``), a task is labelled by its title, name, ... or id, and
progress is counted from whichever shape is there (``{done, total}``, ``"3/7"``, a
``{task: status}`` map, a list of tasks, or a plan's tasks/steps/items, phase by phase). Every
reader accepts any JSON value and returns None (or nothing counted) for a shape it does not
know, never raising.
"""

from __future__ import annotations

import re
from typing import Any

from agents.parsers.lines import Obj

__all__ = [
    "DONE", "IN_PROGRESS", "count_done", "field_of", "label_of", "plan_items", "state_progress",
    "status_of", "text_of",
]

DONE = frozenset({"done", "completed", "complete", "checked"})
IN_PROGRESS = frozenset({"in_progress", "inprogress", "active", "doing", "running", "executing",
                         "started", "current", "wip"})
ITEM_KEYS = ("tasks", "steps", "items", "todos")
LABEL_KEYS = ("title", "name", "description", "text", "task", "id")
FRACTION = re.compile(r"^\s*(?P<done>\d+)\s*/\s*(?P<total>\d+)\s*$")


def field_of(obj: Obj, *names: str) -> Any:
    """The first of ``names`` present (not null) in ``obj``, ignoring case, ``_`` and ``-``."""
    keyed = {_norm(key): value for key, value in obj.items() if isinstance(key, str)}
    return next((keyed[n] for n in map(_norm, names) if keyed.get(n) is not None), None)


def text_of(value: object) -> str | None:
    """A non-blank string, stripped; None for anything else."""
    return value.strip() or None if isinstance(value, str) else None


def label_of(value: object) -> str | None:
    """A task as text: a string, a number, or an object's title/name/…/id."""
    if isinstance(value, dict):
        value = field_of(value, *LABEL_KEYS)
    if type(value) is int:
        return str(value)
    return text_of(value)


def status_of(item: object) -> str | None:
    """An item's status, normalized (``In-Progress`` -> ``in_progress``); flags count too."""
    if isinstance(item, dict):
        status = text_of(field_of(item, "status", "state"))
        if status:
            return status.lower().replace("-", "_").replace(" ", "_")
        if any(field_of(item, flag) is True for flag in ("done", "completed", "checked")):
            return "done"
    return None  # a bare string is a task's name, not its status


def count_done(items: list[Any]) -> tuple[int | None, int | None]:
    """``(done, total)`` of a list of tasks; ``(None, None)`` for no tasks."""
    if not items:
        return None, None
    return sum(status_of(item) in DONE for item in items), len(items)


def plan_items(plan: object) -> list[Any]:
    """The tasks of a plan: the list itself, its tasks/steps/items/todos, else its phases'
    tasks (or the phases themselves when they hold none)."""
    if isinstance(plan, list):
        return plan
    if not isinstance(plan, dict):
        return []
    for key in ITEM_KEYS:
        if isinstance(items := field_of(plan, key), list):
            return items
    phases = field_of(plan, "phases")
    if not isinstance(phases, list):
        return []
    nested = [item for phase in phases for item in plan_items(phase)]
    return nested or phases


def state_progress(state: Obj) -> tuple[int | None, int | None]:
    """``(done, total)`` of a state file, from whichever progress shape it holds."""
    progress = field_of(state, "progress")
    if isinstance(progress, str) and (m := FRACTION.match(progress)):
        return int(m["done"]), int(m["total"])  # "3/7"
    if isinstance(progress, list):
        return count_done(progress)
    if isinstance(progress, dict):
        counted = _counts(field_of(progress, "done", "completed"), field_of(progress, "total"))
        return counted or count_done([{"status": v} for v in progress.values()
                                      if isinstance(v, str)])
    counted = _counts(field_of(state, "progressDone"), field_of(state, "progressTotal"))
    return counted or count_done(plan_items(state))


def _norm(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


def _counts(done: object, total: object) -> tuple[int, int] | None:
    """``(done, total)`` when both are counts (non-negative ints), else None."""
    if type(done) is int and type(total) is int and done >= 0 and total >= 0:
        return done, total
    return None
