"""Session-skill folder files -> session state, artifacts and events: the pure half of one agent.

The producer (``streams.producers.session_skill``) publishes each rewritten file of a
``<project>/{agents,.agents,.harness}/sessions/<slug>/`` folder whole on every change, and the
lines of ``EVENTS.jsonl`` one by one. Every snapshot reports ``session.state`` under the facet of
its file name with what the path says (slug, project = the project directory's name, working_dir
= that directory, session_dir = the slug folder) plus the file's own fields, dated by the file's
``updatedAt``/``updated_at``, else its mtime; the projection merges facets per field, newest first.

- ``state.json``/``STATE.json`` (harness ``state.json`` too): status, title, current task
  (``currentTask`` or ``position.task``), the checkpoint object as is, progress (``{done,total}``,
  ``"3/7"``, a ``{task: status}`` map, a task list or ``progressDone``/``progressTotal``), session
  type (``type``/``session_type``/``kind``, else ``skill``). Keys ignore case, ``_`` and ``-``.
- ``spec.md``/``SPEC.md``: the first ``# `` heading as title, and an ``artifact.revised``.
- ``plan.json``: done (status done/completed/complete/checked) and total of its tasks/steps/items
  (or its phases' tasks); current task = ``currentTask`` or the first item in progress.
  ``PLAN.md``: ``[x]`` done, ``[ ]``/``[~]``/``[/]``/``[!]`` not; current task =
  ``<!-- current-task: … -->`` or the first ``[~]``/``[/]`` item. Both are artifacts too, as
  are ``STATUS.md`` and harness ``handoff.json``. Harness ``autopilot-state.json``: status
  (``currentState`` lower-cased), current phase, progress over phases.
- ``EVENTS.jsonl`` lines ``{ts, kind, summary, payload}``: a ``system.event``; ``session_status``
  and ``current_task`` lines also report state, under facets ``EVENTS.jsonl#<kind>`` (one each,
  so a later current-task line cannot hide an earlier status).

Each snapshot also reports ``session_type = "skill"`` under the facet ``layout`` dated 1970: a
session without a state file still reads as a skill session, and a state file's type wins. A state
or plan file that is not JSON (state: not an object) is an ``InvalidEvent`` naming the file; only
that event is dead-lettered, the session's other files still project.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any

from agents.parsers.lines import (
    Common,
    JsonTooDeep,
    Obj,
    as_obj,
    as_str,
    clip,
    decide_lines,
    load_json,
    parse_time,
)
from agents.parsers.markdown_checklist import read_checklist
from schemas.envelope import derive_event_id
from schemas.events import (
    ArtifactRevised,
    EventPayload,
    SessionEvent,
    SessionStateReported,
    SystemEvent,
    UnknownLine,
)
from schemas.file_changes import FileChanged
from streams.errors import InvalidEvent
from streams.producers.session_skill import SkillFile, skill_file

__all__ = ["DEFAULT_TYPE", "decide"]

Facet = Callable[[FileChanged, Common], list[EventPayload]]

DEFAULT_TYPE = "skill"
LAYOUT_FACET = "layout"
LAYOUT_DATE = datetime(1970, 1, 1, tzinfo=UTC)  # below every real file: any other facet wins
DONE = frozenset({"done", "completed", "complete", "checked"})
IN_PROGRESS = frozenset({"in_progress", "inprogress", "active", "doing", "running", "executing",
                         "started", "current", "wip"})
ITEM_KEYS = ("tasks", "steps", "items", "todos")
LABEL_KEYS = ("title", "name", "description", "text", "task", "id")
FRACTION = re.compile(r"^\s*(?P<done>\d+)\s*/\s*(?P<total>\d+)\s*$")


def decide(event: FileChanged) -> list[SessionEvent]:
    """The normalized events of one ``sessions.file-changes.v1`` event of a session folder.

    Pure and deterministic: the same input gives the same events with the same ids.

    Raises:
        InvalidEvent: a state or plan file that is not JSON, a path outside the session-folder
            layouts, or payloads that do not fit the schemas; the message names the file.
    """
    return decide_lines(event, _derive_line, snapshot=_derive_snapshot,
                        time_of=lambda line: parse_time(line.get("ts")))


def _derive_snapshot(event: FileChanged) -> list[EventPayload]:
    parts = _parts(event)
    facet = FACETS.get((parts.layout == ".harness", parts.name.lower()))
    if facet is None:
        raise InvalidEvent(f"{event.payload.path}: not a rewritten session-folder file")
    layout = SessionStateReported(facet=LAYOUT_FACET, updated_at=LAYOUT_DATE,
                                  session_type=DEFAULT_TYPE)
    return [*facet(event, _common(event, parts)), layout]


def _parts(event: FileChanged) -> SkillFile:
    parts = skill_file(PurePath(event.payload.path))
    if parts is None:
        raise InvalidEvent(f"{event.payload.path}: not in a <layout>/sessions/<slug>/ folder")
    return parts


def _common(event: FileChanged, parts: SkillFile) -> Common:
    return {"facet": parts.name, "slug": parts.slug, "project": parts.project_dir.name,
            "working_dir": str(parts.project_dir), "session_dir": str(parts.session_dir),
            "updated_at": event.occurred_at}


# -- facets: one per file name ---------------------------------------------------------------


def _state(event: FileChanged, common: Common) -> list[EventPayload]:
    state = _json(event)
    if not isinstance(state, dict):
        raise InvalidEvent(f"{event.payload.path}: not a JSON object")
    done, total = _state_progress(state)
    kind = _text(_field(state, "type", "session_type", "kind"))
    checkpoint = _field(state, "checkpoint")
    return [SessionStateReported(**{
        **common, "updated_at": _updated_at(state, common),
        "status": _text(_field(state, "status")), "title": _text(_field(state, "title")),
        "current_task": _label(_field(state, "currentTask")
                               or _field(as_obj(_field(state, "position")), "task")),
        "checkpoint": checkpoint if isinstance(checkpoint, dict) else None,
        "progress_done": done, "progress_total": total, "session_type": kind or DEFAULT_TYPE})]


def _autopilot(event: FileChanged, common: Common) -> list[EventPayload]:
    state = as_obj(_json(event))
    phases = _field(state, "phases")
    phases = phases if isinstance(phases, list) else []
    current = _field(state, "currentPhase")
    if type(current) is int and 0 <= current < len(phases):
        current = phases[current]
    done, total = _count(phases)
    status = _text(_field(state, "currentState"))
    return [SessionStateReported(**{
        **common, "updated_at": _updated_at(state, common),
        "status": status.lower() if status else None, "current_task": _label(current),
        "progress_done": done, "progress_total": total})]


def _spec(event: FileChanged, common: Common) -> list[EventPayload]:
    title = read_checklist(event.payload.line).title
    return [SessionStateReported(**common, title=title), _artifact(event, "spec")]


def _plan_json(event: FileChanged, common: Common) -> list[EventPayload]:
    plan = _json(event)
    items = _plan_items(plan)
    done, total = _count(items)
    current = _field(plan, "currentTask") if isinstance(plan, dict) else None
    if current is None:
        current = next((item for item in items if _status(item) in IN_PROGRESS), None)
    return [SessionStateReported(**common, current_task=_label(current), progress_done=done,
                                 progress_total=total), _artifact(event, "plan")]


def _plan_md(event: FileChanged, common: Common) -> list[EventPayload]:
    plan = read_checklist(event.payload.line)
    return [SessionStateReported(**common, current_task=plan.current,
                                 progress_done=plan.done if plan.total else None,
                                 progress_total=plan.total or None),
            _artifact(event, "plan")]


def _document(artifact_type: str) -> Facet:
    def facet(event: FileChanged, common: Common) -> list[EventPayload]:
        return [SessionStateReported(**common), _artifact(event, artifact_type)]
    return facet


FACETS: dict[tuple[bool, str], Facet] = {  # (harness layout?, lower-cased file name)
    (False, "state.json"): _state, (False, "spec.md"): _spec,
    (False, "plan.json"): _plan_json, (False, "plan.md"): _plan_md,
    (False, "status.md"): _document("status"),
    (True, "state.json"): _state, (True, "autopilot-state.json"): _autopilot,
    (True, "handoff.json"): _document("handoff"),
}


# -- EVENTS.jsonl lines ----------------------------------------------------------------------


def _derive_line(line: Obj, event: FileChanged) -> list[EventPayload]:
    """One ``{ts, kind, summary, payload}`` line: a system event, and for status and
    current-task lines the state they report."""
    uuid = derive_event_id("session-skill-line", event.payload.path, event.payload.line)
    at, kind = parse_time(line.get("ts")), as_str(line.get("kind"))
    if kind is None:
        return [UnknownLine(line_uuid=uuid, timestamp=at, raw=clip(event.payload.line, 2_000)[0])]
    summary = line.get("summary")
    content = clip(summary if isinstance(summary, str) else
                   "" if summary is None else json.dumps(summary, ensure_ascii=False))[0]
    payloads: list[EventPayload] = [SystemEvent(line_uuid=uuid, timestamp=at, subtype=kind,
                                                content=content)]
    reported = _reported(kind, as_obj(line.get("payload")))
    if reported:
        common = _common(event, _parts(event))
        payloads.append(SessionStateReported(**{
            **common, "facet": f"{common['facet']}#{kind}", "line_uuid": uuid,
            "updated_at": at or event.occurred_at, **reported}))
    return payloads


def _reported(kind: str, payload: Obj) -> Obj:
    if kind == "session_status" and (status := _text(_field(payload, "status"))):
        return {"status": status}
    if kind == "current_task" and (task := _label(_field(payload, "currentTask", "task",
                                                         "taskId", "id", "title"))):
        return {"current_task": task}
    return {}


# -- helpers ---------------------------------------------------------------------------------


def _json(event: FileChanged) -> Any:
    try:
        return load_json(event.payload.line)
    except JsonTooDeep as exc:
        raise InvalidEvent(f"{event.payload.path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        cut = " (snapshot truncated)" if event.payload.truncated else ""
        raise InvalidEvent(f"{event.payload.path}: not JSON ({exc.msg} at char {exc.pos})"
                           f"{cut}") from exc


def _artifact(event: FileChanged, artifact_type: str) -> ArtifactRevised:
    text = event.payload.line
    raw = text.encode("utf-8", "surrogatepass")
    content, clipped = clip(text)
    return ArtifactRevised(path=event.payload.path, name=PurePath(event.payload.path).name,
                           artifact_type=artifact_type, updated_at=event.occurred_at,
                           content=content, content_sha256=hashlib.sha256(raw).hexdigest(),
                           size=len(raw), truncated=clipped or event.payload.truncated)


def _norm(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


def _field(obj: Obj, *names: str) -> Any:
    """The first of ``names`` present (not null) in ``obj``, ignoring case, ``_`` and ``-``."""
    keyed = {_norm(key): value for key, value in obj.items() if isinstance(key, str)}
    return next((keyed[n] for n in map(_norm, names) if keyed.get(n) is not None), None)


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _label(value: object) -> str | None:
    """A task as text: a string, a number, or an object's title/name/…/id."""
    if isinstance(value, dict):
        value = _field(value, *LABEL_KEYS)
    if type(value) is int:
        return str(value)
    return _text(value)


