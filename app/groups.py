"""The agents' consumer groups: the names the broker knows them by.

``status`` and the health check read these groups' committed offsets; the pipeline runs its
stages and the summarizer in them. Changing a name makes the agent start over on its topic.
"""

from __future__ import annotations

from agents.summarize_runner import GROUP_ID as SUMMARIZE_GROUP
from streams.topics import FILE_CHANGES, SESSION_EVENTS

__all__ = ["AGENT_GROUPS", "APP_ID", "FILTER_GROUP", "PARSE_GROUP", "SUMMARIZE_GROUP"]

APP_ID = "sessionstream"  # the faust app's id, and the stages' group before they had their own
PARSE_GROUP = "sessionstream.parse_lines"
FILTER_GROUP = "sessionstream.filter_events"

# (name as `status` shows it, consumer group, topic it reads)
AGENT_GROUPS = (("parse_lines", PARSE_GROUP, FILE_CHANGES.name),
                ("filter_events", FILTER_GROUP, SESSION_EVENTS.name),
                ("summarize", SUMMARIZE_GROUP, SESSION_EVENTS.name))
