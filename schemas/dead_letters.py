"""``<topic>.dlq``: an event a consumer could not process, with the reason, for a human to see.

The original bytes are kept (base64 is not needed: Kafka values are bytes, and the record
carries them as text when they decode, else as ``repr``), with the topic, partition and offset
they came from, and the consumer that gave up on them. A value too big to repeat whole (the
dead letter must fit one record itself) keeps its head, flagged ``value_truncated``.

``attempts`` counts the deliveries that failed: 1 for a record that failed the first time it
was read, N for a record re-sent by ``sessionstream redrive`` that failed again on its N-th
delivery (the re-sent record carries the ``sessionstream-attempt`` header). Added in a
compatible way: a dead letter written before it reads as 1.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DeadLetter"]


class DeadLetter(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    consumer: str
    error: str
    error_type: str
    topic: str
    partition: int
    offset: int
    key: str | None = None
    value: str
    value_bytes: int | None = Field(default=None, description="Size of the original value.")
    value_truncated: bool = Field(default=False, description="``value`` holds only the head of "
                                  "a value too big to repeat in one record.")
    failed_at: datetime
    attempts: int = Field(default=1, ge=1, description="Deliveries of this value that failed: "
                          "1, or more for a value re-sent by redrive that failed again.")
