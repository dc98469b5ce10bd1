"""A local LLM endpoint for the tests: OpenAI chat completions and Anthropic Messages, in-process.

The LLM is an external service, so the tests talk to this aiohttp server on 127.0.0.1 instead.
It answers ``POST /v1/chat/completions`` (base URL ``<url>/v1`` for the ``openai`` provider)
and ``POST /v1/messages`` (base URL ``<url>`` for ``anthropic``) with each API's success body,
unless the test scripted another answer: :meth:`FakeLlm.fail` queues error answers in each
API's own error shape, :attr:`FakeLlm.answer` sets the answer given once the queue is empty
(``None``: success). Every request is recorded with its path, headers and JSON body.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["Answer", "FakeLlm", "anthropic_error", "openai_error"]


@dataclass(frozen=True)
class Answer:
    """One scripted answer: a status, a JSON body, headers, and a delay before it."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def openai_error(status: int, code: str, message: str, **headers: str) -> Answer:
    return Answer(status, {"error": {"message": message, "type": code, "code": code}},
                  dict(headers))


def anthropic_error(status: int, kind: str, message: str, **headers: str) -> Answer:
    return Answer(status, {"type": "error", "error": {"type": kind, "message": message}},
                  dict(headers))


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float  # time.monotonic() when it arrived


class FakeLlm:
    """Start with ``async with FakeLlm() as llm``; ``llm.url`` is its base URL."""

    def __init__(self) -> None:
        self.queue: list[Answer] = []
        self.answer: Answer | None = None
        self.requests: list[Request] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    def fail(self, *answers: Answer) -> None:
        self.queue.extend(answers)

    async def __aenter__(self) -> FakeLlm:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _scripted(self, request: web.Request) -> tuple[dict[str, Any], Answer | None]:
        body = await request.json()
        self.requests.append(Request(request.path, dict(request.headers), body,
                                     time.monotonic()))
        answer = self.queue.pop(0) if self.queue else self.answer
        if answer is not None and answer.delay:
            await asyncio.sleep(answer.delay)
        return body, answer

    @staticmethod
    def _reply(answer: Answer) -> web.Response:
        return web.Response(status=answer.status, text=json.dumps(answer.body),
                            content_type="application/json", headers=answer.headers)

    @staticmethod
    def text_for(prompt: str) -> str:
        """The summary this server writes: it names the prompt's first line."""
        return f"Summary: {prompt.splitlines()[0]}"

    async def _openai(self, request: web.Request) -> web.Response:
        body, answer = await self._scripted(request)
        if answer is not None and answer.status != 200:
            return self._reply(answer)
        text = self.text_for(body["messages"][-1]["content"])
        return self._reply(Answer(body={
            "id": "chatcmpl-1", "object": "chat.completion", "model": body["model"] + "-0613",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}]}))

    async def _anthropic(self, request: web.Request) -> web.Response:
        body, answer = await self._scripted(request)
        if answer is not None and answer.status != 200:
            return self._reply(answer)
        text = self.text_for(body["messages"][-1]["content"])
        return self._reply(Answer(body={
            "id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
            "stop_reason": "end_turn",
            "content": [{"type": "text", "text": text}]}))
