"""LLM summaries of sessions: optional, off unless ``SESSIONSTREAM_LLM_PROVIDER`` is set.

The deterministic summarizer always writes a session's summary first; this package adds a
short text written by an LLM, on the same topic (``SessionSummary.llm``), for every closed
session and, rate-limited, for long active ones. Modules, one concept each:

* :mod:`agents.llm.errors`: the failure classes of an LLM call and how HTTP answers map to them;
* :mod:`agents.llm.client`: one chat call over httpx, OpenAI-compatible or Anthropic Messages;
* :mod:`agents.llm.prompts`: the system and user prompt templates (shipped defaults or files);
* :mod:`agents.llm.policy`: what to summarize, the retry schedule, the LLM record (pure);
* :mod:`agents.llm.metrics`: the OTel instruments;
* :mod:`agents.llm.service`: one attempt at a summary: breaker, call, outcome;
* :mod:`agents.llm.runner`: the consumer of ``sessions.summaries.v1``;
* :mod:`agents.llm.retry_runner`: the consumer of the persistent retry topic;
* :mod:`agents.llm.summaries`: the two runners and the service, built from settings.
"""

__all__: list[str] = []
