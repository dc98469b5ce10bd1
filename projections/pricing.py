"""What tokens cost: the pricing table shipped as ``pricing.json``, a user's override file merged
over it, model-id resolution, and ccusage's cost formula in exact ``Decimal`` dollars. It owns
the rule that a model it cannot price is never costed at $0 silently: the result says
``priced=False``, the model is logged once and listed by :meth:`PricingTable.unpriced_models`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.events import UsageReported
from streams.errors import ConfigError

__all__ = ["CostResult", "ModelPrice", "PricingTable", "normalize_model"]

logger = logging.getLogger(__name__)

TIER_THRESHOLD = 200_000
SYNTHETIC_MODEL = "<synthetic>"
_PER_MILLION = Decimal(1_000_000)
# Rates a table may omit, as multiples of the input rate (Anthropic's published ratios).
_DERIVED = {"cache_write_5m": Decimal("1.25"), "cache_write_1h": Decimal(2),
            "cache_read": Decimal("0.1")}

Rate = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


class ModelPrice(BaseModel):
    """One model's rates in USD per million tokens, exactly as written in a pricing file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: Rate
    output: Rate
    cache_write_5m: Rate | None = None
    cache_write_1h: Rate | None = None
    cache_read: Rate | None = None
    input_above_200k: Rate | None = None
    output_above_200k: Rate | None = None
    cache_write_5m_above_200k: Rate | None = None
    cache_write_1h_above_200k: Rate | None = None
    cache_read_above_200k: Rate | None = None
    fast_multiplier: Annotated[Decimal, Field(gt=0, allow_inf_nan=False)] | None = None

    def rates(self, bucket: str) -> tuple[Decimal, Decimal]:
        """The rate up to 200,000 tokens and the rate beyond, for one bucket (``input``,
        ``output``, ``cache_write_5m``, ``cache_write_1h``, ``cache_read``), defaults applied:
        an omitted cache rate is its multiple of the input rate (of the input rate above 200k
        for the upper tier), and an omitted upper rate is the base rate."""
        base: Decimal | None = getattr(self, bucket)
        above: Decimal | None = getattr(self, f"{bucket}_above_200k")
        if base is None:
            factor = _DERIVED[bucket]
            base = self.input * factor
            if above is None and self.input_above_200k is not None:
                above = self.input_above_200k * factor
        return base, base if above is None else above


@dataclass(frozen=True, slots=True)
class CostResult:
    """The cost of one usage report. ``priced`` is False when the model has no price: ``usd``
    is then 0 and must be shown as unknown, never as free."""

    usd: Decimal
    priced: bool
    model: str


_REGION_PREFIX = re.compile(r"^(?:us|eu|apac|global|au|jp|ca|us-gov)\.")
_VENDOR_PREFIX = re.compile(r"^(?:anthropic|openai|google)\.")
_REVISION_SUFFIX = re.compile(r"-v\d+(?::\d+)?$")
_DATE_SUFFIX = re.compile(r"[-@]\d{8}$")
_VERSION_NEXT = re.compile(r"[-.]\d")
_DATE_NEXT = re.compile(r"[-.@]\d{8}(?!\d)")


def normalize_model(model: str) -> str:
    """The bare model id: ``us.anthropic.claude-sonnet-4-5-20250929-v1:0``,
    ``anthropic/claude-sonnet-4.5`` and ``claude-sonnet-4-5@20250929`` all give
    ``claude-sonnet-4-5``."""
    name = model.strip().lower().rsplit("/", 1)[-1]
    name = _VENDOR_PREFIX.sub("", _REGION_PREFIX.sub("", name))
    name = _DATE_SUFFIX.sub("", _REVISION_SUFFIX.sub("", name))
    if name.startswith("claude-"):  # OpenRouter writes claude-opus-4.6; OpenAI's dots are real
        name = name.replace(".", "-")
    return name


def _extends(key: str, name: str) -> bool:
    """Whether ``name`` is ``key`` plus a variant suffix (``-thinking``, ``-latest``, a date),
    but not a newer version: ``claude-opus-4`` must not price ``claude-opus-4-7``."""
    if len(name) <= len(key) or not name.startswith(key):
        return False
    rest = name[len(key):]
    if rest[0] not in "-.:@_":
        return False
    return not (key[-1].isdigit() and _VERSION_NEXT.match(rest) and not _DATE_NEXT.match(rest))


def _tiered(tokens: int, base: Decimal, above: Decimal) -> Decimal:
    """Rate-tokens of one bucket: the first 200,000 at ``base``, the rest at ``above``."""
    return min(tokens, TIER_THRESHOLD) * base + max(tokens - TIER_THRESHOLD, 0) * above


