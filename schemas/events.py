"""``sessions.events.v1`` (and ``sessions.filtered.v1``): normalized session events.

One typed payload per event kind, discriminated by ``kind`` (equal to the envelope's ``type``).
Every payload carries where it came from (``line_uuid``, ``agent_id`` for sub-agent files,
``is_sidechain``) so projections can apply the dedup rules of the session formats:
usage facts are keyed by ``message_key`` (``message.id`` + ``requestId``) and the largest
report wins; conversation nodes are keyed by ``line_uuid``.

Events report what each file holds. A file that copies another session's conversation (a
Claude resume, fork or background hand-off; a Codex fork) yields the copied lines again under
its own ``session_id``, with the same ``message_key`` and ``line_uuid``: a Claude
``message_key`` names one API response across every session, so a consumer totalling usage
counts it once. ``SessionContext.session_kind`` and ``forked_from`` carry what a file says of
its origin; which session owns a copied response is decided by the stores
(``projections.lineage``), not on this topic.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.envelope import Envelope
from schemas.limits import Count

__all__ = [
    "ArtifactDescribed", "ArtifactRevised", "SessionRewound", "SessionStateReported",
    "AssistantMessage", "EventPayload", "FileTouched", "SessionCompacted", "SessionContext",
    "SessionEvent", "SessionFileRemoved", "SessionTitled", "SubagentLinked", "SystemEvent",
    "ToolCalled", "ToolResulted", "UnknownLine", "UsageReported", "UserPrompted",
]


class _Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    line_uuid: str | None = None
    timestamp: datetime | None = None
    agent_id: str | None = Field(default=None, description="Set for lines of sub-agent files.")
    is_sidechain: bool = False


class SessionContext(_Payload):
    """Facts about the session seen on a line: working dir, branch, slug, version."""

    kind: Literal["session.context"] = "session.context"
    cwd: str | None = None
    git_branch: str | None = None
    slug: str | None = None
    version: str | None = None
    project: str | None = Field(default=None, description="Claude's project folder name.")
    model: str | None = Field(default=None, description="The model the session uses from now "
                                                        "on (billing of usage without a model).")
    session_kind: str | None = Field(default=None, description="Claude's ``sessionKind`` (``bg`` "
                                     "on a background hand-off, whose file copies its origin).")
    forked_from: str | None = Field(default=None, description="The session this one was forked "
                                    "from, when the file declares it (Codex ``forked_from_id``).")


class UserPrompted(_Payload):
    kind: Literal["user.prompted"] = "user.prompted"
    text: str
    is_meta: bool = False
    is_compact_summary: bool = False
    truncated: bool = False


class AssistantMessage(_Payload):
    """One fragment (content block) of an assistant response; merge on ``message_key``."""

    kind: Literal["assistant.message"] = "assistant.message"
    message_key: str
    model: str | None = None
    block_type: str = "text"
    text: str = ""
    truncated: bool = False


class ToolCalled(_Payload):
    kind: Literal["tool.called"] = "tool.called"
    tool_use_id: str
    name: str
    input: dict[str, Any] = Field(default_factory=dict)
    message_key: str | None = None


class ToolResulted(_Payload):
    kind: Literal["tool.resulted"] = "tool.resulted"
    tool_use_id: str
    is_error: bool = False
    content: str = ""
    truncated: bool = False


class UsageReported(_Payload):
    """Token usage of one API response as seen on one line; keep the largest per key."""

    kind: Literal["usage.reported"] = "usage.reported"
    message_key: str
    model: str | None = Field(default=None, description="None: the line names no model; it is "
                              "billed under the session's latest SessionContext.model.")
    input_tokens: Count = 0
    output_tokens: Count = 0
    cache_creation_5m_tokens: Count = 0
    cache_creation_1h_tokens: Count = 0
    cache_read_tokens: Count = 0
    speed: str | None = None

    @property
    def total(self) -> int:
        return (self.input_tokens + self.output_tokens + self.cache_creation_5m_tokens
                + self.cache_creation_1h_tokens + self.cache_read_tokens)


class SystemEvent(_Payload):
    kind: Literal["system.event"] = "system.event"
    subtype: str | None = None
    content: str = ""


class SessionCompacted(_Payload):
    kind: Literal["session.compacted"] = "session.compacted"
    trigger: str | None = None
    pre_tokens: Count | None = None


class SessionTitled(_Payload):
    kind: Literal["session.titled"] = "session.titled"
    title: str
    title_source: Literal["summary", "ai", "custom"] = "summary"


class FileTouched(_Payload):
    kind: Literal["file.touched"] = "file.touched"
    path: str
    tool: str
    access: Literal["read", "write"]
    tool_use_id: str


class SubagentLinked(_Payload):
    kind: Literal["subagent.linked"] = "subagent.linked"
    child_agent_id: str
    tool_use_id: str | None = None


class UnknownLine(_Payload):
    """A line of a type we do not know yet: kept, never fatal."""

    kind: Literal["line.unknown"] = "line.unknown"
    line_type: str | None = None
    raw: str = ""


class SessionFileRemoved(_Payload):
    kind: Literal["session.file_removed"] = "session.file_removed"
    path: str
    file_kind: Literal["main", "subagent", "artifact"] = "main"

    @property
    def ends_session(self) -> bool:
        """Only the removal of the session's own main file ends it."""
        return self.agent_id is None and self.file_kind == "main"


