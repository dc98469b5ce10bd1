"""The README's commands exist: every ``sessionstream <command> [<subcommand>]`` it shows (in
its shell blocks and its inline code) answers ``--help``, and so does every command of the CLI.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from app import cli_base
from app.cli import cli

pytestmark = pytest.mark.unit

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
SHELLS = {"sh", "bash", "shell", "console"}
COMMENT = re.compile(r"(?:^|(?<=\s))#.*$", re.M)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
# The program as a word (also `.venv/bin/sessionstream`), then the words after it up to the first
# option, pipe, quote or end: `sessionstream_...` metric names and `.../sessionstream/...` paths
# have no words after it.
INVOCATION = re.compile(r"(?:^|(?<=[\s/(\"'|;&]))sessionstream((?:[ \t]+[A-Za-z0-9][\w.=~/-]*)*)")


def invocations(markdown: str) -> list[list[str]]:
    """The words after ``sessionstream`` in each invocation shown in the shell blocks (comments
    left out), then in the inline code outside any block."""
    fenced: list[str] = []
    prose: list[str] = []
    start = 0
    for block in FENCE.finditer(markdown):
        prose.append(markdown[start:block.start()])
        if block.group(1).strip() in SHELLS:
            fenced.append(COMMENT.sub("", block.group(2)))
        start = block.end()
    prose.append(markdown[start:])
    texts = [*fenced, *INLINE_CODE.findall("".join(prose))]
    return [words for text in texts for m in INVOCATION.finditer(text)
            if (words := m.group(1).split())]


def command_path(words: list[str]) -> tuple[str, ...]:
    """The command (and subcommand, for a group) that ``words`` invoke; the rest are arguments.
    An unknown name ends the path as it is, so its ``--help`` fails."""
    path: list[str] = []
    command: click.Command = cli
    for word in words:
        if not isinstance(command, click.Group):
            break
        path.append(word)
        sub = command.get_command(click.Context(command), word)
        if sub is None:
            break
        command = sub
    return tuple(path)


@pytest.fixture(autouse=True)
def _no_process_wide_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    """The group runs before any ``--help`` and sets up logging, log filters and an aiokafka
    patch for the whole process: right for a real run, but the tests after these must not
    inherit them."""
    monkeypatch.setattr(cli_base, "install_outage_filter", lambda: None)
    monkeypatch.setattr(cli_base, "install_metadata_backoff", lambda: None)
    monkeypatch.setattr(cli_base.logging, "basicConfig", lambda **_: None)


def help_of(path: tuple[str, ...]) -> Result:
    return CliRunner().invoke(cli, [*path, "--help"], prog_name="sessionstream")


def every_command(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for name, command in sorted(group.commands.items()):
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths += every_command(command, (*prefix, name))
    return paths


def readme_paths() -> list[tuple[str, ...]]:
    return sorted({command_path(words) for words in invocations(README.read_text())})


def test_the_readme_shows_commands() -> None:
    paths = readme_paths()
    assert len(paths) >= 5, paths  # the parser found the quick start, not nothing


@pytest.mark.parametrize("path", readme_paths(), ids=" ".join)
def test_each_command_the_readme_shows_answers_help(path: tuple[str, ...]) -> None:
    result = help_of(path)
    assert result.exit_code == 0, f"sessionstream {' '.join(path)}: {result.output}"
    assert f"Usage: sessionstream {' '.join(path)} " in result.output


@pytest.mark.parametrize("path", every_command(), ids=" ".join)
def test_each_command_of_the_cli_answers_help(path: tuple[str, ...]) -> None:
    result = help_of(path)
    assert result.exit_code == 0, result.output
    assert f"Usage: sessionstream {' '.join(path)} " in result.output


def test_a_command_the_cli_does_not_have_fails() -> None:
    markdown = "\n".join([
        "Start with `sessionstream stack up` and `sessionstream_sessions_started_total`.",
        "```sh",
        ".venv/bin/sessionstream replay postgres --quiet   # a comment: sessionstream nothing",
        "# sessionstream commented out",
        "psql \"$(.venv/bin/sessionstream stack status | awk '{print $4}')\"",
        "sessionstream launch rockets",
        "sessionstream stack explode",
        "```",
        "```text",
        "sessionstream ignored here",
        "```",
        "Files go to `~/.cache/sessionstream/jars`.",
    ])
    paths = [command_path(words) for words in invocations(markdown)]
    assert paths == [("replay",), ("stack", "status"), ("launch",), ("stack", "explode"),
                     ("stack", "up")]
    exits = {path: help_of(path).exit_code for path in paths}
    assert exits == {("replay",): 0, ("stack", "status"): 0, ("launch",): 2,
                     ("stack", "explode"): 2, ("stack", "up"): 0}
