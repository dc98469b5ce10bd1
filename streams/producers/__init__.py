"""Producers: turn what agents write on disk into ``sessions.file-changes.v1`` events.

:mod:`streams.producers.base` holds :class:`~streams.producers.base.FileProducer`, which owns
tailing, checkpoints, batching and file watching; every file-based source is one module that
subclasses it (:mod:`streams.producers.claude` for Claude Code). Producers never import Kafka:
they are given an async ``publish`` callable that returns once a batch is durably published.
"""
