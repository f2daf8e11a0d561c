"""Kinovi's rules (seed 003, ``seeds/kinovi.md``): its two models, modes, media and prices.

A request for a Kinovi alias is checked here before anything is enqueued or paid for:

- models ``seedance-20`` (standard) and ``seedance2-fast``; ``seconds`` 4-15; the six ratios;
  ``resolution`` (Kinovi's ``outputResolution``) 720p or 480p; ``upscale`` only ``4k``;
- ``keyframe`` mode (Kinovi's default): 1 or 2 images as first and last frame, given as
  ``images`` or ``first_frame``/``last_frame``; no videos, no audio, no ``@`` citations;
- ``reference`` mode: up to 9 images, 3 MP4 videos and 3 audio files, at least one image or
  video, and a prompt; ``@imageN``/``@videoN``/``@audioN`` are counted per kind, any case;
- a prompt of at most 4,000 characters, required except for image-to-video;
- URLs only: Kinovi has no upload endpoint, so a local path is refused with what to do.

Prices (seed 003): 40 credits/s standard, 28 fast, +28 credits/s for the 4K upscale, half
the base rate at 480p; 1 credit = $0.005.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from worker.render.catalogue import KINOVI_MODELS as MODELS
from worker.render.catalogue import KINOVI_RESOLUTIONS as RESOLUTIONS
from worker.render.catalogue import SEEDANCE_RATIOS, Model, did_you_mean
from worker.render.request import MAX_PROMPT_CHARS, Problems, RenderRequest, is_url, url_problem

__all__ = ["MODELS", "KinoviRules"]

UPSCALES = ("4k",)
LIMITS = {"image": 9, "video": 3, "audio": 3}
KEYFRAME_IMAGES = 2
_FIELD = {"image": "images", "video": "videos", "audio": "audio"}
_CITATION = re.compile(r"@(image|video|audio)(\d+)", re.IGNORECASE)

_PRICES = {
    "seedance-20": {"credits_per_second": 40, "upscale_credits_per_second": 28,
                    "resolutions": {"480p": 0.5}},
    "seedance2-fast": {"credits_per_second": 28, "upscale_credits_per_second": 28,
                       "resolutions": {"480p": 0.5}},
}  # fmt: skip
_NO_UPLOADS = (
    "Kinovi has no upload endpoint, so reference media must be public URLs; upload the "
    "file to storage you control (a bucket or CDN) and give its https URL"
)


def _reference(request: RenderRequest) -> bool:
    return request.mode == "reference"


def _check_model(request: RenderRequest) -> Problems:
    if request.model in MODELS:
        return []
    hint = did_you_mean(request.model, MODELS) or ";"
    return [
        ("model", f"{request.model!r} is not a Kinovi model{hint} use seedance-20 (standard, "
         "40 credits/s) or seedance2-fast (about 2x faster, 28 credits/s)")
    ]  # fmt: skip


def _check_options(request: RenderRequest) -> Problems:
    problems: Problems = []
    if not 4 <= request.seconds <= 15:
        problems.append(("seconds", f"{request.seconds} is outside Kinovi's range; use 4 to 15"))
    if request.ratio is not None and request.ratio not in SEEDANCE_RATIOS:
        problems.append(
            ("ratio", f"{request.ratio!r} is not offered by Kinovi; use one of "
             f"{', '.join(SEEDANCE_RATIOS)}")
        )  # fmt: skip
    if request.resolution is not None and request.resolution not in RESOLUTIONS:
        problems.append(
            ("resolution", f"{request.resolution!r} is not a Kinovi output resolution; use "
             "720p (the default) or 480p (half price)")
        )  # fmt: skip
    if request.upscale is not None and request.upscale.lower() not in UPSCALES:
        problems.append(
            ("upscale", f"{request.upscale!r} is not a Kinovi upscale; use 4k (+28 credits/s) "
             "or leave it out")
        )  # fmt: skip
    if request.generate_audio is not None:
        problems.append(
            ("generate_audio", "Kinovi does not take generate_audio; drop it (to follow a "
             "soundtrack, give it in audio with mode 'reference')")
        )  # fmt: skip
    return problems


def _check_prompt(request: RenderRequest) -> Problems:
    if len(request.prompt) > MAX_PROMPT_CHARS:
        return [
            ("prompt", f"is {len(request.prompt)} characters; shorten it to at most "
             f"{MAX_PROMPT_CHARS}")
        ]  # fmt: skip
    image_to_video = not _reference(request) and (
        request.images or request.first_frame or request.last_frame
    )
    if not request.prompt and not image_to_video:
        what = "reference mode" if _reference(request) else "text-to-video"
        return [("prompt", f"is required for {what}; describe the clip to generate")]
    return []


def _check_keyframe(request: RenderRequest) -> Problems:
    problems: Problems = []
    frames = [f for f in (request.first_frame, request.last_frame) if f]
    if request.images and frames:
        problems.append(
            ("images", "give keyframe images either in images or as first_frame/last_frame, "
             "not both")
        )  # fmt: skip
    if len(request.images) > KEYFRAME_IMAGES:
        problems.append(
            ("images", f"{len(request.images)} given; keyframe mode (Kinovi's default) takes 1 "
             "or 2 images (first and last frame): remove some, or use mode 'reference' for up "
             "to 9 reference images")
        )  # fmt: skip
    if request.last_frame and not request.first_frame:
        problems.append(
            ("last_frame", "Kinovi needs a first frame before a last frame; give first_frame "
             "too, or give the image as first_frame")
        )  # fmt: skip
    for kind, given in (("video", request.videos), ("audio", request.audio)):
        if given:
            problems.append(
                (_FIELD[kind], f"keyframe mode (Kinovi's default) takes no {_FIELD[kind]}; "
                 "use mode 'reference' (--mode reference) to give them as references")
            )  # fmt: skip
    for match in _CITATION.finditer(request.prompt):
        problems.append(
            ("prompt", f"{match.group(0)}: Kinovi resolves @ citations only in mode "
             "'reference'; remove it, or use mode 'reference'")
        )  # fmt: skip
        break
    return problems


def _check_reference(request: RenderRequest) -> Problems:
    problems: Problems = []
    if request.first_frame or request.last_frame:
        problems.append(
            ("first_frame", "mode 'reference' takes no first/last frame; give the images in "
             "images, or use mode 'keyframe'")
        )  # fmt: skip
    counts = {"image": len(request.images), "video": len(request.videos),
              "audio": len(request.audio)}  # fmt: skip
    for kind, count in counts.items():
        if count > LIMITS[kind]:
            problems.append(
                (_FIELD[kind], f"{count} given; Kinovi takes at most {LIMITS[kind]} in mode "
                 f"'reference', remove {count - LIMITS[kind]}")
            )  # fmt: skip
    if not request.images and not request.videos:
        problems.append(
            ("images", "mode 'reference' needs at least one image or video; add one, or "
             "leave the mode out for text-to-video")
        )  # fmt: skip
    for index, source in enumerate(request.videos, start=1):
        suffix = PurePosixPath(urlsplit(source).path).suffix.lower() if is_url(source) else ""
        if suffix and suffix != ".mp4":
            problems.append(
                ("videos", f"entry {index} is a {suffix} file; Kinovi takes MP4 videos only: "
                 "convert it and give the .mp4 URL")
            )  # fmt: skip
    seen: set[str] = set()
    for match in _CITATION.finditer(request.prompt):
        kind, number = match.group(1).lower(), int(match.group(2))
        tag = f"@{kind}{number}"
        if tag in seen or 1 <= number <= counts[kind]:
            seen.add(tag)
            continue
        seen.add(tag)
        have = counts[kind]
        if have == 0:
            fix = f"there is no {kind}; add one to {_FIELD[kind]} or remove the citation"
        elif have == 1:
            fix = f"there is only one {kind}; cite it as @{kind}1"
        else:
            fix = f"there are {have} (each kind counts apart); cite @{kind}1 to @{kind}{have}"
        problems.append(
            ("prompt", f"{match.group(0)} refers to {kind} {number}, which does not exist; {fix}")
        )
    return problems


def _check_sources(request: RenderRequest) -> Problems:
    problems: Problems = []
    for kind, source in request.media():
        field = _FIELD.get(kind, kind)
        if not source:
            problems.append((field, "an entry is empty; give a public https URL"))
        elif not is_url(source):
            problems.append((field, f"local file {source!r}: {_NO_UPLOADS}"))
        elif found := url_problem(source):
            problems.append((field, found))
    return problems


class KinoviRules:
    """Kinovi's Seedance 2.0 API: keyframe and reference modes, URLs only."""

    name = "kinovi"
    models: Mapping[str, Model] = MODELS
    uploads = False
    flags = frozenset({"--mode", "--upscale"})
    prompt_optional = True

    def check(self, request: RenderRequest, *, check_files: bool) -> Problems:
        """Every problem of a request for a Kinovi alias (see the module docstring)."""
        problems = _check_model(request) + _check_options(request) + _check_prompt(request)
        problems += _check_reference(request) if _reference(request) else _check_keyframe(request)
        return problems + _check_sources(request)

    def normalise(self, request: RenderRequest) -> RenderRequest:
        """Keyframe images become first/last frames; ``4K`` becomes ``4k``."""
        update: dict[str, Any] = {}
        if request.upscale is not None:
            update["upscale"] = request.upscale.lower()
        if not _reference(request) and request.images:
            update["images"] = ()
            update["first_frame"] = request.images[0]
            if len(request.images) > 1:
                update["last_frame"] = request.images[1]
        if not _reference(request):
            # One spelling per request: "frames" when it has frames, else "auto".
            update["mode"] = "frames" if request.images or request.first_frame else "auto"
        return request.model_copy(update=update)

    def default_prices(self) -> Mapping[str, Any]:
        """Seed 003's credit prices of both models."""
        return _PRICES
