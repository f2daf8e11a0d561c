"""RelayDance's image models and what each takes: sizes, how many per request, price.

Source: the Generate Image page (``seeds/relaydance-docs.md``; seeds 000 and 002 name the
endpoint): ``POST /v1/images/generations`` takes ``model`` (``grok-imagine-image`` or
``grok-imagine-image-quality``), ``prompt``, ``n`` (optional, default 1) and ``size``
(optional, "model-dependent, e.g. 1024x1024"), and answers the image URLs at once.

The page names one size, by example, and no bound on ``n``; the values below are
deliberately conservative and marked so, as the video catalogue's are: a request refused
here costs nothing, while one the provider refuses costs a round trip and one it renders
at a size nobody asked for costs money. Widen them when the provider's model page confirms
more. No image price is published: an image model's price is ``None`` here, and
:mod:`worker.render.pricing` counts ``RELAYDANCE_IMAGE_DEFAULT_PRICE`` per image for it
unless ``RELAYDANCE_PRICES`` names it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "IMAGE_MODELS",
    "ImageModel",
    "find_image_model",
    "is_image_model",
    "known_image_models",
]


@dataclass(frozen=True)
class ImageModel:
    """One image model and the requests it takes."""

    id: str
    family: str
    sizes: tuple[str, ...]  # "WIDTHxHEIGHT", the first is the default
    max_n: int  # images per request
    min_n: int = 1
    # USD per image, when the provider publishes one; None: RELAYDANCE_IMAGE_DEFAULT_PRICE.
    usd_per_image: float | None = None
    notes: str = field(default="", compare=False)
    provider: str = "relaydance"

    @property
    def default_size(self) -> str:
        """The size used when a request names none."""
        return self.sizes[0]


DOCUMENTED_SIZES = ("1024x1024",)  # the page's own example; conservative

IMAGE_MODELS: dict[str, ImageModel] = {
    m.id: m
    for m in (
        ImageModel(
            "grok-imagine-image", "Grok Imagine", DOCUMENTED_SIZES,
            max_n=4,  # conservative: the page sets no bound
            notes="xAI image generation; synchronous",
        ),
        ImageModel(
            "grok-imagine-image-quality", "Grok Imagine", DOCUMENTED_SIZES,
            max_n=4,  # conservative
            notes="xAI image generation, quality tier; synchronous",
        ),
    )
}  # fmt: skip


def known_image_models() -> list[str]:
    """Every image model id, sorted."""
    return sorted(IMAGE_MODELS)


def find_image_model(model_id: str) -> ImageModel | None:
    """The catalogue entry of an image model id, or None."""
    return IMAGE_MODELS.get(model_id)


def is_image_model(model_id: object) -> bool:
    """Whether ``model_id`` names an image model (a request for stills, not a clip)."""
    return isinstance(model_id, str) and model_id.strip() in IMAGE_MODELS
