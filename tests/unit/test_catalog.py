"""The model catalog: bundled data, aliases, ad-hoc slugs, retirement, refresh and overrides."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from baseten_magic.core.catalog import (
    PRICES_ENV,
    Catalog,
    ModelInfo,
    bundled_catalog,
    default_catalog,
)
from baseten_magic.core.errors import ConfigurationError, ParameterError

D = Decimal


@pytest.fixture(autouse=True)
def _no_user_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRICES_ENV, raising=False)


# slug → (input, output, cached, reasoning)
TABLE = {
    "deepseek-ai/DeepSeek-V3-0324": ("0.77", "0.77", None, "none"),
    "deepseek-ai/DeepSeek-V3.1": ("0.50", "1.50", None, "default_on"),
    "zai-org/GLM-4.6": ("0.60", "2.20", None, "opt_in"),
    "zai-org/GLM-4.7": ("0.60", "2.20", "0.12", "opt_in"),
    "moonshotai/Kimi-K2-Instruct-0905": ("0.60", "2.50", None, "none"),
    "moonshotai/Kimi-K2-Thinking": ("0.60", "2.50", None, "always"),
    "moonshotai/Kimi-K2.5": ("0.60", "3.00", "0.12", "opt_in"),
    "openai/gpt-oss-120b": ("0.10", "0.50", None, "always"),
}


def test_bundled_table_matches_the_list_prices() -> None:
    catalog = default_catalog()
    assert [m.slug for m in catalog.models] == list(TABLE)
    for slug, (inp, out, cached, reasoning) in TABLE.items():
        info = catalog.get(slug)
        assert info is not None
        assert info.input_price == D(inp)
        assert info.output_price == D(out)
        assert info.cached_input_price == (None if cached is None else D(cached))
        assert info.reasoning == reasoning
        assert isinstance(info.input_price, Decimal)
    assert catalog.prices_as_of == "2026-11-25"
    assert "3.00" in catalog.source
    assert catalog.get("openai/gpt-oss-120b").supports_reasoning_effort  # type: ignore[union-attr]
    assert sum(m.supports_reasoning_effort for m in catalog.models) == 1


def test_bundled_catalog_is_cached_and_immutable() -> None:
    assert bundled_catalog() is bundled_catalog()
    info = bundled_catalog().models[0]
    with pytest.raises(AttributeError):
        info.slug = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("alias", "slug"),
    [
        ("gpt-oss", "openai/gpt-oss-120b"),
        ("deepseek", "deepseek-ai/DeepSeek-V3.1"),
        ("deepseek-v3", "deepseek-ai/DeepSeek-V3-0324"),
        ("glm", "zai-org/GLM-4.7"),
        ("glm-4.6", "zai-org/GLM-4.6"),
        ("glm-4.7", "zai-org/GLM-4.7"),
        ("kimi", "moonshotai/Kimi-K2.5"),
        ("kimi-k2", "moonshotai/Kimi-K2-Instruct-0905"),
        ("kimi-thinking", "moonshotai/Kimi-K2-Thinking"),
        ("kimi-k2.5", "moonshotai/Kimi-K2.5"),
        ("GLM", "zai-org/GLM-4.7"),
        (" kimi ", "moonshotai/Kimi-K2.5"),
        ("OPENAI/GPT-OSS-120B", "openai/gpt-oss-120b"),
        ("zai-org/glm-4.7", "zai-org/GLM-4.7"),
    ],
)
def test_resolve_alias_and_case_insensitive_slug(alias: str, slug: str) -> None:
    info = default_catalog().resolve(alias)
    assert info.slug == slug
    assert info.known


def test_unknown_slug_with_slash_is_ad_hoc() -> None:
    info = default_catalog().resolve("acme/Brand-New-9B")
    assert info.slug == "acme/Brand-New-9B"
    assert not info.known
    assert info.input_price is None
    assert info.output_price is None
    assert not info.has_prices


def test_unknown_alias_suggests_and_lists_aliases() -> None:
    with pytest.raises(ParameterError) as info:
        default_catalog().resolve("glmm")
    message = str(info.value)
    assert "did you mean 'glm'?" in message
    for alias in ("gpt-oss", "kimi-thinking", "deepseek-v3.1"):
        assert alias in message
    assert "\n" not in message


def test_unknown_alias_lists_only_offered_models() -> None:
    with pytest.raises(ParameterError) as info:
        default_catalog().resolve("nope", today=date(2026, 12, 1))
    aliases = str(info.value).split("known aliases: ")[1].split(" (")[0].split(", ")
    assert "deepseek-v3" not in aliases
    assert "glm-4.6" not in aliases
    assert {"deepseek", "glm", "gpt-oss"} <= set(aliases)
    with pytest.raises(ParameterError) as before:
        default_catalog().resolve("nope", today=date(2026, 4, 30))
    assert "deepseek-v3," in str(before.value)  # still offered then


def test_empty_name_is_an_error() -> None:
    with pytest.raises(ParameterError, match="empty"):
        default_catalog().resolve("  ")


def test_get_returns_none_for_unknown() -> None:
    assert default_catalog().get("acme/nothing") is None
    assert default_catalog().get("glm") is None  # get takes slugs, not aliases


def test_retired_models() -> None:
    catalog = default_catalog()
    assert catalog.is_retired("deepseek-ai/DeepSeek-V3-0324", date(2026, 5, 1))
    assert not catalog.is_retired("deepseek-ai/DeepSeek-V3-0324", date(2026, 4, 30))
    assert catalog.is_retired("glm-4.6", date(2026, 11, 25))
    assert not catalog.is_retired("glm", date(2030, 1, 1))
    assert not catalog.is_retired("acme/unknown", date(2030, 1, 1))
    assert catalog.get("zai-org/GLM-4.6").deprecated_on == date(2026, 5, 1)  # type: ignore[union-attr]


RETIRED = ("deepseek-ai/DeepSeek-V3-0324", "zai-org/GLM-4.6")


def test_offered_and_retired_split_the_catalog_by_today() -> None:
    catalog = default_catalog()
    today = date(2026, 12, 1)
    offered = [m.slug for m in catalog.offered(today)]
    retired = [m.slug for m in catalog.retired(today)]
    assert retired == list(RETIRED)
    assert offered == [slug for slug in TABLE if slug not in RETIRED]
    assert "deepseek-v3" not in catalog.offered_aliases(today)
    assert catalog.offered_aliases(today)["deepseek"] == "deepseek-ai/DeepSeek-V3.1"
    # The day before the retirement date both were still offered.
    assert len(catalog.offered(date(2026, 4, 30))) == len(TABLE)
    assert catalog.retired(date(2026, 4, 30)) == ()
    assert catalog.get(RETIRED[0]).replacement == "deepseek-ai/DeepSeek-V3.1"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "deepseek-v3",
            "deepseek-v3 (deepseek-ai/DeepSeek-V3-0324) was retired on 2026-05-01; "
            "use deepseek (deepseek-ai/DeepSeek-V3.1)",
        ),
        (
            "zai-org/glm-4.6",
            "zai-org/GLM-4.6 was retired on 2026-05-01; use glm (zai-org/GLM-4.7)",
        ),
    ],
)
def test_resolve_offered_refuses_a_retired_model_naming_the_replacement(
    name: str, message: str
) -> None:
    catalog = default_catalog()
    with pytest.raises(ParameterError) as info:
        catalog.resolve_offered(name, today=date(2026, 12, 1))
    assert str(info.value) == message
    assert catalog.resolve_offered(name, today=date(2026, 4, 30)).slug in RETIRED
    assert catalog.resolve(name).slug in RETIRED  # plain lookups still find it


def test_retired_model_without_a_live_replacement_points_at_the_list() -> None:
    old = ModelInfo("a/old", aliases=("old",), deprecated_on=date(2026, 1, 1))
    gone = ModelInfo("a/gone", deprecated_on=date(2026, 1, 1), replacement="a/old")
    catalog = Catalog([old, gone])
    for name in ("old", "a/gone"):
        with pytest.raises(ParameterError, match=r"retired on 2026-01-01; pick a model that"):
            catalog.resolve_offered(name, today=date(2026, 6, 1))


def test_thinking_toggle_follows_reasoning_mode() -> None:
    catalog = default_catalog()
    assert catalog.resolve("glm").can_toggle_thinking
    assert catalog.resolve("deepseek").can_toggle_thinking
    assert not catalog.resolve("kimi-thinking").can_toggle_thinking
    assert not catalog.resolve("kimi-k2").can_toggle_thinking


MODELS_PAYLOAD = {
    "object": "list",
    "data": [
        {
            "id": "zai-org/GLM-4.7",
            "context_length": 202752,
            "max_completion_tokens": 131072,
            "supported_features": ["tools", "reasoning"],
            "pricing": {
                "prompt": "0.0000007",
                "completion": "0.0000025",
                "input_cache_read": "0.00000015",
            },
        },
        {"id": "openai/gpt-oss-120b", "context_length": 131072},
        {
            "id": "acme/Fresh-1",
            "context_length": 32768,
            "pricing": {"prompt": "0.000001", "completion": "0.000002"},
        },
        "junk",
        {"no_id": True},
    ],
}


def test_refresh_from_models_payload() -> None:
    before = default_catalog()
    after = before.refreshed(MODELS_PAYLOAD)
    glm = after.get("zai-org/GLM-4.7")
    assert glm is not None
    assert glm.input_price == D("0.70")
    assert glm.output_price == D("2.5")
    assert glm.cached_input_price == D("0.15")
    assert str(glm.input_price) == "0.7"
    assert glm.context_length == 202752
    assert glm.max_completion_tokens == 131072
    assert glm.supported_features == ("tools", "reasoning")
    assert glm.aliases == ("glm", "glm-4.7")  # bundled knowledge kept
    assert glm.reasoning == "opt_in"
    # No pricing in the payload: bundled prices kept.
    oss = after.resolve("gpt-oss")
    assert oss.input_price == D("0.10")
    assert oss.output_price == D("0.50")
    # Unknown item added, at the end.
    fresh = after.models[-1]
    assert fresh.slug == "acme/Fresh-1"
    assert fresh.input_price == D(1)
    assert str(fresh.output_price) == "2"
    assert fresh.context_length == 32768
    assert len(after.models) == len(before.models) + 1
    # The original is unchanged.
    assert before.get("zai-org/GLM-4.7").input_price == D("0.60")  # type: ignore[union-attr]
    assert after.prices_as_of == before.prices_as_of


def test_refresh_accepts_a_bare_list_and_rejects_garbage() -> None:
    after = default_catalog().refreshed([{"id": "acme/x", "pricing": {"prompt": "0.0000001"}}])
    assert after.get("acme/x").input_price == D("0.1")  # type: ignore[union-attr]
    with pytest.raises(ParameterError, match="data"):
        default_catalog().refreshed({"data": "nope"})
    with pytest.raises(ParameterError):
        default_catalog().refreshed({"data": [{"id": "acme/x", "pricing": {"prompt": "abc"}}]})


def test_with_overrides() -> None:
    catalog = default_catalog().with_overrides(
        {"glm": {"input": "0.5", "output": 2}, "acme/new": {"input": 0.1, "output": "0.2"}}
    )
    glm = catalog.resolve("glm")
    assert glm.input_price == D("0.5")
    assert glm.output_price == D(2)
    assert glm.cached_input_price == D("0.12")
    new = catalog.get("acme/new")
    assert new is not None
    assert new.input_price == D("0.1")  # a float goes through str: exactly 0.1
    assert catalog.models[-1] is new


@pytest.mark.parametrize(
    "overrides",
    [
        {"glm": {"inputs": "1"}},
        {"glm": {"input": "abc"}},
        {"glm": {"input": -1}},
        {"nosuch": {"input": 1}},
    ],
)
def test_bad_overrides(overrides: dict[str, dict[str, str]]) -> None:
    with pytest.raises(ParameterError):
        default_catalog().with_overrides(overrides)


def test_env_override_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"kimi": {"output": "2.75"}}))
    monkeypatch.setenv(PRICES_ENV, str(path))
    assert default_catalog().resolve("kimi").output_price == D("2.75")
    monkeypatch.delenv(PRICES_ENV)
    assert default_catalog().resolve("kimi").output_price == D("3.00")


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"kimi": {"output": "x"}}', None])
def test_bad_env_override_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "prices.json"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv(PRICES_ENV, str(path))
    with pytest.raises(ConfigurationError) as info:
        default_catalog()
    assert PRICES_ENV in str(info.value)
    assert "\n" not in str(info.value)


def test_catalog_from_scratch() -> None:
    catalog = Catalog([ModelInfo(slug="a/b", aliases=("ab",))])
    assert catalog.resolve("ab").slug == "a/b"
    assert len(catalog) == 1
    assert catalog.aliases == {"ab": "a/b"}


def test_a_model_first_seen_in_a_refresh_keeps_unknown_abilities() -> None:
    from baseten_magic.core.params import build_request

    after = default_catalog().refreshed([{"id": "acme/brand-new", "context_length": 8192}])
    fresh = after.resolve("acme/brand-new")
    assert not fresh.known and fresh.can_toggle_thinking
    assert fresh.context_length == 8192
    # As before the refresh, the server (not the bundled table) decides about thinking.
    body = build_request(
        "hi", model="acme/brand-new", stream=True, params={}, catalog=after, thinking=True
    )
    assert body["chat_template_args"] == {"enable_thinking": True}
