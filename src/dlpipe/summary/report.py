"""The summary's tables as HTML for ``snakemake --report``: the table of models, the cards.

The report shows HTML in the page and offers CSV/JSON as downloads, so the summary writes
``models.html`` (the rows of ``models.csv``, scores to 3 digits, best lines on top) and
``cards.html`` (every model card as key/value rows, one column per model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dlpipe.stores.card import read_card
from dlpipe.stores.html import flatten, html_table, write_html_tables

__all__ = ["REPORT_TABLES", "write_report_tables"]

REPORT_TABLES = ("models.html", "cards.html")

# card keys too long or too internal for a table read at a glance
_SKIP = ("history", "normalisation.histogram")


def write_report_tables(
    rows: Sequence[Mapping[str, Any]],
    cards: Mapping[str, Path],
    out: Path,
    best: Sequence[str] = (),
    *,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``OUT/models.html`` and ``OUT/cards.html``; return their paths.

    Parameters
    ----------
    rows : the rows of ``models.csv`` (one mapping per model or baseline)
    cards : model name -> its ``card.json`` (missing cards are left out)
    out : the summary folder
    best : lines shown above the table (``best overall: ...``)
    overwrite : replace existing pages
    """
    models = write_html_tables(
        out / "models.html",
        [(" · ".join(best), html_table(rows))],
        "models and baselines",
        overwrite=overwrite,
    )
    flat: dict[str, dict[str, Any]] = {}
    for name, path in cards.items():
        if Path(path).is_file():
            card = flatten(read_card(Path(path).parent))
            flat[name] = {k: v for k, v in card.items() if not k.startswith(_SKIP)}
    keys: list[str] = []
    for card in flat.values():
        keys += [k for k in card if k not in keys]
    table = [{"key": k, **{name: card.get(k, "") for name, card in flat.items()}} for k in keys]
    cards_html = write_html_tables(
        out / "cards.html",
        [("model cards", html_table(table, ["key", *flat]))],
        "model cards",
        overwrite=overwrite,
    )
    return [models, cards_html]
