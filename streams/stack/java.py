"""Java servers' prerequisites: a Java 17+ runtime and their jars from Maven Central.

Jars are gathered once with Maven (``dependency:copy-dependencies`` over a small POM shipped
in ``streams/stack/java/``) into ``<cache_dir>/jars/<name>-<pom digest>/`` and reused by every
later start, whatever the state dir. A half-finished download is never used: the directory
counts only once its ``.complete`` marker exists.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import shutil
import subprocess
from functools import cache
from importlib import resources
from pathlib import Path

from streams.errors import StackError

__all__ = ["JAVA_OPENS", "check_java", "ensure_jars", "resource_path"]

logger = logging.getLogger(__name__)

# The flags Neo4j's and Kafka's own launch scripts pass on Java 17.
JAVA_OPENS = [
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--enable-native-access=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
]


def resource_path(name: str) -> Path:
    """Path of a file shipped in ``streams/stack/java/``."""
    return Path(str(resources.files("streams.stack") / "java" / name))


@cache
@functools.cache
def check_java(java: str, who: str) -> str:
    """Return the java executable, or raise naming ``who`` needs Java 17+ and what was found.

    Cached per process: the broker choice and the server start both ask, and each asking
    spawns ``java -version`` (a failure is not cached, so installing Java is seen at once)."""
    exe = shutil.which(java)
    if exe is None:
        raise StackError(
            f"{who} needs Java 17+, `{java}` not found (set SESSIONSTREAM_STACK__JAVA)"
        )
    out = subprocess.run([exe, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):
        major = int(match.group(2))
    if major < 17:
        raise StackError(f"{who} needs Java 17+, `{exe}` is Java {major or 'unknown'}")
    return exe


def ensure_jars(name: str, pom: Path, cache_dir: Path) -> Path:
    """Directory whose ``lib/`` holds every jar ``pom`` depends on, fetched on first use."""
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    target = cache_dir / "jars" / f"{name}-{digest}"
    if (target / ".complete").exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            f"{name} jars are not cached in {target} and Maven (`mvn`) is not installed to fetch "
            "them from Maven Central; install Maven (apt-get install maven)"
        )
    logger.info("fetching %s jars from Maven Central into %s (first run only)", name, target)
    print(f"{name}: fetching jars from Maven Central into {target} (first run only)...", flush=True)
    if target.exists():
        shutil.rmtree(target)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    # Maven writes target/ beside the POM, so build from a copy, not the installed package.
    shutil.copy(pom, partial / "pom.xml")
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(partial / "pom.xml"), "dependency:copy-dependencies",
         f"-DoutputDirectory={partial / 'lib'}"],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise StackError(f"fetching {name} jars failed (mvn exit {result.returncode}):\n"
                         + (result.stdout + result.stderr)[-2000:])
    shutil.rmtree(partial / "target", ignore_errors=True)
    partial.rename(target)
    (target / ".complete").touch()
    return target
