"""The public surface of ``schemas`` (the topics' data contracts) is pinned: the ``__all__`` of
every module, exactly. Removing or renaming a name breaks consumers, and adding one is a contract
change too, so either must be made here as well, on purpose."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import schemas

pytestmark = pytest.mark.unit

EXPECTED = {
    "schemas": ["Envelope", "SessionKey", "derive_event_id"],
    "schemas.dead_letters": ["DeadLetter"],
    "schemas.envelope": ["Envelope", "SessionKey", "derive_event_id"],
    "schemas.events": [
        "ArtifactDescribed", "ArtifactRevised", "AssistantMessage", "EventPayload", "FileTouched",
        "SessionCompacted", "SessionContext", "SessionEvent", "SessionFileRemoved",
        "SessionRewound", "SessionStateReported", "SessionTitled", "SubagentLinked",
        "SystemEvent", "ToolCalled", "ToolResulted", "UnknownLine", "UsageReported",
        "UserPrompted",
    ],
    "schemas.file_changes": [
        "FileChanged", "FileLine", "MAX_SNAPSHOT_BYTES", "file_line_event", "file_removed_event",
        "file_snapshot_event",
    ],
    "schemas.limits": [
        "Count", "MAX_DEPTH", "MAX_RECORD_BYTES", "MAX_SAFE_INT", "depth_problem", "strip_nul",
        "strip_nul_escapes", "strip_nul_escapes_text",
    ],
    "schemas.summaries": [
        "LlmSummary", "LlmSummaryRetry", "SessionSummary", "SessionSummaryEvent", "TokenCounts",
    ],
    "schemas.telemetry": [
        "MAX_VALUES", "TelemetryKey", "TelemetryPolledEvent", "ToolPolled", "flatten_numbers",
        "tool_polled_event",
    ],
}


def modules() -> list[str]:
    return ["schemas", *(m.name for m in pkgutil.walk_packages(schemas.__path__, "schemas."))]


def test_every_module_of_schemas_is_pinned() -> None:
    assert sorted(modules()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_public_names_of_each_module_are_exactly_the_pinned_ones(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert sorted(exported) == EXPECTED[name]  # sorted, not set: a name listed twice fails too
    missing = [n for n in exported if not hasattr(module, n)]
    assert missing == [], f"{name}.__all__ names what it does not define"
