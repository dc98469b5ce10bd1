"""One chat call to an LLM over httpx: OpenAI-compatible chat completions or Anthropic Messages.

:class:`LlmClient` sends a system prompt and a user prompt and returns the text of the answer
and the model that wrote it. The two wire formats:

* ``openai``: ``POST <url>/chat/completions`` with ``Authorization: Bearer <key>`` (omitted
  without a key: local servers), ``{model, messages: [system, user], max_tokens}``; the text is
  ``choices[0].message.content``;
* ``anthropic``: ``POST <url>/v1/messages`` with ``x-api-key`` and ``anthropic-version``,
  ``{model, max_tokens, system, messages: [user]}``; the text is the ``text`` blocks of
  ``content``.

Errors are translated once, here, into :mod:`agents.llm.errors`: a timeout (of the request or
of the whole call, ``timeout_s``) is ``timeout``, any other transport failure ``network``, a
non-2xx answer what :func:`~agents.llm.errors.classify` says, and a 2xx answer without text
``server`` (transient: a truncated or garbled answer).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from agents.llm.errors import LlmUnavailable, classify

__all__ = ["ANTHROPIC_VERSION", "DEFAULT_URLS", "LlmClient", "LlmReply", "Provider"]

Provider = Literal["openai", "anthropic"]
ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_URLS: dict[str, str] = {"openai": "https://api.openai.com/v1",
                                "anthropic": "https://api.anthropic.com"}


@dataclass(frozen=True)
class LlmReply:
    """The answer's text and the model that wrote it."""

    text: str
    model: str


class LlmClient:
    """Calls ``model`` at ``url`` (``None``: the provider's public API). Open with
    ``async with`` (or :meth:`open`/:meth:`close`); safe for sequential and concurrent calls."""

    def __init__(self, provider: Provider, model: str, *, url: str | None = None,
                 api_key: str | None = None, timeout_s: float = 60.0, max_tokens: int = 400,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.provider = provider
        self.model = model
        self.url = (url or DEFAULT_URLS[provider]).rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.transport = transport
        self.http: httpx.AsyncClient | None = None

    @property
    def endpoint(self) -> str:
        """Where the calls go (what the breaker and the metrics are per)."""
        path = "/chat/completions" if self.provider == "openai" else "/v1/messages"
        return self.url + path

    async def open(self) -> None:
        if self.http is None:
            self.http = httpx.AsyncClient(transport=self.transport,
                                          timeout=httpx.Timeout(self.timeout_s))

    async def close(self) -> None:
        if self.http is not None:
            http, self.http = self.http, None
            await http.aclose()

    async def __aenter__(self) -> LlmClient:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def complete(self, system: str, user: str) -> LlmReply:
        """The model's answer to ``user`` under ``system``. Raises
        :class:`~agents.llm.errors.LlmUnavailable` or :class:`~agents.llm.errors.LlmRejected`."""
        assert self.http is not None, "open() first"
        headers, body = self._request(system, user)
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self.http.post(self.endpoint, json=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise LlmUnavailable("timeout", f"{self.endpoint}: no answer within "
                                            f"{self.timeout_s:g} s") from exc
        except httpx.HTTPError as exc:
            raise LlmUnavailable("network", f"{self.endpoint}: {type(exc).__name__}: "
                                            f"{exc}") from exc
        if not response.is_success:
            raise classify(response, self.endpoint)
        return self._reply(response)

    def _request(self, system: str, user: str) -> tuple[dict[str, str], dict[str, Any]]:
        if self.provider == "openai":
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            return headers, {"model": self.model, "max_tokens": self.max_tokens,
                             "messages": [{"role": "system", "content": system},
                                          {"role": "user", "content": user}]}
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        return headers, {"model": self.model, "max_tokens": self.max_tokens, "system": system,
                         "messages": [{"role": "user", "content": user}]}

    def _reply(self, response: httpx.Response) -> LlmReply:
        try:
            body = response.json()
            if self.provider == "openai":
                text = body["choices"][0]["message"]["content"] or ""
            else:
                text = "".join(block.get("text", "") for block in body["content"]
                               if block.get("type") == "text")
            model = str(body.get("model") or self.model)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise LlmUnavailable("server", f"{self.endpoint}: unreadable answer: "
                                           f"{response.text[:200]}") from exc
        if not text.strip():
            raise LlmUnavailable("server", f"{self.endpoint}: an answer without text")
        return LlmReply(text.strip(), model)
