#!/usr/bin/env python3
"""Measure sessionstream: append-to-Postgres latency, backfill throughput, worker memory.

Run on demand (never from the test suite):

    .venv/bin/python scripts/benchmark.py latency --lines 200
    .venv/bin/python scripts/benchmark.py throughput --copies 3
    .venv/bin/python scripts/benchmark.py throughput --copies 3 --resumed
    .venv/bin/python scripts/benchmark.py replay --copies 8
    .venv/bin/python scripts/benchmark.py restart --copies 10
    .venv/bin/python scripts/benchmark.py floor --copies 4
    .venv/bin/python scripts/benchmark.py records --sessions 200 --turns 20

They run the real CLI as a user would, in a scratch state dir, on the embedded default (Kafka
and an embedded PostgreSQL, started for the run and stopped after) unless
SESSIONSTREAM_BROKER_URL / SESSIONSTREAM_POSTGRES_DSN point elsewhere.

* ``latency``: starts ``sessionstream run`` watching a scratch Claude projects dir, appends one
  user line at a time to a session file (flushed), and measures the time until its row is in
  Postgres's ``messages`` table (polled every 5 ms). Prints p50, p90, p99 and max.
* ``throughput``: ``sessionstream backfill`` of the Claude Code fixtures (``--copies`` copies,
  each under new session ids), wall time of the whole command (Python start, consumer groups,
  the last summarizer tick included), lines per second, and the worker's peak RSS. Kafka and
  PostgreSQL (and Neo4j with ``--neo4j``) are started first and timed apart, as for a user
  whose stack is up; ``--cold`` counts their start too. ``--workers N`` passes
  ``backfill --workers N``; ``--profile FILE`` samples the worker with py-spy.
  ``--resumed`` adds a resume of every session (its chain copied under a new id), so every
  batch runs the stores' cross-file lineage lookups.
* ``replay``: backfills the copies, then times ``sessionstream replay postgres`` (events/s).
* ``floor``: what one line costs in this process's CPU at each step, without the pipeline
  around it: JSON reading (the physical floor), building and encoding its file-change record,
  decoding it and parsing it into events, filtering, the consumers' decode, and aiokafka's own
  cost per record sent and read (against the running broker; the broker's CPU is not counted).
  Prints microseconds per line per step and the lines/s one core could reach if nothing else
  ran, so a target can be checked against what the design spends per line.
* ``records``: a source kept in SQLite, read record by record. Builds an OpenCode-shaped
  ``opencode.db`` (``--sessions`` sessions of ``--turns`` turns: a prompt, a reply with
  reasoning, a tool call and a step summary, six rows a turn; write-ahead log on, as OpenCode
  keeps it), times ``backfill --source opencode=DIR`` (records/s, peak RSS), then starts
  ``run`` and appends ``--appends`` prompts to one session, measuring each from its commit to
  its row in Postgres (p50, p90, max).
* ``restart``: backfills the copies, stops everything (``stack down``, as a reboot would), then
  starts ``run`` and reports the seconds until it is watching, how many lines it published
  again, and the CPU it spent in its first seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from streams.lag import end_offsets  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-c", "from app.cli import main; main()"]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "sessions" / "claude-code"


def _env(state: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["SESSIONSTREAM_STATE_DIR"] = str(state)
    env.setdefault("SESSIONSTREAM_METRICS_PORT", "0")
    env.setdefault("PYTHONPATH", str(ROOT))
    return env


def _dsn(env: dict[str, str]) -> str:
    if env.get("SESSIONSTREAM_POSTGRES_DSN"):
        return env["SESSIONSTREAM_POSTGRES_DSN"]
    out = subprocess.run([*CLI, "stack", "status"], env=env, capture_output=True, text=True,
                         check=False).stdout
    for line in out.splitlines():
        if line.startswith("postgres") and "postgresql://" in line:
            return line.split()[3]
    raise SystemExit("embedded Postgres is not running:\n" + out)


def _peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _user_line(session: str, n: int) -> str:
    return json.dumps({
        "parentUuid": None, "isSidechain": False, "userType": "external",
        "cwd": "/bench/project", "sessionId": session, "version": "2.1.39", "type": "user",
        "message": {"role": "user", "content": f"benchmark prompt {n}"},
        "uuid": str(uuid.uuid4()), "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z",
                                                              time.gmtime()),
    })


async def _latency(args: argparse.Namespace, state: Path) -> None:
    env = _env(state)
    projects = state / "claude" / "-bench-project"
    projects.mkdir(parents=True)
    session = str(uuid.uuid4())
    path = projects / f"{session}.jsonl"
    path.write_text(_user_line(session, 0) + "\n")
    log = (state / "run.log").open("wb")
    worker = subprocess.Popen([*CLI, "run", "--source", str(state / "claude")], env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        conn = None
        while conn is None:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit("worker did not start:\n" + (state / "run.log").read_text())
            try:
                conn = await asyncpg.connect(_dsn(env))
                if not await conn.fetchval("SELECT count(*) FROM messages WHERE session_id=$1",
                                           session):
                    await conn.close()
                    conn = None
            except (OSError, asyncpg.PostgresError, SystemExit):
                conn = None
            if conn is None:
                await asyncio.sleep(0.5)
        print(f"worker up; appending {args.lines} lines, one every {args.interval}s",
              file=sys.stderr)
        latencies = []
        with path.open("a") as handle:
            for n in range(1, args.lines + 1):
                line = _user_line(session, n)
                key = "user:" + json.loads(line)["uuid"]
                handle.write(line + "\n")
                handle.flush()
                started = time.perf_counter()
                while not await conn.fetchval(
                        "SELECT 1 FROM messages WHERE session_id=$1 AND message_key=$2",
                        session, key):
                    if time.perf_counter() - started > 30:
                        raise SystemExit(f"line {n} not in Postgres after 30 s")
                    await asyncio.sleep(0.005)
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(args.interval)
        await conn.close()
        q = statistics.quantiles(latencies, n=100)
        print(f"append -> Postgres latency over {len(latencies)} lines: "
              f"p50 {q[49] * 1000:.0f} ms, p90 {q[89] * 1000:.0f} ms, "
              f"p99 {q[98] * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms; "
              f"worker peak RSS {_peak_rss_mb(worker.pid):.0f} MB")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)


def _corpus(state: Path, copies: int, resumed: bool = False) -> tuple[Path, int]:
    """``copies`` copies of the Claude Code fixtures under new session ids; (root, lines).

    ``resumed``: beside every main session file, a resume of it (a new session whose file
    copies the conversation chain, as ``claude --resume`` does), so every response is held by
    two files and the stores' cross-file lookups run for every session."""
    if not FIXTURES.exists():
        raise SystemExit(f"fixtures not found at {FIXTURES}")
    source = state / "claude"
    lines = 0
    for copy in range(copies):
        for path in FIXTURES.rglob("*.jsonl"):
            text = path.read_text(encoding="utf-8", errors="replace")
            # New session ids per copy: replace every id that names a file of the fixtures.
            rel = path.relative_to(FIXTURES)
            target = source / f"copy{copy}" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            stems = {p.stem for p in FIXTURES.rglob("*.jsonl")}
            for stem in stems:
                if stem in text:
                    text = text.replace(stem, f"{stem[:-4]}c{copy:03d}")
            target = target.with_name(target.name.replace(
                path.stem, f"{path.stem[:-4]}c{copy:03d}") if path.stem in stems else target.name)
            # ... and new API response ids: the same response under two sessions is a resume
            text = text.replace('"msg_', f'"msg_c{copy:03d}').replace('"req_', f'"req_c{copy:03d}')
            target.write_text(text, encoding="utf-8")
            lines += text.count("\n")
            if resumed and "subagents" not in rel.parts and not path.name.startswith("agent-"):
                lines += _write_resume(target)
    return source, lines


