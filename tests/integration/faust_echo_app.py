"""A faust worker for the tests: appends every value of ``$ECHO_TOPIC`` to ``$ECHO_OUT``.

Run as ``python faust_echo_app.py worker``; built with sessionstream's own app factory.
"""

import os
from pathlib import Path

from streams.app import create_app

app = create_app(
    os.environ["ECHO_APP_ID"], os.environ["ECHO_BROKER"], Path(os.environ["ECHO_DATADIR"])
)
topic = app.topic(os.environ["ECHO_TOPIC"], value_serializer="raw")
out = Path(os.environ["ECHO_OUT"])


@app.agent(topic)
async def echo_values(stream):  # noqa: ANN001 - faust stream
    async for value in stream:
        with out.open("ab") as fh:
            fh.write(value + b"\n")


if __name__ == "__main__":
    app.main()
