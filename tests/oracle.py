"""Reference totals for Claude Code sessions, computed the slow, obvious way from raw files.

Deliberately independent of ``agents/`` (and of the schemas): it reads JSONL files directly and
applies the dedup rules of docs/session-formats.md section 0 in the plainest form, so tests can
compare what the pipeline derives against it. Malformed lines are skipped.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

__all__ = ["claude_session_totals"]

FILE_TOOLS = {"Read", "Edit", "Write", "MultiEdit", "NotebookEdit"}
BUCKETS = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_creation": "cache_creation_input_tokens",
    "cache_read": "cache_read_input_tokens",
}


def session_of_path(path: Path, line: dict) -> str | None:
    """The session a file belongs to, the way ccusage derives it from the layout: a main file's
    stem, the folder above ``subagents/``, or (for ~2.0.x ``agent-*.jsonl`` siblings, which carry
    nothing in their path) the line's ``sessionId``."""
    if "subagents" in path.parts:
        return path.parts[path.parts.index("subagents") - 1]
    if path.name.startswith("agent-"):
        return line.get("sessionId")
    return path.stem


def claude_session_totals(paths: list[Path], by_path: bool = False) -> dict[str, dict]:
    """Per ``sessionId`` (or, with ``by_path``, per :func:`session_of_path`): deduped token
    buckets and distinct prompts, tool calls and files.

    Tokens: top-level ``assistant`` lines only (``progress`` mirrors never count), one usage per
    ``(message.id, requestId)`` group, the one with the largest four-bucket total (the first on
    ties); a line without ``message.id`` is its own group.
    """
    usage: dict[str, dict[object, dict]] = defaultdict(dict)
    prompts: dict[str, set] = defaultdict(set)
    tool_calls: dict[str, set] = defaultdict(set)
    files: dict[str, set] = defaultdict(set)
    for path in paths:
        # a sub-agent file's prompt is the task its parent gave it: no person typed it
        sub_agent = "subagents" in path.parts or path.name.startswith("agent-")
        for line in _objects(path):
            session = session_of_path(path, line) if by_path else line.get("sessionId")
            message = line.get("message")
            if not session or not isinstance(message, dict):
                continue
            if line.get("type") == "user" and _is_prompt(line, message) and not sub_agent:
                prompts[session].add(line.get("uuid"))
            if line.get("type") != "assistant":
                continue
            _keep_largest(usage[session], line, message)
            for block in _blocks(message):
                if block.get("type") == "tool_use":
                    tool_calls[session].add(block.get("id"))
                    path_touched = _file_of(block)
                    if path_touched:
                        files[session].add(path_touched)
    sessions = set(usage) | set(prompts)
    return {s: _totals(usage[s], prompts[s], tool_calls[s], files[s]) for s in sorted(sessions)}


def _objects(path: Path):
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            value = json.loads(raw)
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value


def _is_prompt(line: dict, message: dict) -> bool:
    if line.get("isMeta") or line.get("isCompactSummary"):
        return False
    content = message.get("content")
    if isinstance(content, str):
        return True
    if isinstance(content, list):
        return not any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)
    return False


def _keep_largest(groups: dict, line: dict, message: dict) -> None:
    found = message.get("usage")
    if not isinstance(found, dict):
        return
    if message.get("id"):
        key = (message.get("id"), line.get("requestId"))
    else:
        key = ("line", line.get("uuid"))
    if key not in groups or _total(found) > _total(groups[key]):
        groups[key] = found


def _total(found: dict) -> int:
    return sum(found.get(field) or 0 for field in BUCKETS.values())


def _blocks(message: dict) -> list[dict]:
    content = message.get("content")
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _file_of(block: dict):
    if block.get("name") not in FILE_TOOLS or not isinstance(block.get("input"), dict):
        return None
    return block["input"].get("file_path") or block["input"].get("notebook_path")


def _totals(groups: dict, prompts: set, tool_calls: set, files: set) -> dict:
    totals = {name: sum(u.get(field) or 0 for u in groups.values())
              for name, field in BUCKETS.items()}
    return {**totals, "prompts": len(prompts), "tool_calls": len(tool_calls), "files": len(files)}