def _write_resume(origin: Path) -> int:
    """A resume of ``origin`` beside it: its uuid-bearing lines under a new session id."""
    session = origin.stem
    resume = f"{session[:-4]}r{session[-3:]}"
    copied = []
    for raw in origin.read_text(encoding="utf-8").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict) and line.get("uuid") and line.get("sessionId") == session:
            copied.append(json.dumps({**line, "sessionId": resume}) + "\n")
    origin.with_name(f"{resume}.jsonl").write_text("".join(copied), encoding="utf-8")
    return len(copied)


def _throughput(args: argparse.Namespace, state: Path) -> None:
    source, lines = _corpus(state, args.copies, args.resumed)
    env = _env(state)
    stack_s = 0.0
    if not args.cold:  # the servers a backfill uses, started first and timed apart
        started = time.perf_counter()
        up = subprocess.run([*CLI, "stack", "up", "kafka", "postgres",
                             *(["neo4j"] if args.neo4j else [])],
                            env=env, capture_output=True, text=True, check=False)
        if up.returncode != 0:
            raise SystemExit(up.stdout[-3000:] + up.stderr[-3000:])
        stack_s = time.perf_counter() - started
    command = [*CLI, "backfill", "--source", str(source), "--workers", str(args.workers)]
    servers_before = _server_cpu(state)
    cpu_before = _children_cpu()  # the stack's start, above
    if args.profile:
        command = _profiled(command, args.profile)
    started = time.perf_counter()
    worker = subprocess.Popen(command, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines_out = _drained(worker)  # a full pipe would stop the worker (and its helpers)
    peak = 0.0
    while worker.poll() is None:
        peak = max(peak, _tree_rss_mb(worker.pid) if args.profile else _rss_now_mb(worker.pid))
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    worker_cpu = _children_cpu() - cpu_before
    time.sleep(0.2)
    servers = {name: cpu - servers_before.get(name, 0.0)
               for name, cpu in _server_cpu(state).items()}
    output = "".join(lines_out)
    if worker.returncode != 0:
        raise SystemExit(output[-3000:])
    what = " with a resume of every session" if args.resumed else ""
    graph = ", Neo4j on" if args.neo4j else ""
    start = ("servers started with it" if args.cold
             else f"servers started before, in {stack_s:.1f} s")
    print(f"backfill of {lines} lines ({args.copies} cop{'y' if args.copies == 1 else 'ies'} of "
          f"the fixtures{what}{graph}, {args.workers} worker{'s' * (args.workers > 1)}; "
          f"{start}): {elapsed:.1f} s wall for the command, {lines / elapsed:,.0f} lines/s; "
          f"main worker peak RSS {peak:.0f} MB")
    print(f"CPU seconds: workers {worker_cpu:.1f}, " + ", ".join(
        f"{name} {cpu:.1f}" for name, cpu in sorted(servers.items()))
        + f" (of {os.cpu_count()} cores x {elapsed:.1f} s)")
    if args.profile:
        _print_profile(Path(args.profile))
    if args.sessionlog:
        _sessionlog(args.sessionlog, source, lines, state)


def _server_cpu(state: Path) -> dict[str, float]:
    """CPU seconds so far of each running server of the stack (with its exited children, such
    as Postgres backends of closed connections)."""
    cpu = {}
    for pid_file in (state / "stack").glob("*/pid"):
        try:
            fields = Path(f"/proc/{pid_file.read_text().split()[0]}/stat").read_text()
        except (OSError, IndexError):
            continue
        ticks = fields.rsplit(")", 1)[1].split()[11:15]
        cpu[pid_file.parent.name] = sum(int(t) for t in ticks) / os.sysconf("SC_CLK_TCK")
    return cpu


def _children_cpu() -> float:
    """CPU seconds of this script's waited-for children (the worker, its helpers)."""
    usage = os.times()
    return usage.children_user + usage.children_system


def _sessionlog(binary: str, source: Path, lines: int, state: Path) -> None:
    """The same corpus through sessionlog (``pip install sessionlog`` in a scratch virtualenv;
    never a dependency of ours): file -> SQLite, no broker."""
    started = time.perf_counter()
    peer = subprocess.Popen([binary, "ingest", "--force", "--sources-dir", str(source),
                             "--db", str(state / "sessionlog.sqlite")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0.0
    while peer.poll() is None:
        peak = max(peak, _rss_now_mb(peer.pid))
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    if peer.returncode != 0:
        raise SystemExit((peer.stdout.read() if peer.stdout else "")[-3000:])
    print(f"sessionlog ingest --force of the same {lines} lines: {elapsed:.1f} s wall, "
          f"{lines / elapsed:,.0f} lines/s; peak RSS {peak:.0f} MB")


def _drained(process: subprocess.Popen[str]) -> list[str]:
    """The lines ``process`` writes, read as they come by a background thread."""
    lines: list[str] = []

    def drain() -> None:
        for line in process.stdout or []:
            lines.append(line)

    threading.Thread(target=drain, daemon=True).start()
    return lines


def _profiled(command: list[str], out: str) -> list[str]:
    """``command`` under py-spy (a sampling profiler: the worker runs at full speed), writing
    collapsed stacks to ``out``."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    return [spy, "record", "--gil", "--format", "raw", "--rate", "200", "-o", out, "--", *command]


def _print_profile(path: Path, top: int = 25) -> None:
    """The functions with the most samples, inclusive (on the stack) and self (on top)."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1]
                  if " (" in f else f for f in stack.split(";")]
        n = int(count)
        total += n
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n
    for title, table in (("inclusive", inclusive), ("self", own)):
        print(f"\nprofile, {title} (% of {total} samples):")
        for frame, n in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            print(f"  {100 * n / total:5.1f}%  {frame}")


def _tree_rss_mb(pid: int) -> float:
    """RSS of ``pid``'s children (the worker under the profiler)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    return sum(_rss_now_mb(int(child)) for child in children)


def _backfilled(state: Path, copies: int) -> tuple[Path, int, dict[str, str]]:
    """``copies`` of the fixtures written and backfilled (not timed): (root, lines, env)."""
    source, lines = _corpus(state, copies)
    env = _env(state)
    done = subprocess.run([*CLI, "backfill", "--source", str(source)], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
    return source, lines, env


def _replay(args: argparse.Namespace, state: Path) -> None:
    """A backfilled history (not timed), then ``replay postgres`` (timed)."""
    _, lines, env = _backfilled(state, args.copies)
    started = time.perf_counter()
    worker = subprocess.Popen([*CLI, "replay", "postgres"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    lines_out = _drained(worker)
    peak = 0.0
    while worker.poll() is None:
        peak = max(peak, _rss_now_mb(worker.pid))
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    time.sleep(0.2)
    output = "".join(lines_out)
    if worker.returncode != 0:
        raise SystemExit(output[-3000:])
    last = [line for line in output.splitlines() if line.startswith("replayed ")][-1]
    records = int(last.split(": ", 1)[1].split()[0])
    inner = float(last.rsplit(" in ", 1)[1].split()[0])
    print(f"replay postgres of {records} events (a backfill of {lines} lines): {elapsed:.1f} s "
          f"for the command, {records / elapsed:,.0f} events/s; {inner:.1f} s and "
          f"{records / inner:,.0f} events/s from its reset to the end; peak RSS {peak:.0f} MB")


def _restart(args: argparse.Namespace, state: Path) -> None:
    """A backfilled history, everything stopped (a laptop restart), then ``run`` again."""
    source, lines, env = _backfilled(state, args.copies)
    before = _topic_lines(env)
    subprocess.run([*CLI, "stack", "down"], env=env, capture_output=True, check=False)
    started = time.perf_counter()
    worker = subprocess.Popen([*CLI, "run", "--source", str(source)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    watching = threading.Event()

    def drain() -> None:
        for line in worker.stdout or []:
            output.append(line)
            if "watching " in line:  # older versions logged it as "[WARNING] b'watching..."
                watching.set()

    threading.Thread(target=drain, daemon=True).start()
    if not watching.wait(180):
        worker.kill()
        raise SystemExit("run did not start:\n" + "".join(output)[-3000:])
    to_watching = time.perf_counter() - started
    time.sleep(args.settle)
    cpu = _cpu_seconds(worker.pid)
    after = _topic_lines(env)
    worker.send_signal(signal.SIGINT)
    worker.wait(timeout=60)
    new_log = any("every source from the start" in line for line in output)
    again = after if new_log else after - before
    print(f"restart after a backfill of {lines} lines ({args.copies} cop"
          f"{'y' if args.copies == 1 else 'ies'}): 'watching' {to_watching:.1f} s after the "
          f"start; lines published again: {again} ({'a new' if new_log else 'the same'} broker "
          f"log); worker CPU in its first {to_watching + args.settle:.0f} s: {cpu:.1f} s")


def _floor(args: argparse.Namespace, state: Path) -> None:
    """CPU per line at each step of the hot path, measured in this process."""
    from uuid import uuid4  # noqa: PLC0415

    import orjson  # noqa: PLC0415
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: PLC0415

    from agents import filter_events, parse_lines  # noqa: PLC0415
    from schemas.events import SessionEvent  # noqa: PLC0415
    from schemas.file_changes import FileChanged, FileLine, file_line_event  # noqa: PLC0415
    from streams.batches import BatchSender  # noqa: PLC0415
    from streams.codecs import decode, encode_file_change, encode_record  # noqa: PLC0415
    from streams.errors import InvalidEvent  # noqa: PLC0415

    source, _ = _corpus(state, args.copies)
    raw_lines: list[tuple[Path, int, int, bytes]] = []
    for path in sorted(source.rglob("*.jsonl")):
        offset = 0
        for line_no, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
            if raw.strip():
                raw_lines.append((path, offset, line_no, raw))
            offset += len(raw) + 1
    n = len(raw_lines)
    steps: list[tuple[str, float]] = []

    def timed(name: str, work: Any) -> Any:
        started = time.process_time()
        result = work()
        steps.append((name, time.process_time() - started))
        return result

    timed("orjson.loads of the line (the physical floor)",
          lambda: [orjson.loads(raw) for _, _, _, raw in raw_lines])
    mtime = datetime.now(UTC)

    def build() -> list[bytes]:
        line_of = FileLine.model_construct  # as the producer builds them: valid by construction
        return [encode_file_change(file_line_event("claude-code", path.stem, line_of(
            path=str(path), offset=offset, line_no=line_no, line=raw.decode(), mtime=mtime,
            file_kind="main", agent_id=None, truncated=False, original_bytes=None),
            validate=False)) for path, offset, line_no, raw in raw_lines]

    changes = timed("producer: file-change record built and encoded", build)

    def parse() -> list[bytes]:
        out = []
        for value in changes:
            try:
                events = parse_lines.decide(decode(FileChanged, value))
            except InvalidEvent:
                continue
            out.extend(encode_record(event) for event in events)
        return out

    events = timed("parse stage: decode, parse, encode its events", parse)
    per_line = len(events) / n
    decoded = timed("filter stage: decode its events", lambda: [decode(SessionEvent, value)
                                                                 for value in events])
    policy = filter_events.FilterPolicy()
    timed("filter stage: decide", lambda: [filter_events.decide(policy, event)
                                           for event in decoded])

    async def kafka() -> None:
        bootstrap = _bootstrap(_env(state))
        topic = f"bench.floor.{uuid4().hex[:8]}"
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                    max_batch_size=512 * 1024)
        await producer.start()
        try:
            await producer.client._maybe_wait_metadata()  # noqa: SLF001
            await producer.partitions_for(topic)  # auto-created
            sender = BatchSender(producer, topic)
            await sender.start()
            started = time.process_time()
            for value in events:
                await sender.add(b"k", value)
            await sender.flush()
            steps.append((f"aiokafka: send its {per_line:.2f} events (one hop)",
                          time.process_time() - started))
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    max_partition_fetch_bytes=4 * 1024 * 1024)
        await consumer.start()
        try:
            started = time.process_time()
            got = 0
            while got < len(events):
                batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
                got += sum(len(records) for records in batch.values())
            steps.append((f"aiokafka: read its {per_line:.2f} events (one consumer)",
                          time.process_time() - started))
        finally:
            await consumer.stop()

    up = subprocess.run([*CLI, "stack", "up", "kafka"], env=_env(state), capture_output=True,
                        text=True, check=False)
    if up.returncode != 0:
        raise SystemExit(up.stdout[-3000:] + up.stderr[-3000:])
    asyncio.run(kafka())
    print(f"{n} lines, {len(events)} events ({per_line:.2f} per line); CPU of this process:")
    for name, seconds in steps:
        print(f"  {1e6 * seconds / n:8.1f} us/line  {name}")
    by_name = dict(steps)
    send = next(v for k, v in by_name.items() if k.startswith("aiokafka: send"))
    read = next(v for k, v in by_name.items() if k.startswith("aiokafka: read"))
    # A line is one file-change record (sent once, read once) and its events, which travel two
    # hops (events, filtered) and are read by four consumers (filter, summarizer, projection).
    change_hop = (send + read) / len(events) * n  # per record, as for an event
    pipeline = (by_name["producer: file-change record built and encoded"]
                + by_name["parse stage: decode, parse, encode its events"]
                + by_name["filter stage: decode its events"]
                + by_name["filter stage: decide"]
                + 2 * send + 3 * read + change_hop)
    print(f"  {1e6 * pipeline / n:8.1f} us/line  the pipeline's Python floor: the steps above, "
          "2 sends and 3 reads of the events, 1 send and read of the file change; no stores, "
          "no summaries")
    print(f"  at most {n / pipeline:,.0f} lines/s on one core with nothing else running")


OPENCODE_DDL = """
CREATE TABLE session (id TEXT PRIMARY KEY, project_id TEXT NOT NULL, parent_id TEXT,
  directory TEXT NOT NULL, title TEXT NOT NULL, version TEXT NOT NULL,
  time_created INTEGER NOT NULL, time_updated INTEGER NOT NULL);
CREATE TABLE message (id TEXT PRIMARY KEY, session_id TEXT NOT NULL,
  time_created INTEGER NOT NULL, time_updated INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE part (id TEXT PRIMARY KEY, message_id TEXT NOT NULL, session_id TEXT NOT NULL,
  time_created INTEGER NOT NULL, time_updated INTEGER NOT NULL, data TEXT NOT NULL);
"""


def _opencode_turn(session: str, turn: int, at: int) -> list[tuple[str, tuple[Any, ...]]]:
    """The rows of one turn: ``(table, values)``, six rows."""
    user, reply = f"msg_{session}_u{turn}", f"msg_{session}_a{turn}"
    tokens = {"input": 900, "output": 300, "reasoning": 40, "cache": {"read": 8000, "write": 500}}
    parts = [
        (user, {"type": "text", "text": f"Turn {turn}: fix the failing test in module {turn}."}),
        (reply, {"type": "reasoning", "text": "Read the module, then the test. " * 8}),
        (reply, {"type": "tool", "callID": f"call_{session}_{turn}", "tool": "read",
                 "state": {"status": "completed", "input": {"filePath": f"/src/m{turn}.py"},
                           "output": "def f(x):\n    return x * 2\n" * 40}}),
        (reply, {"type": "step-finish", "tokens": tokens, "cost": 0.01}),
    ]
    rows: list[tuple[str, tuple[Any, ...]]] = [
        ("message", (user, session, at, at, json.dumps(
            {"role": "user", "time": {"created": at}}))),
        ("message", (reply, session, at + 1, at + 2, json.dumps(
            {"role": "assistant", "time": {"created": at + 1}, "modelID": "claude-sonnet-4-5",
             "providerID": "anthropic", "path": {"cwd": "/src", "root": "/src"},
             "tokens": tokens}))),
    ]
    rows += [("part", (f"prt_{message}_{n}", message, session, at + n, at + n, json.dumps(data)))
             for n, (message, data) in enumerate(parts)]
    return rows


def _insert(conn: Any, rows: list[tuple[str, tuple[Any, ...]]]) -> None:
    for table, values in rows:
        marks = ", ".join("?" * len(values))
        conn.execute(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", values)


def _opencode_db(root: Path, sessions: int, turns: int) -> tuple[Path, int]:
    """An OpenCode database of ``sessions`` x ``turns``; (its path, records written)."""
    import sqlite3

    root.mkdir(parents=True, exist_ok=True)
    path = root / "opencode.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(OPENCODE_DDL)
    records, start = 0, 1_795_000_000_000
    for n in range(sessions):
        session = f"ses_{uuid.uuid4().hex[:12]}"
        began = start + n * 100_000
        conn.execute("INSERT INTO session VALUES (?, 'prj', NULL, '/src', ?, '1.2.10', ?, ?)",
                     (session, f"Session {n}", began, began + turns * 10))
        rows = [row for turn in range(turns)
                for row in _opencode_turn(session, turn, start + n * 100_000 + turn * 10)]
        _insert(conn, rows)
        records += 1 + len(rows)
    conn.commit()
    conn.close()
    return path, records


def _records(args: argparse.Namespace, state: Path) -> None:
    import sqlite3

    root = state / "opencode"
    path, records = _opencode_db(root, args.sessions, args.turns)
    env = _env(state)
    up = subprocess.run([*CLI, "stack", "up", "kafka", "postgres"], env=env,
                        capture_output=True, text=True, check=False)
    if up.returncode != 0:
        raise SystemExit(up.stdout[-3000:] + up.stderr[-3000:])
    started = time.perf_counter()
    worker = subprocess.Popen([*CLI, "backfill", "--source", f"opencode={root}"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = _drained(worker)
    peak = 0.0
    while worker.poll() is None:
        peak = max(peak, _rss_now_mb(worker.pid))
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    if worker.returncode != 0:
        raise SystemExit("".join(out)[-3000:])
    print(f"backfill of an OpenCode database, {records} records ({args.sessions} sessions x "
          f"{args.turns} turns, {path.stat().st_size / 1e6:.1f} MB): {elapsed:.1f} s wall, "
          f"{records / elapsed:,.0f} records/s; worker peak RSS {peak:.0f} MB")
    if args.appends:
        conn = sqlite3.connect(path)
        try:
            asyncio.run(_records_latency(args, env, root, conn))
        finally:
            conn.close()


async def _records_latency(args: argparse.Namespace, env: dict[str, str], root: Path,
                           conn: Any) -> None:
    """Start ``run``, append prompts to one session, time each commit -> Postgres row."""
    session = conn.execute("SELECT id FROM session LIMIT 1").fetchone()[0]
    log = root.parent / "run.log"
    with log.open("wb") as out:
        worker = subprocess.Popen([*CLI, "run", "--source", f"opencode={root}"], env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    db = await asyncpg.connect(_dsn(env))
    waits: list[float] = []
    try:
        await asyncio.sleep(8)  # the worker starts and reads what is there
        for n in range(args.appends):
            at = int(time.time() * 1000)
            key = f"prt_msg_{session}_x{n}_0"
            _insert(conn, [("message", (f"msg_{session}_x{n}", session, at, at,
                                        json.dumps({"role": "user", "time": {"created": at}}))),
                           ("part", (key, f"msg_{session}_x{n}", session, at, at, json.dumps(
                               {"type": "text", "text": f"Appended prompt {n}"})))])
            conn.commit()
            committed = time.perf_counter()
            while not await db.fetchval("SELECT count(*) FROM messages WHERE session_id = $1 "
                                        "AND content::text LIKE $2", session,
                                        f"%Appended prompt {n}\"%"):
                if time.perf_counter() - committed > 60:
                    tail = log.read_text(errors="replace")[-3000:]
                    raise SystemExit(f"append {n} did not reach Postgres in 60 s; run:\n{tail}")
                await asyncio.sleep(0.005)
            waits.append(time.perf_counter() - committed)
            await asyncio.sleep(args.interval)
    finally:
        await db.close()
        worker.send_signal(signal.SIGINT)
        worker.wait(timeout=60)
    ms = sorted(w * 1000 for w in waits)
    print(f"append to the database -> Postgres over {len(ms)} prompts: p50 "
          f"{statistics.median(ms):.0f} ms, p90 {ms[int(len(ms) * 0.9) - 1]:.0f} ms, "
          f"max {ms[-1]:.0f} ms")


def _bootstrap(env: dict[str, str]) -> str:
    """The running broker's bootstrap address (from ``stack status``)."""
    if env.get("SESSIONSTREAM_BROKER_URL"):
        return env["SESSIONSTREAM_BROKER_URL"].removeprefix("kafka://")
    out = subprocess.run([*CLI, "stack", "status"], env=env, capture_output=True, text=True,
                         check=False).stdout
    for line in out.splitlines():
        name, *rest = line.split()
        if name in ("kafka", "tansu") and rest[:1] == ["ready"] and "kafka://" in line:
            return next(w for w in rest if w.startswith("kafka://")).removeprefix("kafka://")
    raise SystemExit("no broker is running:\n" + out)


def _topic_lines(env: dict[str, str]) -> int:
    """Records in the raw-lines topic of the running embedded broker."""
    try:
        bootstrap = _bootstrap(env)
    except SystemExit:
        return 0
    return sum(asyncio.run(end_offsets(bootstrap, "sessions.file-changes.v1")).values())


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_now_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    lat = sub.add_parser("latency", help="append -> Postgres latency percentiles")
    lat.add_argument("--lines", type=int, default=200)
    lat.add_argument("--interval", type=float, default=0.05,
                     help="seconds between appends after each line landed")
    thr = sub.add_parser("throughput", help="backfill throughput and peak memory")
    thr.add_argument("--copies", type=int, default=1)
    thr.add_argument("--resumed", action="store_true",
                     help="add a resume of every session (cross-file lookups on every batch)")
    thr.add_argument("--cold", action="store_true",
                     help="count the servers' start in the backfill's time (a first run)")
    thr.add_argument("--neo4j", action="store_true", help="build the graph too")
    thr.add_argument("--workers", type=int, default=1,
                     help="worker processes (backfill --workers)")
    thr.add_argument("--sessionlog", metavar="BIN",
                     help="also time BIN ingest --force (sessionlog, installed in a scratch "
                          "virtualenv) on the same corpus")
    thr.add_argument("--profile", metavar="FILE",
                     help="sample the worker with py-spy into FILE (collapsed stacks) and "
                          "print the hottest functions")
    rep = sub.add_parser("replay", help="replay postgres after a backfill: events/s")
    rep.add_argument("--copies", type=int, default=3)
    rst = sub.add_parser("restart", help="after a backfill and a full stop: time to "
                                         "'watching', lines re-read, CPU")
    rst.add_argument("--copies", type=int, default=1)
    rst.add_argument("--settle", type=float, default=15.0,
                     help="seconds to watch the worker after 'watching'")
    rec = sub.add_parser("records", help="an OpenCode-shaped SQLite source: backfill "
                         "records/s, then append -> Postgres latency")
    rec.add_argument("--sessions", type=int, default=200)
    rec.add_argument("--turns", type=int, default=20)
    rec.add_argument("--appends", type=int, default=20,
                     help="prompts appended while `run` watches (0: backfill only)")
    rec.add_argument("--interval", type=float, default=0.5,
                     help="seconds between appends")
    flo = sub.add_parser("floor", help="CPU per line at each step of the hot path, and the "
                                       "lines/s one core could reach")
    flo.add_argument("--copies", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the scratch state dir")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="sessionstream-bench-", dir="/var/tmp"))
    os.chmod(state, 0o755)
    try:
        if args.what == "latency":
            asyncio.run(_latency(args, state))
        elif args.what == "restart":
            _restart(args, state)
        elif args.what == "floor":
            _floor(args, state)
        elif args.what == "replay":
            _replay(args, state)
        elif args.what == "records":
            _records(args, state)
        else:
            _throughput(args, state)
    finally:
        subprocess.run([*CLI, "stack", "down"], env=_env(state), capture_output=True,
                       check=False)
        if not args.keep:
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
