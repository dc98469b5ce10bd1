"""Pricing: hand-computed costs per ccusage's formula, model-id resolution, unpriced models,
override files and their errors."""

from __future__ import annotations

import json
import logging
import re
from decimal import Decimal
from pathlib import Path

import pytest

from projections.pricing import PricingTable, normalize_model
from schemas.events import UsageReported
from streams.errors import ConfigError

pytestmark = pytest.mark.unit


@pytest.fixture
def table() -> PricingTable:
    return PricingTable.load()


def write_override(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "my-prices.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.mark.parametrize(
    ("model", "rates"),
    [
        ("claude-opus-4-6", ("5", "25", "6.25", "10", "0.50")),
        ("claude-opus-4-5", ("5", "25", "6.25", "10", "0.50")),
        ("claude-opus-4-1", ("15", "75", "18.75", "30", "1.50")),
        ("claude-opus-4", ("15", "75", "18.75", "30", "1.50")),
        ("claude-sonnet-4-5", ("3", "15", "3.75", "6", "0.30")),
        ("claude-sonnet-4", ("3", "15", "3.75", "6", "0.30")),
        ("claude-sonnet-3-7", ("3", "15", "3.75", "6", "0.30")),
        ("claude-haiku-4-5", ("1", "5", "1.25", "2", "0.10")),
        ("claude-3-5-haiku", ("0.80", "4", "1", "1.60", "0.08")),
        ("gpt-5-codex", ("1.25", "10", "1.25", "1.25", "0.125")),
        ("gemini-2.5-flash", ("0.30", "2.50", "0.30", "0.30", "0.075")),
    ],
)
def test_packaged_base_rates(table: PricingTable, model: str, rates: tuple[str, ...]) -> None:
    price = table.lookup(model)
    assert price is not None
    buckets = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
    assert tuple(price.rates(b)[0] for b in buckets) == tuple(Decimal(r) for r in rates)


def test_packaged_table_has_a_dated_version(table: PricingTable) -> None:
    assert table.version is not None
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", table.version)


def test_sonnet_tiers_each_bucket_above_200k(table: PricingTable) -> None:
    result = table.cost_of("claude-sonnet-4-5", input_tokens=250_000, output_tokens=1_000,
                           cache_read_tokens=300_000)
    # input 200k x $3 + 50k x $6 = $0.90; output 1k x $15 = $0.015;
    # cache read 200k x $0.30 + 100k x $0.60 = $0.12
    assert result.usd == Decimal("1.035")
    assert result.priced is True


def test_tier_threshold_is_per_bucket_not_per_response(table: PricingTable) -> None:
    result = table.cost_of("claude-sonnet-4-5", input_tokens=150_000, cache_read_tokens=150_000)
    assert result.usd == Decimal("0.495")  # 150k x $3 + 150k x $0.30, no bucket crosses 200k


def test_opus_4_6_with_5m_and_1h_cache_writes(table: PricingTable) -> None:
    result = table.cost_of("claude-opus-4-6", input_tokens=1_000, output_tokens=2_000,
                           cache_creation_5m_tokens=10_000, cache_creation_1h_tokens=20_000,
                           cache_read_tokens=100_000)
    # $0.005 + $0.05 + 10k x $6.25 = $0.0625 + 20k x $10 = $0.20 + 100k x $0.50 = $0.05
    assert result.usd == Decimal("0.3675")


def test_cost_of_a_usage_event_delegates(table: PricingTable) -> None:
    usage = UsageReported(message_key="msg_1:req_1", model="claude-opus-4-6", input_tokens=1_000,
                          output_tokens=2_000, cache_creation_5m_tokens=10_000,
                          cache_creation_1h_tokens=20_000, cache_read_tokens=100_000)
    assert table.cost(usage).usd == Decimal("0.3675")


@pytest.mark.parametrize(
    ("model", "usd"),
    [
        ("claude-sonnet-4-5-20250929", "1.50"),  # 100k output x $15
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "1.50"),
        ("anthropic/claude-opus-4-6", "2.50"),  # 100k output x $25
        ("anthropic/claude-opus-4.6", "2.50"),
        ("claude-opus-4-20250514", "7.50"),  # opus 4, not 4.1: 100k x $75
        ("claude-3-5-haiku-latest", "0.40"),  # 100k x $4
        ("openai/gpt-5.1-codex-max", "1.00"),  # gpt-5.1-codex by prefix: 100k x $10
    ],
)
def test_model_ids_resolve(table: PricingTable, model: str, usd: str) -> None:
    result = table.cost_of(model, output_tokens=100_000)
    assert (result.priced, result.usd, result.model) == (True, Decimal(usd), model)