def _updated_at(state: Obj, common: Common) -> datetime:
    return parse_time(_field(state, "updatedAt")) or common["updated_at"]


def _status(item: object) -> str | None:
    """An item's status, normalized (``In-Progress`` -> ``in_progress``); flags count too."""
    if isinstance(item, dict):
        status = _text(_field(item, "status", "state"))
        if status:
            return status.lower().replace("-", "_").replace(" ", "_")
        if any(_field(item, flag) is True for flag in ("done", "completed", "checked")):
            return "done"
    return None  # a bare string is a task's name, not its status


def _count(items: list[Any]) -> tuple[int | None, int | None]:
    if not items:
        return None, None
    return sum(_status(item) in DONE for item in items), len(items)


def _plan_items(plan: object) -> list[Any]:
    if isinstance(plan, list):
        return plan
    if not isinstance(plan, dict):
        return []
    for key in ITEM_KEYS:
        if isinstance(items := _field(plan, key), list):
            return items
    phases = _field(plan, "phases")
    if not isinstance(phases, list):
        return []
    nested = [item for phase in phases for item in _plan_items(phase)]
    return nested or phases


def _state_progress(state: Obj) -> tuple[int | None, int | None]:
    progress = _field(state, "progress")
    if isinstance(progress, str) and (m := FRACTION.match(progress)):
        return int(m["done"]), int(m["total"])  # "3/7"
    if isinstance(progress, list):
        return _count(progress)
    if isinstance(progress, dict):
        counted = _counts(_field(progress, "done", "completed"), _field(progress, "total"))
        return counted or _count([{"status": v} for v in progress.values()
                                  if isinstance(v, str)])
    counted = _counts(_field(state, "progressDone"), _field(state, "progressTotal"))
    return counted or _count(_plan_items(state))


def _counts(done: object, total: object) -> tuple[int, int] | None:
    """``(done, total)`` when both are counts (non-negative ints), else None."""
    if type(done) is int and type(total) is int and done >= 0 and total >= 0:
        return done, total
    return None
