"""Session events -> ``sessions.filtered.v1``: the content policy heavy consumers read through.

This module owns what "content" means for each event kind and how much of it reaches the
filtered topic: per kind a :class:`ContentMode` of FULL (as is), SUMMARY (the first
``summary_chars`` characters and a visible ``… [truncated N chars]`` marker) or OMIT (the
content replaced by ``[omitted N chars]``, or emptied where it is not text). Events are never
dropped, so counts computed downstream stay right, and they keep their ``event_id`` (same fact,
same id). Where the payload has a ``truncated`` flag, SUMMARY and OMIT set it whenever they
removed something. Kinds without content (usage, titles, context, files...) always pass as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, get_args

from schemas.events import EventPayload, SessionEvent
from streams.errors import ConfigError

__all__ = ["CONTENT_FIELDS", "ContentMode", "FilterPolicy", "decide"]


class ContentMode(StrEnum):
    FULL = "full"
    SUMMARY = "summary"
    OMIT = "omit"


CONTENT_FIELDS: Mapping[str, str] = MappingProxyType({
    "user.prompted": "text", "assistant.message": "text", "tool.called": "input",
    "tool.resulted": "content", "system.event": "content", "line.unknown": "raw",
})
"""The one content field of each kind that has one; every other kind is metadata only."""

KINDS: frozenset[str] = frozenset(
    cls.model_fields["kind"].default for cls in get_args(get_args(EventPayload)[0])
)

_DEFAULT_MODES: Mapping[str, ContentMode] = MappingProxyType({
    "user.prompted": ContentMode.FULL, "assistant.message": ContentMode.FULL,
    "tool.called": ContentMode.SUMMARY, "tool.resulted": ContentMode.SUMMARY,
    "system.event": ContentMode.SUMMARY, "line.unknown": ContentMode.OMIT,
})


@dataclass(frozen=True)
class FilterPolicy:
    """The content mode of each kind that has content, and the length SUMMARY keeps.

    Defaults: tool results, tool inputs and system events SUMMARY, unknown lines OMIT,
    prompts and assistant text FULL.
    """

    modes: Mapping[str, ContentMode] = field(default_factory=lambda: _DEFAULT_MODES)
    summary_chars: int = 280

    def __post_init__(self) -> None:
        if self.summary_chars < 0:
            raise ConfigError(f"filter summary_chars must be >= 0, got {self.summary_chars}")
        object.__setattr__(self, "modes", MappingProxyType({**_DEFAULT_MODES, **self.modes}))

    def mode_for(self, kind: str) -> ContentMode:
        return self.modes.get(kind, ContentMode.FULL)

    @classmethod
    def from_mapping(cls, modes: Mapping[str, str], summary_chars: int = 280) -> FilterPolicy:
        """The default policy with ``modes`` (``{kind: "full"|"summary"|"omit"}``, any case)
        laid over it.

        Raises:
            ConfigError: naming the kind that is unknown, the mode that is not one of the
                three, or a kind without content given anything but ``full``.
        """
        parsed: dict[str, ContentMode] = {}
        for kind, raw in modes.items():
            if kind not in KINDS:
                raise ConfigError(f"filter policy: unknown event kind {kind!r} "
                                  f"(known: {', '.join(sorted(KINDS))})")
            try:
                mode = ContentMode(str(raw).strip().lower())
            except ValueError:
                raise ConfigError(f"filter policy: kind {kind!r} has mode {raw!r}; "
                                  "expected full, summary or omit") from None
            if kind not in CONTENT_FIELDS and mode is not ContentMode.FULL:
                raise ConfigError(f"filter policy: kind {kind!r} carries no content to "
                                  f"{mode.value}; only 'full' is allowed for it")
            parsed[kind] = mode
        return cls(modes=parsed, summary_chars=summary_chars)


def decide(policy: FilterPolicy, event: SessionEvent) -> list[SessionEvent]:
    """``event`` as the filtered topic carries it: always exactly one event, same ``event_id``.

    Pure; an event that the policy leaves untouched is returned as the same object. Use
    ``functools.partial(decide, policy)`` as a :class:`~streams.stage.Stage`'s ``decide``.
    """
    payload = event.payload
    content_field = CONTENT_FIELDS.get(payload.kind)
    mode = policy.mode_for(payload.kind)
    if content_field is None or mode is ContentMode.FULL:
        return [event]
    value = getattr(payload, content_field)
    if isinstance(value, dict):
        new_value: Any = {} if mode is ContentMode.OMIT else _summarize_input(
            value, policy.summary_chars)
        cut = new_value != value
    else:
        new_value, cut = (_omit(value) if mode is ContentMode.OMIT
                          else _truncate(value, policy.summary_chars))
    if not cut:
        return [event]
    changes: dict[str, Any] = {content_field: new_value}
    if "truncated" in type(payload).model_fields:
        changes["truncated"] = True
    return [event.model_copy(update={"payload": payload.model_copy(update=changes)})]


def _truncate(text: str, keep: int) -> tuple[str, bool]:
    """The first ``keep`` characters and the marker, unless that would not be shorter."""
    removed = len(text) - keep
    if removed <= 0:
        return text, False
    clipped = f"{text[:keep]}… [truncated {removed} chars]"
    return (clipped, True) if len(clipped) < len(text) else (text, False)


def _omit(text: str) -> tuple[str, bool]:
    return (f"[omitted {len(text)} chars]", True) if text else (text, False)


def _summarize_input(value: Any, keep: int) -> Any:
    """``value`` with every long string inside it (at any depth) truncated; keys kept."""
    if isinstance(value, str):
        return _truncate(value, keep)[0]
    if isinstance(value, dict):
        return {key: _summarize_input(item, keep) for key, item in value.items()}
    if isinstance(value, list):
        return [_summarize_input(item, keep) for item in value]
    return value
