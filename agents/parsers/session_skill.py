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
from agents.parsers.registry import parses
from agents.parsers.session_skill_fields import (
    IN_PROGRESS,
    count_done,
    field_of,
    label_of,
    plan_items,
    state_progress,
    status_of,
    text_of,
)
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
from streams.producers.session_skill import SessionSkillProducer, SkillFile, skill_file

__all__ = ["DEFAULT_TYPE", "decide"]

Facet = Callable[[FileChanged, Common], list[EventPayload]]

DEFAULT_TYPE = "skill"
LAYOUT_FACET = "layout"
LAYOUT_DATE = datetime(1970, 1, 1, tzinfo=UTC)  # below every real file: any other facet wins


@parses(SessionSkillProducer)
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
    done, total = state_progress(state)
    kind = text_of(field_of(state, "type", "session_type", "kind"))
    checkpoint = field_of(state, "checkpoint")
    return [SessionStateReported(**{
        **common, "updated_at": _updated_at(state, common),
        "status": text_of(field_of(state, "status")), "title": text_of(field_of(state, "title")),
        "current_task": label_of(field_of(state, "currentTask")
                                 or field_of(as_obj(field_of(state, "position")), "task")),
        "checkpoint": checkpoint if isinstance(checkpoint, dict) else None,
        "progress_done": done, "progress_total": total, "session_type": kind or DEFAULT_TYPE})]


def _autopilot(event: FileChanged, common: Common) -> list[EventPayload]:
    state = as_obj(_json(event))
    phases = field_of(state, "phases")
    phases = phases if isinstance(phases, list) else []
    current = field_of(state, "currentPhase")
    if type(current) is int and 0 <= current < len(phases):
        current = phases[current]
    done, total = count_done(phases)
    status = text_of(field_of(state, "currentState"))
    return [SessionStateReported(**{
        **common, "updated_at": _updated_at(state, common),
        "status": status.lower() if status else None, "current_task": label_of(current),
        "progress_done": done, "progress_total": total})]


def _spec(event: FileChanged, common: Common) -> list[EventPayload]:
    title = read_checklist(event.payload.line).title
    return [SessionStateReported(**common, title=title), _artifact(event, "spec")]


def _plan_json(event: FileChanged, common: Common) -> list[EventPayload]:
    plan = _json(event)
    items = plan_items(plan)
    done, total = count_done(items)
    current = field_of(plan, "currentTask") if isinstance(plan, dict) else None
    if current is None:
        current = next((item for item in items if status_of(item) in IN_PROGRESS), None)
    return [SessionStateReported(**common, current_task=label_of(current), progress_done=done,
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
    if kind == "session_status" and (status := text_of(field_of(payload, "status"))):
        return {"status": status}
    if kind == "current_task" and (task := label_of(field_of(payload, "currentTask", "task",
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


def _updated_at(state: Obj, common: Common) -> datetime:
    return parse_time(field_of(state, "updatedAt")) or common["updated_at"]
