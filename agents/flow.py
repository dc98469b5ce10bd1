"""The thin loop around every agent's pure ``decide()``: consume, validate, decide, send, ack.

Records are taken in batches with ``noack_take`` and acked only after every output (and every
dead letter) was confirmed by the broker: faust acks an event whose agent raised, so nothing
may escape this loop un-dead-lettered. A record that fails its schema, its ``decide``, or whose
outputs cannot be encoded within the record limit goes to the flow's dead-letter topic with the
reason and its original key; any other failure on one record is dead-lettered the same way.
The rest goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

import faust

from schemas.envelope import Envelope
from streams.codecs import dead_letter, decode, encode_key, encode_record
from streams.errors import InvalidEvent

__all__ = ["Flow"]

logger = logging.getLogger(__name__)

Decide = Callable[[Any], Iterable[Envelope[Any]]]


class Flow:
    """``decide`` applied to every record of ``source``; outputs go to ``target``."""

    def __init__(self, name: str, schema: object, decide: Decide, target: faust.TopicT,
                 dlq: faust.TopicT, batch: int = 500, within: float = 0.05) -> None:
        self.name = name
        self.schema = schema
        self.decide = decide
        self.target = target
        self.dlq = dlq
        self.batch = batch
        self.within = within
        self.processed = 0
        self.dead_letters = 0
        self.produced_ends: dict[int, int] = {}  # partition -> next offset after our outputs

    async def __call__(self, stream: faust.StreamT) -> None:
        async for events in stream.noack_take(self.batch, within=self.within):
            pending = []
            for event in events:
                pending += await self._process(event)
            for meta in await asyncio.gather(*pending):  # every output confirmed...
                if meta.topic == self.target.get_topic_name():
                    self.produced_ends[meta.partition] = max(
                        self.produced_ends.get(meta.partition, 0), meta.offset + 1)
            for event in events:
                await stream.ack(event)  # ...before the inputs are acked
            self.processed += len(events)

    async def _process(self, event: faust.EventT) -> list[Any]:
        message = event.message
        try:
            # Every output is encoded before any is sent: a record fails whole or not at all.
            outputs = [(encode_key(out.source, out.session_id), encode_record(out))
                       for out in self.decide(decode(self.schema, message.value))]
        except InvalidEvent as exc:
            return [await self._dead_letter(message, exc)]
        except Exception as exc:  # noqa: BLE001
            # faust acks the record of an agent that raised and stops the agent: any failure
            # on one record (a parser bug on a shape nobody foresaw) must dead-letter that
            # record instead, or it is lost and every record behind it waits.
            logger.exception("flow=%s failed on a record", self.name)
            return [await self._dead_letter(message, InvalidEvent(
                f"{self.name} failed on this record: {type(exc).__name__}: {exc}"))]
        return [await self.target.send(key=key, value=value) for key, value in outputs]

    async def _dead_letter(self, message: Any, exc: InvalidEvent) -> Any:
        """Send ``message`` to the dead-letter topic with ``exc`` as the reason, original key
        kept; returns the send's future."""
        logger.warning("flow=%s dead-letters %s[%s]@%s: %s", self.name, message.topic,
                       message.partition, message.offset, exc)
        self.dead_letters += 1
        return await self.dlq.send(key=message.key, value=dead_letter(
            self.name, exc, message.topic, message.partition, message.offset,
            message.key, message.value))