class PricingTable:
    """Model prices and the cost of usage. Build it with :meth:`load`."""

    def __init__(self, prices: Mapping[str, ModelPrice], version: str | None = None) -> None:
        self._prices = dict(prices)
        self.version = version
        self._resolved: dict[str, str | None] = {}
        self._unpriced: set[str] = set()

    @classmethod
    def load(cls, override: Path | None = None) -> PricingTable:
        """The packaged table, with the entries of ``override`` (a JSON file of the same shape)
        replacing the packaged entry of the same model whole, or adding the model.

        Raises ``ConfigError`` naming the file and the problem when the override cannot be
        read, is not JSON, or has an entry that is not a valid price."""
        packaged = resources.files("projections").joinpath("pricing.json")
        prices, version = _parse(packaged.read_text(encoding="utf-8"), "packaged pricing.json")
        if override is not None:
            try:
                text = Path(override).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"pricing override {override}: cannot read it: {exc}") from exc
            prices |= _parse(text, f"pricing override {override}")[0]
        return cls(prices, version)

    def lookup(self, model: str) -> ModelPrice | None:
        """The price of ``model``: exact key, else the normalized id (see
        :func:`normalize_model`), else the longest key the normalized id extends; None when
        nothing matches."""
        if model not in self._resolved:
            self._resolved[model] = self._resolve(model)
        key = self._resolved[model]
        return None if key is None else self._prices[key]

    def _resolve(self, model: str) -> str | None:
        if model in self._prices:
            return model
        name = normalize_model(model)
        if name in self._prices:
            return name
        return max((key for key in self._prices if _extends(key, name)), key=len, default=None)

    def cost_of(
        self,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_creation_5m_tokens: int = 0,
        cache_creation_1h_tokens: int = 0,
        cache_read_tokens: int = 0,
        speed: str | None = None,
    ) -> CostResult:
        """The cost of one API response, per ccusage: each bucket tiered at 200,000 tokens on
        its own, the sum times ``fast_multiplier`` when ``speed == "fast"``.

        ``<synthetic>`` (Claude Code's locally made messages) costs 0 and is priced. A model
        without a price gives ``priced=False``, is logged once, and joins
        :meth:`unpriced_models`. Raises ``ValueError`` on a negative token count."""
        counts = {"input": input_tokens, "output": output_tokens,
                  "cache_write_5m": cache_creation_5m_tokens,
                  "cache_write_1h": cache_creation_1h_tokens, "cache_read": cache_read_tokens}
        if any(tokens < 0 for tokens in counts.values()):
            raise ValueError(f"negative token count for model {model}: {counts}")
        if model == SYNTHETIC_MODEL:
            return CostResult(Decimal(0), True, model)
        price = self.lookup(model)
        if price is None:
            self._report_unpriced(model)
            return CostResult(Decimal(0), False, model)
        total = sum((_tiered(n, *price.rates(bucket)) for bucket, n in counts.items()), Decimal(0))
        if speed == "fast" and price.fast_multiplier is not None:
            total *= price.fast_multiplier
        return CostResult(total / _PER_MILLION, True, model)

    def cost(self, usage: UsageReported, model: str | None = None) -> CostResult:
        """The cost of one ``UsageReported`` billed under ``model`` (default: its own, which
        must then be set); see :meth:`cost_of`."""
        billed = model or usage.model
        if billed is None:
            raise ValueError("usage without a model: resolve it first (SessionModels)")
        return self.cost_of(
            billed, usage.input_tokens, usage.output_tokens, usage.cache_creation_5m_tokens,
            usage.cache_creation_1h_tokens, usage.cache_read_tokens, usage.speed,
        )

    def unpriced_models(self) -> set[str]:
        """Every model asked about so far that has no price (a copy)."""
        return set(self._unpriced)

    def _report_unpriced(self, model: str) -> None:
        if model not in self._unpriced:
            self._unpriced.add(model)
            logger.warning("no price for model=%s: its cost is reported as unpriced, not $0; "
                           "add it to a pricing override file", model)


def _parse(text: str, source: str) -> tuple[dict[str, ModelPrice], str | None]:
    """Model entries and ``_version`` of one pricing file; keys starting with ``_`` are notes."""
    try:
        raw = json.loads(text, parse_float=Decimal)  # no binary floats between file and dollars
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected an object of model -> prices, "
                          f"got {type(raw).__name__}")
    prices: dict[str, ModelPrice] = {}
    for model, entry in raw.items():
        if model.startswith("_"):
            continue
        try:
            prices[model] = ModelPrice.model_validate(entry)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or 'entry'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigError(f"{source}: model {model!r}: {problems}") from exc
    version = raw.get("_version")
    return prices, None if version is None else str(version)
