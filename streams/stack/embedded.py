"""Which broker is the zero-config default, and what it keeps.

With ``SESSIONSTREAM_BROKER_URL`` unset, commands start a broker of the local stack. The
default (``SESSIONSTREAM_EMBEDDED_BROKER=auto``) is Apache Kafka 4.1 whenever Java 17+ is
installed: its log lives on disk under the state dir, so the topics really are the source of
truth across restarts, with correct offsets, compaction, idempotent producers and normal group
joins. Without Java it falls back to Tansu, whose log is in memory only, with a warning saying
what that loses. :data:`KEEPS` is the one sentence per broker that the CLI, ``stack status``
and the README repeat.
"""

from __future__ import annotations

import shutil

from streams.errors import StackError
from streams.settings import Settings
from streams.stack.java import check_java

__all__ = ["KEEPS", "TANSU_WARNING", "choose_embedded_broker"]

KEEPS = {
    "kafka": "keeps its log on disk under the state dir (topics survive restarts)",
    "tansu": "keeps its log in memory only (topics are lost when it stops)",
}

TANSU_WARNING = (
    "warning: the embedded broker is Tansu ({why}): its log is in memory only, so events "
    "published with `sessionstream publish` or the HTTP API are lost when it stops, every "
    "start re-reads every source from the start, and offsets after multi-record batches are "
    "approximate. Install Java 17+ (and Maven for the first download) to get Apache Kafka with "
    "its log on disk, or set SESSIONSTREAM_BROKER_URL to a Kafka cluster."
)


def choose_embedded_broker(settings: Settings) -> tuple[str, str | None]:
    """``(server name, warning or None)`` of the broker to start when none is configured."""
    if settings.embedded_broker == "tansu":
        return "tansu", TANSU_WARNING.format(why="SESSIONSTREAM_EMBEDDED_BROKER=tansu")
    try:
        check_java(settings.stack.java, "Kafka")
    except StackError as exc:
        if settings.embedded_broker == "kafka":
            raise
        return "tansu", TANSU_WARNING.format(why=str(exc))
    if settings.embedded_broker == "auto" and not _jars_reachable(settings):
        return "tansu", TANSU_WARNING.format(
            why="Kafka's jars are not cached and Maven (`mvn`) is not installed to fetch them")
    return "kafka", None


def _jars_reachable(settings: Settings) -> bool:
    cached = any((settings.cache_dir / "jars").glob("kafka-*/.complete"))
    return cached or shutil.which("mvn") is not None
