"""RelayDance's video models and what each accepts: data in one place, easy to update.

Another provider's models live with its rules (``worker.render.rules``), as ``Model`` entries
of their own; :func:`worker.render.rules.find_model` looks in every catalogue.

Source: seed 001 (the model list), seeds 000/002 (limits: 9 images, 3 videos, 3 audio,
clips up to 15 s; ``generate_audio`` on Seedance 2.0 models), seed 003 (Seedance 2.0
durations 4-15 s, ratios, and credit prices: 40 credits/s standard, 28 credits/s fast,
1 credit = $0.005).

Where the seeds do not state a model's limits, the values below are deliberately
conservative (narrow duration ranges, the resolution the model's name or notes give,
fewer reference inputs) and marked ``# conservative``: refusing a request locally costs
nothing, while a request the provider refuses or renders wrongly costs a round trip or
money. Widen them when the provider's model page confirms more.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "KINOVI_MODELS",
    "MODELS",
    "Model",
    "did_you_mean",
    "find_model",
    "get_model",
    "known_models",
]

SEEDANCE_RATIOS = ("16:9", "9:16", "1:1", "3:4", "4:3", "21:9")  # seed 003
COMMON_RATIOS = ("16:9", "9:16", "1:1")  # conservative: the three seed 001 names


@dataclass(frozen=True)
class Model:
    """One video model and the inputs it accepts."""

    id: str
    family: str
    min_seconds: int
    max_seconds: int
    ratios: tuple[str, ...]
    resolutions: tuple[str, ...]
    generate_audio: bool
    max_images: int
    max_videos: int
    max_audio: int
    frames: bool  # accepts first/last-frame mode
    requires: tuple[str, ...] = ()  # media kinds that must be present
    usd_per_second: float = 0.20
    expected_seconds: float = 90.0  # prior for the first poll, until jobs teach better
    default_ratio: str = "16:9"
    notes: str = field(default="", compare=False)
    provider: str = "relaydance"
    # Whether a request body spells out the defaults (ratio, resolution) the user left
    # unset; a provider that applies its own gets only what the user chose.
    send_defaults: bool = True
    # Audio comes with every clip, unasked: the model takes no ``generate_audio`` option.
    audio_always: bool = False

    @property
    def default_resolution(self) -> str:
        """The resolution used when a request names none."""
        return self.resolutions[-1]


MODELS: dict[str, Model] = {
    m.id: m
    for m in (
        Model(
            "doubao-seedance-2-0-1080p", "Seedance 2.0", 4, 15, SEEDANCE_RATIOS, ("1080p",),
            True, 9, 3, 3, True, usd_per_second=0.20, expected_seconds=120,
            notes="Flagship quality, 1080p output",
        ),
        Model(
            "doubao-seedance-2-0-720p", "Seedance 2.0", 4, 15, SEEDANCE_RATIOS, ("720p",),
            True, 9, 3, 3, True, usd_per_second=0.20, expected_seconds=90,
            notes="720p output",
        ),
        Model(
            "doubao-seedance-2-0-fast-260128", "Seedance 2.0", 4, 15, SEEDANCE_RATIOS,
            ("720p",),  # conservative
            True, 9, 3, 3, True, usd_per_second=0.14, expected_seconds=60,
            notes="Faster generation",
        ),
        Model(
            "seedance-1-5-pro-with-audio", "Seedance 1.5", 4, 12,  # conservative
            COMMON_RATIOS, ("480p", "720p"),  # conservative; seeds show 720p
            False,  # audio is always generated; the flag is a Seedance 2.0 option
            9, 0, 0, True,  # conservative: references images only
            usd_per_second=0.15, expected_seconds=90,  # conservative price estimate
            notes="Generated audio included", audio_always=True,
        ),
        Model(
            "seedance-1-5-pro-no-audio", "Seedance 1.5", 4, 12, COMMON_RATIOS,
            ("480p", "720p"), False, 9, 0, 0, True,  # conservative
            usd_per_second=0.12, expected_seconds=80,
            notes="Silent output",
        ),
        Model(
            "happyhorse-1.0-t2v", "HappyHorse", 5, 10, COMMON_RATIOS, ("720p",),  # conservative
            False, 0, 0, 0, False, usd_per_second=0.10, expected_seconds=90,
            notes="Text-to-video",
        ),
        Model(
            "happyhorse-1.0-i2v", "HappyHorse", 5, 10, COMMON_RATIOS, ("720p",),  # conservative
            False, 1, 0, 0, True, requires=("image",), usd_per_second=0.10,
            expected_seconds=90, notes="Image-to-video",
        ),
        Model(
            "happyhorse-1.0-r2v", "HappyHorse", 5, 10, COMMON_RATIOS, ("720p",),  # conservative
            False, 9, 0, 0, False, requires=("image",), usd_per_second=0.10,
            expected_seconds=100, notes="Reference-to-video",
        ),
        Model(
            "happyhorse-1.0-video-edit", "HappyHorse", 5, 10, COMMON_RATIOS, ("720p",),
            False, 0, 1, 0, False, requires=("video",), usd_per_second=0.10,  # conservative
            expected_seconds=100, notes="Video editing",
        ),
        Model(
            "grok-imagine-video", "Grok Imagine", 5, 10, COMMON_RATIOS, ("720p",),  # conservative
            False, 1, 0, 0, True, usd_per_second=0.10, expected_seconds=60,
            notes="xAI video generation",
        ),
        Model(
            "grok-imagine-video-1.5-preview", "Grok Imagine", 5, 10, COMMON_RATIOS,
            ("720p",), False, 1, 0, 0, True, usd_per_second=0.10,  # conservative
            expected_seconds=60, notes="xAI 1.5 preview",
        ),
    )
}  # fmt: skip


# Kinovi's Seedance 2.0 (seed 003 and seeds/kinovi.md); its rules are worker.render.rules.kinovi.
KINOVI_RESOLUTIONS = ("480p", "720p")  # seed-003 pages: 720p is the priced default, 480p half
KINOVI_MODELS: dict[str, Model] = {
    m.id: m
    for m in (
        Model(
            "seedance-20", "Seedance 2.0", 4, 15, SEEDANCE_RATIOS, KINOVI_RESOLUTIONS, False,
            9, 3, 3, True, usd_per_second=0.20, expected_seconds=120, notes="Kinovi, standard",
            provider="kinovi", send_defaults=False,
        ),
        Model(
            "seedance2-fast", "Seedance 2.0", 4, 15, SEEDANCE_RATIOS, KINOVI_RESOLUTIONS, False,
            9, 3, 3, True, usd_per_second=0.14, expected_seconds=60,
            notes="Kinovi, about 2x faster",
            provider="kinovi", send_defaults=False,
        ),
    )
}  # fmt: skip


def known_models() -> list[str]:
    """Every model id, sorted."""
    return sorted(MODELS)


def get_model(model_id: str) -> Model | None:
    """The catalogue entry of a model id, or None."""
    return MODELS.get(model_id)


def find_model(model_id: str) -> Model | None:
    """The catalogue entry of a model id, whichever provider offers it."""
    return MODELS.get(model_id) or KINOVI_MODELS.get(model_id)


def did_you_mean(model_id: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for a near-miss model id (a typo, a dropped suffix), else ''."""
    names = sorted(candidates)
    wanted = model_id.strip().lower()
    # A dropped version suffix ("...-fast" for "...-fast-260128") is the usual slip.
    found = [name for name in names if wanted and name.startswith(wanted)]
    if len(found) != 1:
        found = difflib.get_close_matches(wanted, names, n=1, cutoff=0.75)
    return f"; did you mean {found[0]!r}?" if found else ""
