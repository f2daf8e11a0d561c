"""Recognise image, video and audio files by their first bytes, not their names."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

__all__ = ["MediaKind", "sniff", "sniff_file"]

MediaKind = Literal["image", "video", "audio"]

_AUDIO_FTYP_BRANDS = (b"M4A ", b"M4B ", b"M4P ")
# HEIF/AVIF stills share the ISO box layout with mp4; without this they would pass as video.
_IMAGE_FTYP_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")


def sniff(head: bytes) -> MediaKind | None:
    """The kind of media whose file starts with ``head`` (at least 12 bytes), or None."""
    if head.startswith(b"\xff\xd8\xff") or head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio"
    if head[4:8] == b"ftyp":
        if head[8:12] in _IMAGE_FTYP_BRANDS:
            return "image"
        return "audio" if head[8:12] in _AUDIO_FTYP_BRANDS else "video"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # Matroska / WebM
        return "video"
    if head.startswith((b"ID3", b"fLaC", b"OggS")):
        return "audio"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:  # MPEG audio frame
        return "audio"
    return None


def sniff_file(path: Path) -> MediaKind | None:
    """The kind of media stored at ``path``, judged by its magic bytes."""
    with path.open("rb") as fh:
        return sniff(fh.read(16))
