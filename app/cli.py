"""The ``sessionstream`` command line: the one entry point users type.

The group and its shared pieces are :mod:`app.cli_base`; importing the command modules below
attaches their commands to it.
"""

from __future__ import annotations

import logging
import sys

from app import (
    demo_commands,
    mcp_commands,
    redrive_commands,
    search_commands,
    stack_commands,
    store_commands,
    topic_commands,
    trace_commands,
    worker_commands,
)
from app.cli_base import cli

__all__ = ["cli", "main"]

COMMAND_MODULES = (stack_commands, topic_commands, worker_commands, demo_commands,
                   store_commands, redrive_commands, trace_commands, mcp_commands,
                   search_commands)


def main() -> None:
    """Run the CLI (the ``sessionstream`` console script)."""
    logging.getLogger("faust").setLevel(logging.WARNING)
    cli(prog_name="sessionstream")


if __name__ == "__main__":
    sys.exit(main())
