"""What a Markdown task list says: its title, progress and current item.

One reader for every agent kind that keeps its plan as a Markdown checklist (Antigravity's
``task.md``, session-skill ``PLAN.md``): the first ``# `` heading is the title; every
``- [.]`` / ``* [.]`` / ``1. [.]`` item counts, ``[x]``/``[X]`` as done; the current item is the
one a ``<!-- current-task: ... -->`` comment names, else the first marked in progress (``[/]``
or ``[~]``). Lines inside fenced code blocks are not read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

__all__ = ["Checklist", "prose_lines", "read_checklist"]

ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+\[(?P<mark>.)\]\s*(?P<text>.*)$")
HEADING = re.compile(r"^#\s+(?P<title>.+?)\s*#*\s*$")
COMMENT = re.compile(r"<!--.*?-->")
CURRENT_TASK = re.compile(r"<!--\s*current-task:\s*(?P<task>.*?)\s*-->", re.IGNORECASE)
DONE, IN_PROGRESS = "xX", "/~"


class Checklist(NamedTuple):
    """Heading, items done of items in total, and the current item (None when absent)."""

    title: str | None
    done: int
    total: int
    current: str | None


def prose_lines(markdown: str) -> Iterator[str]:
    """The lines of ``markdown`` outside fenced code blocks."""
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced:
            yield line


def read_checklist(markdown: str) -> Checklist:
    """The :class:`Checklist` of ``markdown``; all zeros and None for a text without one."""
    title, done, total, current = None, 0, 0, None
    for line in prose_lines(markdown):
        if title is None and (heading := HEADING.match(line)):
            title = heading["title"]
        if item := ITEM.match(line):
            total += 1
            done += item["mark"] in DONE
            if current is None and item["mark"] in IN_PROGRESS:
                current = COMMENT.sub("", item["text"]).strip() or None
    named = CURRENT_TASK.search(markdown)
    return Checklist(title, done, total, (named["task"] or None) if named else current)
