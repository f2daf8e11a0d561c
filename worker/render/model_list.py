"""What ``relaydance models`` lists: every model of every provider, as rows.

The catalogues are the providers' own (:mod:`worker.render.rules`), so a provider added there
shows up here. Entries are read by attribute with defaults, and a fact a catalogue does
not state is shown as ``-``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from config.settings import SettingsError
from worker.render.rules import provider_names, rules_for

__all__ = ["catalogues", "image_rows", "model_rows", "render_image_table", "render_table"]

USD_PER_CREDIT = 0.005  # seed 003
COLUMNS = ("model", "seconds", "ratios", "resolutions", "audio", "references", "usd/s", "notes")
IMAGE_COLUMNS = ("model", "sizes", "n", "usd/image", "notes")


def _get(entry: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = entry.get(name) if isinstance(entry, Mapping) else getattr(entry, name, None)
        if value is not None:
            return value
    return default


def catalogues() -> dict[str, dict[str, Any]]:
    """Provider name -> model id -> catalogue entry, for every provider."""
    return {name: dict(rules_for(name).models) for name in provider_names()}


def _price(provider: str, model_id: str, entry: Any) -> float | None:
    from worker.render.pricing import price_table  # the configured table (RELAYDANCE_PRICES)

    try:
        return price_table().price(model_id).usd_per_second
    except (KeyError, SettingsError):
        pass
    usd = _get(entry, "usd_per_second")
    if usd is not None:
        return float(usd)
    credits = _get(entry, "credits_per_second")
    return float(credits) * USD_PER_CREDIT if credits is not None else None


def _seconds(entry: Any) -> str:
    low, high = _get(entry, "min_seconds"), _get(entry, "max_seconds")
    if low is not None and high is not None:
        return f"{low}-{high}"
    durations = _get(entry, "durations", "seconds")
    return _join(durations) if durations is not None else "-"


def _join(values: Any) -> str:
    if isinstance(values, str):
        return values
    return ",".join(str(v) for v in values) if isinstance(values, Iterable) else str(values)


def _references(entry: Any) -> str:
    counts = [
        (_get(entry, "max_images"), "image"),
        (_get(entry, "max_videos"), "video"),
        (_get(entry, "max_audio"), "audio"),
    ]
    parts = [f"{n} {kind}{'s' if n != 1 and kind != 'audio' else ''}" for n, kind in counts if n]
    if _get(entry, "frames"):
        parts.append("frames")
    requires = _get(entry, "requires", default=())
    if requires:
        parts.append(f"needs {_join(requires)}")
    if all(n is None for n, _ in counts):
        return "-"
    return ", ".join(parts) or "none"


def model_rows(found: Mapping[str, Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Provider -> one JSON-ready row per model, sorted by model id."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for provider in sorted(found):
        rows[provider] = []
        for model_id in sorted(found[provider]):
            entry = found[provider][model_id]
            audio = _get(entry, "generate_audio")
            rows[provider].append({
                "model": model_id,
                "family": _get(entry, "family"),
                "seconds": _seconds(entry),
                "ratios": list(_get(entry, "ratios", "aspect_ratios", default=())),
                "resolutions": list(_get(entry, "resolutions", default=())),
                "generate_audio": audio,  # whether the generate_audio option is taken
                "audio": _audio(entry),
                "references": _references(entry),
                "usd_per_second": _price(provider, model_id, entry),
                "notes": _get(entry, "notes", default=""),
            })  # fmt: skip
    return rows


def _audio(entry: Any) -> str | None:
    """Whether a clip has sound: ``always``, ``optional`` (on request) or ``no``."""
    if _get(entry, "audio_always"):
        return "always"
    option = _get(entry, "generate_audio")
    return None if option is None else ("optional" if option else "no")


def _cells(row: Mapping[str, Any]) -> tuple[str, ...]:
    audio = row["audio"]
    price = row["usd_per_second"]
    return (
        row["model"],
        row["seconds"],
        _join(row["ratios"]) or "-",
        _join(row["resolutions"]) or "-",
        audio or "-",
        row["references"],
        "-" if price is None else f"{price:.3f}",
        str(row["notes"] or ""),
    )


def render_table(rows: Mapping[str, list[dict[str, Any]]]) -> str:
    """Plain-text tables, one per provider, every cell whole (nothing is cut short)."""
    blocks = []
    for provider, models in rows.items():
        cells = [COLUMNS, *(_cells(row) for row in models)]
        widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
        lines = [f"{provider} ({len(models)} models)"]
        lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                  for line in cells]  # fmt: skip
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def image_rows() -> list[dict[str, Any]]:
    """One JSON-ready row per image model: sizes, ``n`` range and the price counted."""
    from worker.render.image_catalogue import IMAGE_MODELS
    from worker.render.pricing import price_table

    table = price_table()
    rows = []
    for model_id in sorted(IMAGE_MODELS):
        model = IMAGE_MODELS[model_id]
        usd, priced = table.image_price(model_id)
        rows.append({
            "model": model_id, "provider": model.provider, "family": model.family,
            "sizes": list(model.sizes), "default_size": model.default_size,
            "min_n": model.min_n, "max_n": model.max_n,
            "usd_per_image": usd, "price_published": priced, "notes": model.notes,
        })  # fmt: skip
    return rows


def render_image_table(rows: list[dict[str, Any]]) -> str:
    """The image models as a plain-text table, with what an unpriced model counts."""
    cells = [IMAGE_COLUMNS]
    for row in rows:
        price = f"{row['usd_per_image']:.3f}" + ("" if row["price_published"] else "*")
        cells.append((row["model"], ",".join(row["sizes"]), f"{row['min_n']}-{row['max_n']}",
                      price, str(row["notes"] or "")))  # fmt: skip
    widths = [max(len(line[i]) for line in cells) for i in range(len(IMAGE_COLUMNS))]
    lines = [f"relaydance images ({len(rows)} models, POST /v1/images/generations)"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
              for line in cells]  # fmt: skip
    if any(not row["price_published"] for row in rows):
        lines.append("* no image price is published: counted at RELAYDANCE_IMAGE_DEFAULT_PRICE "
                     "per image unless RELAYDANCE_PRICES names the model")  # fmt: skip
    return "\n".join(lines)
