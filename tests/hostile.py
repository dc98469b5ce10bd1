"""A hostile Claude Code corpus with known answers, for the hostile-input tests.

:func:`write_corpus` writes session files that mix ordinary turns with every kind of bad input
a real or malicious transcript holds, and returns what the pipeline must make of them:

* ``rejected``: lines that must reach ``sessions.file-changes.v1.dlq`` with a reason naming
  their file and line (not JSON, invalid UTF-8 outside strings, not an object, nested past the
  depth limit, integers past the contract's range, huge junk that cannot be clipped);
* ``sessions``: per session, the prompts, the prompt texts and the token totals Postgres must
  hold exactly: ordinary turns plus the lines that are kept after sanitizing (NUL characters
  stripped, lone surrogates and invalid UTF-8 inside strings replaced, lines over a megabyte
  clipped with ids and usage intact, names with quotes, ``../`` and SQL/Cypher metacharacters
  kept verbatim, negative or wrongly typed token counts counted as 0).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Corpus", "Expected", "write_corpus"]

HOSTILE_NAMES = [
    "Robert'); DROP TABLE sessions;--", 'quote"in"name', "../../etc/passwd",
    "}]->(x) DETACH DELETE x //", "$1 OR 1=1", "back\\slash", "MATCH (n) RETURN n",
    "'; MATCH (n) DETACH DELETE n; //", "\u202eright-to-left", "emoji 🧨 name",
]


@dataclass
class Expected:
    """What Postgres must hold for one session."""

    prompts: list[str] = field(default_factory=list)  # texts, as stored
    input_tokens: int = 0
    output_tokens: int = 0
    tools: list[str] = field(default_factory=list)  # tool names, as stored


@dataclass
class Corpus:
    sessions: dict[str, Expected] = field(default_factory=dict)
    rejected: list[tuple[Path, int, str]] = field(default_factory=list)  # file, line, reason
    lines: int = 0


class _File:
    def __init__(self, corpus: Corpus, path: Path, session: str) -> None:
        self.corpus, self.path, self.session = corpus, path, session
        self.expected = corpus.sessions.setdefault(session, Expected())
        self.chunks: list[bytes] = []
        self.n = 0

    def raw(self, data: bytes, rejected: str | None = None) -> None:
        self.n += 1
        self.chunks.append(data + b"\n")
        if rejected is not None:
            self.corpus.rejected.append((self.path, self.n, rejected))

    def obj(self, value: object, rejected: str | None = None) -> None:
        self.raw(json.dumps(value).encode(), rejected)

    def prompt(self, text: str, stored: str | None = None) -> None:
        uid = f"u-{self.session}-{self.n}"
        line = {"type": "user", "uuid": uid, "sessionId": self.session,
                "timestamp": "2026-05-01T10:00:00Z",
                "message": {"role": "user", "content": text}}
        self.raw(json.dumps(line).encode())  # ASCII: a lone surrogate is written as an escape
        self.expected.prompts.append(text if stored is None else stored)

    def response(self, inp: object = 10, out: object = 5, counted: tuple[int, int] | None = None,
                 tool: str | None = None, rejected: str | None = None, text: str = "ok") -> None:
        uid = f"a-{self.session}-{self.n}"
        content: list[dict[str, object]] = [{"type": "text", "text": text}]
        if tool is not None:
            content.append({"type": "tool_use", "id": f"toolu_{uid}", "name": tool,
                            "input": {"file_path": tool, "command": tool}})
        line = {"type": "assistant", "uuid": uid, "sessionId": self.session,
                "requestId": f"req_{uid}", "timestamp": "2026-05-01T10:00:01Z",
                "message": {"id": f"msg_{uid}", "role": "assistant", "model": "claude-opus-4-6",
                            "content": content,
                            "usage": {"input_tokens": inp, "output_tokens": out}}}
        self.obj(line, rejected)
        if rejected is None:
            got = counted if counted is not None else (inp, out)
            self.expected.input_tokens += int(got[0])  # type: ignore[call-overload]
            self.expected.output_tokens += int(got[1])  # type: ignore[call-overload]
            if tool is not None:
                self.expected.tools.append(tool)

    def close(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(b"".join(self.chunks))
        self.corpus.lines += self.n


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _bad_lines(f: _File, rng: random.Random, big: bool) -> None:
    """One of each kind of bad line (the megabyte of junk only when ``big``), shuffled."""
    kinds = [
        lambda: f.raw(b"{this is not json", "not JSON"),
        lambda: f.raw(b'{"type":"user","message":', "not JSON"),
        lambda: f.raw(b'\xff\xfe{"type": "user"}', "not JSON"),
        lambda: f.raw(b"[1, 2, 3]", "not a JSON object"),
        lambda: f.raw(b"42", "not a JSON object"),
        lambda: f.raw(b'"just a string"', "not a JSON object"),
        lambda: f.raw(b"null", "not a JSON object"),
        lambda: f.raw(('{"type":"user","message":{"content":' + _deep(300) + "}}").encode(),
                      "nested more than"),
        lambda: f.raw(('{"type":"user","deep":' + _deep(rng.choice([100, 5_000, 100_000]))
                       + "}").encode(), "nested more than"),
        lambda: f.response(inp=2**70, rejected="less than or equal to"),
        lambda: f.response(out=10**30, rejected="less than or equal to"),
    ]
    if big:
        kinds.append(lambda: f.raw(b"x" * 1_200_000, "not JSON"))
    for kind in rng.sample(kinds, len(kinds)):
        kind()


def _kept_lines(f: _File, rng: random.Random) -> None:
    """Lines that are hostile but must be kept, sanitized, with exact content and counts."""
    f.prompt("nul\u0000inside", stored="nulinside")
    f.raw(b'{"type":"user","uuid":"' + f"u-{f.session}-raw-{f.n}".encode()
          + b'","message":{"role":"user","content":"raw\x00nul"}}')
    f.expected.prompts.append("rawnul")
    f.prompt("lone \udc00 surrogate", stored="lone \ufffd surrogate")
    f.raw(b'{"type":"user","uuid":"' + f"u-{f.session}-utf-{f.n}".encode()
          + b'","message":{"role":"user","content":"bad \xff byte"}}')
    f.expected.prompts.append("bad \ufffd byte")
    name = rng.choice(HOSTILE_NAMES)
    f.prompt(name)
    f.response(tool=name)
    f.response(inp=-5, out="12", counted=(0, 0))
    f.response(inp=True, out=None, counted=(0, 0))
    f.response(inp=7, out=3, text="y" * 1_100_000)  # clipped, usage kept


def write_corpus(root: Path, sessions: int = 24, seed: int = 7, prefix: str = "h") -> Corpus:
    """Write ``sessions`` hostile session files under ``root/<project>/``; see the module."""
    rng = random.Random(seed)
    corpus = Corpus()
    for i in range(sessions):
        session = f"{prefix}-{seed}-{i:03d}"
        f = _File(corpus, root / "-home-dev-hostile" / f"{session}.jsonl", session)
        f.prompt(f"first prompt of {session}")
        for turn in range(rng.randint(5, 15)):
            f.response(inp=rng.randint(1, 500), out=rng.randint(1, 500))
            if turn % 3 == 0:
                f.prompt(f"turn {turn}")
        for round_ in range(4):
            _bad_lines(f, rng, big=round_ == 0 and i % 3 == 0)
        if i % 6 == 0:
            _kept_lines(f, rng)
        f.response(inp=11, out=13)
        f.close()
    return corpus
