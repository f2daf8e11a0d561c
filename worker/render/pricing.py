"""What a clip costs: a price table per model, per second of video, with resolution factors.

Shipped defaults: seed 003's credit prices where they apply (Seedance 2.0: 40 credits/s
standard, 28 credits/s fast, 1 credit = $0.005; on Kinovi also +28 credits/s for the 4K
upscale and half the base rate at 480p), else the catalogue's ``usd_per_second``. These
are estimates: a provider that reports what a task cost (Kinovi's ``creditsUsed``) has
the last word on the job (its ``actual_cost``). Everything can be overridden with one JSON
setting, ``RELAYDANCE_PRICES``::

    {"happyhorse-1.0-t2v": 0.08,
     "doubao-seedance-2-0-1080p": {"credits_per_second": 40, "resolutions": {"1080p": 1.0}},
     "grok-imagine-video": {"usd_per_second": 0.12, "resolutions": {"720p": 1.25}}}

A number is USD per second; an object gives ``usd_per_second`` or ``credits_per_second``
(at ``usd_per_credit``, default $0.005), optional ``resolutions`` factors that multiply
the price when a request asks for (or defaults to) that resolution, and optionally
``upscale_usd_per_second`` or ``upscale_credits_per_second``, added when a request asks
for the 4K upscale. A model the table
does not name keeps its default price; a name the catalogue does not know is refused, so
a typo never silently prices a model at the default.

Image models (:mod:`worker.render.image_catalogue`) are priced per image: a number, or
``{"usd_per_image": x}``. RelayDance publishes no image price, so an image model the table
does not name counts ``RELAYDANCE_IMAGE_DEFAULT_PRICE`` per image against budgets, and
says so (:meth:`PriceTable.image_price` returns whether the price is only that default).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from config.settings import SettingsError
from worker.render.image_catalogue import IMAGE_MODELS
from worker.render.image_request import ImageRequest
from worker.render.request import RenderRequest
from worker.render.rules import all_models, find_model, provider_names, rules_for

__all__ = [
    "IMAGE_DEFAULT_PRICE",
    "PRICES_ENV",
    "USD_PER_CREDIT",
    "Price",
    "PriceTable",
    "configured_prices",
    "estimate_cost",
    "load_prices",
    "price_table",
]

PRICES_ENV = "RELAYDANCE_PRICES"
IMAGE_DEFAULT_PRICE = 0.10  # USD per image of an unpriced image model; the setting's default
USD_PER_CREDIT = 0.005  # seed 003
_FIELDS = frozenset({"usd_per_second", "credits_per_second", "usd_per_credit", "resolutions",
                     "upscale_usd_per_second", "upscale_credits_per_second"})  # fmt: skip
SEED_CREDITS_PER_SECOND: dict[str, int] = {  # seed 003: standard 40, fast 28
    "doubao-seedance-2-0-1080p": 40,
    "doubao-seedance-2-0-720p": 40,
    "doubao-seedance-2-0-fast-260128": 28,
}


@dataclass(frozen=True)
class Price:
    """The price of one model: USD per second of video, times a factor per resolution."""

    usd_per_second: float
    resolution_factors: Mapping[str, float] = field(default_factory=dict)
    upscale_usd_per_second: float = 0.0

    def for_resolution(self, resolution: str) -> float:
        """USD per second at a resolution (factor 1 when the table names none)."""
        return self.usd_per_second * self.resolution_factors.get(resolution, 1.0)


@dataclass(frozen=True)
class PriceTable:
    """Prices of every catalogue model."""

    prices: Mapping[str, Price]
    # USD per image of the image models the table names (an override or a published price).
    image_prices: Mapping[str, float] = field(default_factory=dict)
    image_default: float = IMAGE_DEFAULT_PRICE

    def price(self, model: str) -> Price:
        """The price of a model; raises :class:`KeyError` for a model not in the catalogue."""
        return self.prices[model]

    def estimate(self, request: RenderRequest) -> float:
        """Estimated USD of one request (failed generations are not billed)."""
        model = find_model(request.model)
        if model is None:
            raise KeyError(request.model)
        resolution = request.resolution or model.default_resolution
        price = self.price(model.id)
        per_second = price.for_resolution(resolution)
        if request.upscale:
            per_second += price.upscale_usd_per_second
        return round(per_second * request.seconds, 4)

    def image_price(self, model: str) -> tuple[float, bool]:
        """(USD per image, whether it is a real price); an image model with no price counts
        the default, ``False``. Raises :class:`KeyError` for a model that is no image model."""
        if model not in IMAGE_MODELS:
            raise KeyError(model)
        if model in self.image_prices:
            return self.image_prices[model], True
        return self.image_default, False

    def estimate_image(self, request: ImageRequest) -> float:
        """Estimated USD of one image request: its ``n`` images at the model's price."""
        return round(self.image_price(request.model)[0] * request.n, 4)


def _defaults() -> dict[str, Price]:
    prices = {
        model_id: Price(
            SEED_CREDITS_PER_SECOND[model_id] * USD_PER_CREDIT
            if model_id in SEED_CREDITS_PER_SECOND
            else model.usd_per_second
        )
        for model_id, model in all_models().items()
    }
    for provider in provider_names():
        for model_id, entry in rules_for(provider).default_prices().items():
            prices[model_id] = _entry(model_id, entry)
    return prices


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise SettingsError(f"{PRICES_ENV}: {where} must be a number >= 0, got {value!r}")
    return float(value)