class SessionStateReported(_Payload):
    """A snapshot of state an agent keeps about its session (a session-skill ``state.json``,
    a plan's checklist, a spec's title), reported by one ``facet`` (usually the file it came
    from). A facet's newest report (by ``updated_at``) replaces its earlier ones, so a report is
    the facet's whole state; across facets, per field, the newest facet that sets it wins
    (``None`` means "this facet does not say")."""

    kind: Literal["session.state"] = "session.state"
    facet: str = Field(description="Where the state came from, e.g. state.json or plan.json.")
    updated_at: datetime | None = Field(default=None, description="Else the event's time.")
    slug: str | None = None
    title: str | None = None
    status: str | None = None
    session_type: str | None = None
    project: str | None = None
    working_dir: str | None = None
    session_dir: str | None = None
    current_task: str | None = None
    checkpoint: dict[str, Any] | None = None
    progress_done: Count | None = None
    progress_total: Count | None = None


class ArtifactRevised(_Payload):
    """One revision of a document the agent maintains for a session (task list, plan,
    walkthrough, spec). ``path`` names the artifact (snapshots such as ``task.md.resolved.2``
    are revisions of ``task.md``); ``content_sha256`` identifies the revision."""

    kind: Literal["artifact.revised"] = "artifact.revised"
    path: str
    name: str
    revision: str = Field(default="current", description="current, or e.g. resolved.2.")
    artifact_type: str | None = None
    summary: str | None = None
    version: str | None = None
    updated_at: datetime | None = None
    content: str = ""
    content_sha256: str
    size: Count = 0
    truncated: bool = False


class ArtifactDescribed(_Payload):
    """Metadata about an artifact (Antigravity's ``<artifact>.metadata.json``)."""

    kind: Literal["artifact.described"] = "artifact.described"
    path: str
    artifact_type: str | None = None
    summary: str | None = None
    version: str | None = None
    updated_at: datetime | None = None


class SessionRewound(_Payload):
    """The conversation was rewound to just before ``to_message_key`` (Gemini ``$rewindTo``):
    messages from that one on leave the conversation (only the conversation of the same
    ``agent_id``: a sub-agent's rewind leaves its parent's); their usage was billed and stays."""

    kind: Literal["session.rewound"] = "session.rewound"
    to_message_key: str = Field(description="The first message removed: its message_key, or "
                                            "the line_uuid of a user prompt.")


EventPayload = Annotated[
    SessionContext | UserPrompted | AssistantMessage | ToolCalled | ToolResulted | UsageReported
    | SystemEvent | SessionCompacted | SessionTitled | FileTouched | SubagentLinked | UnknownLine
    | SessionFileRemoved | SessionStateReported | ArtifactRevised | ArtifactDescribed
    | SessionRewound,
    Field(discriminator="kind"),
]

SessionEvent = Envelope[EventPayload]  # type: ignore[valid-type]
