"""The pricing part of the settings: what budgets count a clip or an image at."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field
from pydantic_settings import NoDecode

__all__ = ["PricingSettings"]


class PricingSettings(BaseModel):
    """Price overrides, read by the catalogue's pricing and the batches' budgets."""

    prices: Annotated[dict[str, Any], NoDecode] = Field(
        default_factory=dict,
        description="Price overrides, JSON: model -> USD per second, or "
        '{"usd_per_second" | "credits_per_second": n, "usd_per_credit": x, '
        '"resolutions": {"1080p": 1.5}}.',
    )
    image_default_price: float = Field(
        0.10,
        ge=0,
        le=100,
        description="USD per image counted against budgets for an image model with no price "
        "(RelayDance publishes none), unless RELAYDANCE_PRICES names the model.",
    )
