"""Gemini CLI's content fields read as text, for :mod:`agents.parsers.gemini`.

A message's ``content`` is a ``PartListUnion`` (a string, a part, or a list of them: text, a
function response, an image or file), a tool call's ``resultDisplay`` a string or an object such
as a file diff, ``thoughts`` a list of ``{subject, description}``; a file tool names its files in
one of a few argument names. Each reader accepts anything and returns text (or paths), never
raising on an unexpected shape.
"""

from __future__ import annotations

import json

from agents.parsers.lines import Obj, as_obj, as_str

__all__ = ["display_text", "file_paths", "parts_text", "thoughts_text"]

PATH_ARGS = ("file_path", "absolute_path", "path")
LIST_ARGS = ("paths", "include")  # read_many_files: paths or glob patterns
GLOB_CHARS = frozenset("*?[{")


def parts_text(content: object) -> str:
    """A ``PartListUnion`` as text: strings and ``text`` parts verbatim (joined as gemini-cli
    joins them), a function response as its output, other parts (images, files) as ``[kind]``."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        return ""
    return "".join(_part_text(part) for part in content)


def _part_text(part: object) -> str:
    if isinstance(part, str):
        return part
    part = as_obj(part)
    if isinstance(part.get("text"), str):
        return part["text"]
    response = as_obj(as_obj(part.get("functionResponse")).get("response"))
    if response:
        output = response.get("output", response.get("error", response))
        return output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
    return f"[{next(iter(part), 'part')}]"


def display_text(shown: object) -> str:
    """``resultDisplay``: a string, or an object such as a file diff (its ``fileDiff``)."""
    if isinstance(shown, str):
        return shown
    diff = as_obj(shown).get("fileDiff")
    return diff if isinstance(diff, str) else json.dumps(shown, ensure_ascii=False)


def thoughts_text(thoughts: object) -> str:
    """``thoughts[{subject, description}]`` as ``subject: description`` lines."""
    lines = []
    for thought in thoughts if isinstance(thoughts, list) else []:
        subject = as_str(as_obj(thought).get("subject")) or ""
        description = as_str(as_obj(thought).get("description")) or ""
        line = f"{subject}: {description}" if subject and description else subject or description
        if line:
            lines.append(line)
    return "\n".join(lines)


def file_paths(args: Obj) -> list[str]:
    """The concrete file paths a file tool names; glob patterns are not files."""
    for name in PATH_ARGS:
        path = as_str(args.get(name))
        if path:
            return [path]
    for name in LIST_ARGS:
        values = args.get(name)
        if isinstance(values, list):
            return [v for v in values if isinstance(v, str) and v
                    and not GLOB_CHARS.intersection(v)]
    return []
