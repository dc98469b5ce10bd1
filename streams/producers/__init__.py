"""Producers: turn what agents write on disk into ``sessions.file-changes.v1`` events.

:mod:`streams.producers.base` holds :class:`~streams.producers.base.FileProducer`, which owns
tailing, checkpoints, batching and file watching; every file-based source is one module here
that subclasses it and declares the source on the class (:mod:`streams.producers.claude` for
Claude Code). :mod:`streams.sources` finds those modules by import: no list names them.
Producers never import Kafka: they are given an async ``publish`` callable that returns once a
batch is durably published. The publish API (``http_api``, ``publish_*``) and the MCP telemetry
poller live here too.
"""