@pytest.mark.parametrize("model", ["claude-opus-4-8", "gpt-5.2-codex", "claude-sonnet-4-7"])
def test_a_prefix_never_prices_a_newer_version(table: PricingTable, model: str) -> None:
    assert table.lookup(model) is None


def test_normalize_model_strips_prefixes_and_suffixes() -> None:
    assert normalize_model("bedrock/converse/eu.anthropic.claude-haiku-4-5-20251001-v1:0") == (
        "claude-haiku-4-5")
    assert normalize_model("claude-opus-4-1@20250805") == "claude-opus-4-1"


def test_unknown_model_is_unpriced_and_warned_once(
    table: PricingTable, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="projections.pricing"):
        first = table.cost_of("mystery-model-9", input_tokens=1_000)
        table.cost_of("mystery-model-9", output_tokens=5)
    assert (first.priced, first.usd) == (False, Decimal(0))
    assert table.unpriced_models() == {"mystery-model-9"}
    warnings = [r for r in caplog.records if "mystery-model-9" in r.getMessage()]
    assert len(warnings) == 1


def test_synthetic_model_costs_nothing_and_is_not_unpriced(table: PricingTable) -> None:
    result = table.cost_of("<synthetic>", input_tokens=10, output_tokens=10)
    assert (result.priced, result.usd) == (True, Decimal(0))
    assert table.unpriced_models() == set()


def test_fast_speed_applies_the_multiplier(table: PricingTable) -> None:
    standard = table.cost_of("claude-opus-4-6", 1_000, 1_000, speed="standard")
    fast = table.cost_of("claude-opus-4-6", 1_000, 1_000, speed="fast")
    assert standard.usd == Decimal("0.03")  # 1k x $5 + 1k x $25
    assert fast.usd == Decimal("0.18")  # x6
    # a model without a multiplier costs the same at either speed
    assert table.cost_of("claude-sonnet-4-5", 1_000, speed="fast").usd == Decimal("0.003")


def test_negative_tokens_are_refused(table: PricingTable) -> None:
    with pytest.raises(ValueError, match="negative token count"):
        table.cost_of("claude-opus-4-6", input_tokens=-1)


def test_override_adds_a_model_and_replaces_a_price_whole(tmp_path: Path) -> None:
    path = write_override(tmp_path, {
        "_comment": "mine",
        "my-model": {"input": 2, "output": 8},
        "claude-opus-4-6": {"input": "1", "output": "2"},
    })
    table = PricingTable.load(override=path)
    mine = table.cost_of("my-model", 1_000, 1_000, 1_000, 1_000, 1_000)
    # omitted cache rates: 5m = 1.25x input, 1h = 2x input, read = 0.1x input
    assert mine.usd == Decimal("0.0167")  # $0.002 + $0.008 + $0.0025 + $0.004 + $0.0002
    # the replaced entry has no fast multiplier and no cache rates of its own
    assert table.cost_of("claude-opus-4-6", 1_000_000, speed="fast").usd == Decimal("1")
    assert table.cost_of("claude-sonnet-4-5", 1_000).usd == Decimal("0.003")  # untouched


def test_omitted_upper_cache_rate_follows_the_upper_input_rate(tmp_path: Path) -> None:
    path = write_override(tmp_path, {"m": {"input": 1, "output": 1, "input_above_200k": 2}})
    result = PricingTable.load(override=path).cost_of("m", cache_read_tokens=300_000)
    assert result.usd == Decimal("0.04")  # 200k x $0.10 + 100k x $0.20


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected an object"),
        ({"m": {"input": -1, "output": 1}}, "model 'm': input: Input should be greater than"),
        ({"m": {"imput": 1, "output": 1}}, "model 'm': .*imput: Extra inputs are not permitted"),
        ({"m": {"output": 1}}, "model 'm': input: Field required"),
        ({"m": "cheap"}, "model 'm': entry:"),
    ],
)
def test_malformed_override_names_the_file_and_problem(
    tmp_path: Path, content: object, problem: str
) -> None:
    path = write_override(tmp_path, content)
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ".*" + problem):
        PricingTable.load(override=path)


def test_missing_override_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ": cannot read it"):
        PricingTable.load(override=path)
