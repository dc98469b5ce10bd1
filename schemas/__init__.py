"""Data contracts only: pydantic v2 models of every topic's key and value. No I/O.

``SessionKey`` keys every session topic; values are :class:`~schemas.envelope.Envelope` of a
typed payload: raw lines (:mod:`schemas.file_changes`), normalized events
(:mod:`schemas.events`), session summaries (:mod:`schemas.summaries`), dead letters
(:mod:`schemas.dead_letters`).
"""

from schemas.envelope import Envelope, SessionKey, derive_event_id

__all__ = ["Envelope", "SessionKey", "derive_event_id"]