def _entry(model_id: str, value: Any) -> Price:
    if not isinstance(value, Mapping):
        return Price(_number(value, model_id))
    unknown = set(value) - _FIELDS
    if unknown:
        raise SettingsError(
            f"{PRICES_ENV}: {model_id}: unknown field(s) {', '.join(sorted(unknown))}; use "
            "usd_per_second or credits_per_second, usd_per_credit, resolutions, "
            "upscale_usd_per_second or upscale_credits_per_second"
        )
    if ("usd_per_second" in value) == ("credits_per_second" in value):
        raise SettingsError(
            f"{PRICES_ENV}: {model_id}: give exactly one of usd_per_second or credits_per_second"
        )
    credit = _number(value.get("usd_per_credit", USD_PER_CREDIT), f"{model_id}.usd_per_credit")
    if "usd_per_second" in value:
        usd = _number(value["usd_per_second"], f"{model_id}.usd_per_second")
    else:
        usd = _number(value["credits_per_second"], f"{model_id}.credits_per_second") * credit
    if "upscale_usd_per_second" in value and "upscale_credits_per_second" in value:
        raise SettingsError(
            f"{PRICES_ENV}: {model_id}: give at most one of upscale_usd_per_second or "
            "upscale_credits_per_second"
        )
    upscale = 0.0
    if "upscale_usd_per_second" in value:
        upscale = _number(value["upscale_usd_per_second"], f"{model_id}.upscale_usd_per_second")
    elif "upscale_credits_per_second" in value:
        where = f"{model_id}.upscale_credits_per_second"
        upscale = _number(value["upscale_credits_per_second"], where) * credit
    factors = value.get("resolutions", {})
    if not isinstance(factors, Mapping):
        raise SettingsError(
            f'{PRICES_ENV}: {model_id}.resolutions must be an object, e.g. {{"1080p": 1.5}}'
        )
    offered = find_model(model_id).resolutions  # type: ignore[union-attr]  # checked by caller
    for resolution in factors:
        if resolution not in offered:
            raise SettingsError(
                f"{PRICES_ENV}: {model_id}.resolutions: {resolution!r} is not offered by "
                f"{model_id}; use one of {', '.join(offered)}"
            )
    return Price(
        usd,
        {res: _number(f, f"{model_id}.resolutions.{res}") for res, f in factors.items()},
        upscale,
    )


def _image_entry(model_id: str, value: Any) -> float:
    if isinstance(value, Mapping):
        if set(value) != {"usd_per_image"}:
            raise SettingsError(
                f"{PRICES_ENV}: {model_id} is an image model, priced per image; give a number "
                'or {"usd_per_image": n}'
            )
        value = value["usd_per_image"]
    return _number(value, f"{model_id}.usd_per_image")


def load_prices(
    raw: str | Mapping[str, Any] | None, *, image_default: float = IMAGE_DEFAULT_PRICE
) -> PriceTable:
    """The default table with the overrides of ``raw`` (JSON text or a mapping) applied;
    ``image_default``: USD per image of an image model with no price."""
    prices = _defaults()
    images = {m.id: m.usd_per_image for m in IMAGE_MODELS.values() if m.usd_per_image is not None}
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return PriceTable(prices, images, image_default)
    if isinstance(raw, str):
        try:
            overrides = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{PRICES_ENV}: not valid JSON ({exc})") from None
    else:
        overrides = raw
    if not isinstance(overrides, Mapping):
        raise SettingsError(f'{PRICES_ENV}: must be a JSON object, e.g. {{"model-id": 0.1}}')
    known = all_models()
    for model_id, value in overrides.items():
        if model_id in IMAGE_MODELS:
            images[model_id] = _image_entry(model_id, value)
            continue
        if model_id not in known:
            raise SettingsError(
                f"{PRICES_ENV}: unknown model {model_id!r}; known models: "
                f"{', '.join(sorted([*known, *IMAGE_MODELS]))}"
            )
        prices[model_id] = _entry(model_id, value)
    return PriceTable(prices, images, image_default)


def configured_prices() -> str | None:
    """The ``RELAYDANCE_PRICES`` setting as canonical JSON, or None when unset."""
    from config.settings import get_settings

    prices = get_settings().prices
    return json.dumps(prices, sort_keys=True) if prices else None


@lru_cache(maxsize=4)
def _table_for(raw: str | None, image_default: float) -> PriceTable:
    return load_prices(raw, image_default=image_default)


def price_table() -> PriceTable:
    """The configured price table; raises :class:`SettingsError` on a bad setting."""
    from config.settings import get_settings

    return _table_for(configured_prices(), get_settings().image_default_price)


def estimate_cost(
    request: RenderRequest | ImageRequest, *, table: PriceTable | None = None
) -> float:
    """Estimated USD of a request (a clip, or stills) with the configured (or given) table."""
    if isinstance(request, ImageRequest):
        return (table or price_table()).estimate_image(request)
    return (table or price_table()).estimate(request)
