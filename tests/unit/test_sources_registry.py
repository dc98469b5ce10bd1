"""The sources registry finds every source from its own files, and everything reads it.

The oracle for "every source" is the source text of ``streams/producers/`` (each class that
subclasses ``FileProducer`` and sets ``source``), read without importing it; each source must
then have a parser, a provider entry, default roots, a help line and an example, and a toy
source added as one producer file and one parser file must be found with nothing else edited.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from agents import parse_lines, parsers
from agents.parsers import registry as parser_registry
from app.cli import cli
from app.sources import DEFAULT_KIND, PRODUCERS, split_roots
from projections.otel.metrics import provider_of as metrics_provider
from streams import producers, sources
from streams.producers.base import FileProducer

pytestmark = pytest.mark.unit

PRODUCERS_DIR = Path(producers.__file__).parent
# gen_ai.provider.name values of the OpenTelemetry GenAI semantic conventions used here.
SEMCONV_PROVIDERS = {"anthropic", "openai", "gcp.gemini", "gcp.vertex_ai", "aws.bedrock",
                     "azure.ai.openai", "mistral_ai", "deepseek", "x_ai", "groq", "perplexity"}


def declared_in_source() -> dict[str, str]:
    """``{source name: class name}`` of every class deriving from ``FileProducer`` (directly,
    or through a base class of the same module) with a ``source = "..."`` in
    ``streams/producers/*.py``, read from the text."""
    found = {}
    for path in sorted(PRODUCERS_DIR.glob("*.py")):
        producers = {"FileProducer"}
        for node in ast.parse(path.read_text()).body:
            if not (isinstance(node, ast.ClassDef) and any(
                    isinstance(b, ast.Name) and b.id in producers for b in node.bases)):
                continue
            producers.add(node.name)
            for stmt in node.body:
                if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                        and stmt.target.id == "source" and isinstance(stmt.value, ast.Constant)):
                    found[stmt.value.value] = node.name
    return found


def test_the_registry_finds_every_producer_that_declares_a_source() -> None:
    declared = declared_in_source()
    assert len(declared) >= 5
    assert {cls.source: cls.__name__ for cls in sources.producer_classes()} == declared
    assert sorted(sources.source_names()) == sorted(declared)
    assert list(PRODUCERS) == sources.source_names()


def test_the_order_and_the_fallback_are_the_ones_the_cli_always_had() -> None:
    assert sources.source_names()[:5] == [
        "claude-code", "codex", "gemini-cli", "antigravity", "session-skill"]
    assert DEFAULT_KIND == sources.fallback_source() == "claude-code"


@pytest.mark.parametrize("source", sources.source_names())
def test_every_source_has_a_parser(source: str) -> None:
    assert source in parse_lines.PARSERS
    assert parse_lines.PARSERS[source].__module__.startswith("agents.parsers.")


def test_no_parser_is_registered_for_a_source_no_producer_declares() -> None:
    assert sorted(parse_lines.PARSERS) == sorted(sources.source_names())


@pytest.mark.parametrize("source", sources.source_names())
def test_every_source_has_a_provider_entry_that_the_metrics_use(source: str) -> None:
    cls = sources.producer_of(source)
    assert cls is not None
    provider = sources.provider_of(source)
    assert provider == cls.provider
    assert provider is None or provider in SEMCONV_PROVIDERS
    assert metrics_provider(source, "some-model") == (provider or source)


def test_the_providers_are_the_ones_the_metrics_always_reported() -> None:
    assert {name: sources.provider_of(name) for name in sources.source_names()[:5]} == {
        "claude-code": "anthropic", "codex": "openai", "gemini-cli": "gcp.gemini",
        "antigravity": None, "session-skill": None}
    assert sources.provider_of("no-such-source") is None
    assert metrics_provider("no-such-source", "x") == "no-such-source"
    assert metrics_provider("", "x") == "unknown"


@pytest.mark.parametrize("source", sources.source_names())
def test_every_source_has_default_roots_help_and_an_example(source: str,
                                                            tmp_path: Path) -> None:
    cls = sources.producer_of(source)
    assert cls is not None
    env = {"HOME": str(tmp_path), "SESSIONSTREAM_SKILL_ROOTS": str(tmp_path / "code")}
    roots = cls.default_roots(env)  # its own or its family's, not the base's empty list
    assert roots and all(isinstance(root, Path) for root in roots)
    assert all(root.is_relative_to(tmp_path) for root in roots)
    assert cls.help_text and "\n" not in cls.help_text and len(cls.help_text) <= 90
    assert cls.example_root
    assert split_roots([f"{source}={cls.example_root}"]) == {
        source: [Path(cls.example_root).expanduser()]}


def test_the_cli_help_lists_every_source_with_its_help_and_example() -> None:
    run_help = CliRunner().invoke(cli, ["run", "--help"], terminal_width=1000).output
    backfill_help = CliRunner().invoke(cli, ["backfill", "--help"], terminal_width=1000).output
    for cls in sources.producer_classes():
        assert f"{cls.source}: {cls.help_text}" in " ".join(run_help.split())
        assert f"--source {cls.source}={cls.example_root}" in backfill_help


TOY_PRODUCER = '''
from pathlib import Path
from typing import ClassVar

from streams.producers.base import FileProducer


class ToyProducer(FileProducer):
    source: ClassVar[str] = "toy-agent"
    provider: ClassVar[str | None] = "mistral_ai"
    help_text: ClassVar[str] = "toy transcripts in ~/.toy"
    example_root: ClassVar[str] = "~/.toy"

    @classmethod
    def default_roots(cls, env):
        return [Path(env["HOME"]) / ".toy"]

    def matches(self, path):
        return path.suffix == ".toy"

    def describe(self, path, first_line):
        return path.stem, "main", None
'''

TOY_PARSER = '''
from agents.parsers.registry import parses
from streams.producers.toy import ToyProducer


@parses(ToyProducer)
def decide(event):
    return []
'''


@pytest.fixture
def toy_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A source added as one producer file and one parser file, in folders searched as part of
    the two packages; the registries are restored afterwards."""
    (tmp_path / "producers").mkdir()
    (tmp_path / "producers" / "toy.py").write_text(TOY_PRODUCER)
    (tmp_path / "parsers").mkdir()
    (tmp_path / "parsers" / "toy.py").write_text(TOY_PARSER)
    monkeypatch.setattr(producers, "__path__", [*producers.__path__, str(tmp_path / "producers")])
    monkeypatch.setattr(parsers, "__path__", [*parsers.__path__, str(tmp_path / "parsers")])
    monkeypatch.setattr(parser_registry, "_PARSERS", dict(parser_registry._PARSERS))
    sources.producer_classes.cache_clear()
    sources._by_name.cache_clear()
    yield
    for name in ("streams.producers.toy", "agents.parsers.toy"):
        sys.modules.pop(name, None)
    sources.producer_classes.cache_clear()
    sources._by_name.cache_clear()


def test_a_new_source_is_one_producer_file_and_one_parser_file(toy_source: None) -> None:
    assert sources.source_names()[-1] == "toy-agent"  # default rank: after the built-in ones
    assert sources.provider_of("toy-agent") == "mistral_ai"
    assert metrics_provider("toy-agent", "unnamed") == "mistral_ai"
    cls = sources.producer_of("toy-agent")
    assert cls is not None and issubclass(cls, FileProducer)
    assert cls.default_roots({"HOME": os.sep + "h"}) == [Path(os.sep + "h", ".toy")]
    assert "toy-agent" in parse_lines._discover()


def test_a_second_parser_for_one_source_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parser_registry, "_PARSERS", dict(parser_registry._PARSERS))
    claude = sources.producer_of("claude-code")
    assert claude is not None

    def other(event):  # type: ignore[no-untyped-def]
        return []

    other.__module__ = "agents.parsers.elsewhere"
    with pytest.raises(TypeError, match="claude-code"):
        parser_registry.parses(claude)(other)
