"""Kafka plumbing and entry points, no business rules.

Settings, errors, the faust app, the local stack of real servers and the CLI live here.
"""

__version__ = "0.1.0"
