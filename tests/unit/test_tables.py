"""The `%baseten models` table: offered models first, retired ones apart and marked."""

from __future__ import annotations

import re
from datetime import date

from baseten_magic.core.catalog import bundled_catalog
from baseten_magic.render.markdown import assert_safe_html
from baseten_magic.render.tables import models_table

TODAY = date(2026, 12, 1)


def _main_and_retired(text: str) -> tuple[str, str]:
    main, _, retired = text.partition("Retired")
    return main, retired


def test_models_table_lists_retired_models_apart_with_their_replacement() -> None:
    table = models_table(bundled_catalog(), today=TODAY)
    main, retired = _main_and_retired(table["text/plain"])
    assert "openai/gpt-oss-120b" in main
    assert "DeepSeek-V3-0324" not in main
    assert "GLM-4.6" not in main
    assert "deepseek-v3 " not in main  # the alias column no longer offers it
    lines = {line.split()[0]: line for line in retired.splitlines()[1:] if "/" in line}
    assert "2026-05-01" in lines["deepseek-ai/DeepSeek-V3-0324"]
    assert lines["deepseek-ai/DeepSeek-V3-0324"].endswith("deepseek (deepseek-ai/DeepSeek-V3.1)")
    assert lines["zai-org/GLM-4.6"].endswith("glm (zai-org/GLM-4.7)")
    markup = table["text/html"]
    assert_safe_html(markup)
    assert markup.count("<table") == 2
    first, second = re.findall(r"<table.*?</table>", markup)
    assert "GLM-4.6" not in first
    assert "GLM-4.6" in second
    assert "color: #777" in second.split(">", 1)[0]  # the retired table is muted


def test_models_table_before_the_retirement_date_has_no_retired_part() -> None:
    table = models_table(bundled_catalog(), today=date(2026, 4, 1))
    assert "Retired" not in table["text/plain"]
    assert "deepseek-ai/DeepSeek-V3-0324 (retires 2026-05-01)" in table["text/plain"]
    assert table["text/html"].count("<table") == 1
