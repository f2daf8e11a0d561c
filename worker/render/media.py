"""Recognise image, video and audio files by their real signatures, not their names.

Only what a provider can play is accepted (seeds 003 and ``kinovi.md``): images JPEG, PNG
or WebP; video MP4; audio MP3, WAV and the other common containers (M4A, FLAC, Ogg). A
file is a format only when its header is a valid one, not when its first byte or two
happen to match: an MP3 without an ID3 tag must start with a well-formed MPEG-1/2/2.5
Layer III frame header followed by a second one where the first frame ends, so a UTF-16
text file (``FF FE`` BOM) or other stray ``FF Ex`` bytes never pass as audio.
Recognised but refused formats (HEIC, AVIF, GIF, WebM, QuickTime) are named, so the
error can say what to convert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "HEAD_BYTES",
    "MediaFormat",
    "MediaKind",
    "accepted_names",
    "identify",
]

MediaKind = Literal["image", "video", "audio"]
HEAD_BYTES = 4096  # enough for an ID3 header or two MPEG frames (the largest is 2881 bytes)


@dataclass(frozen=True)
class MediaFormat:
    """A recognised file format: its kind, its name, whether providers take it, its MIME."""

    kind: MediaKind
    name: str
    accepted: bool
    content_type: str


def _fmt(kind: MediaKind, name: str, mime: str, *, accepted: bool = True) -> MediaFormat:
    return MediaFormat(kind, name, accepted, mime)


JPEG = _fmt("image", "JPEG", "image/jpeg")
PNG = _fmt("image", "PNG", "image/png")
WEBP = _fmt("image", "WebP", "image/webp")
GIF = _fmt("image", "GIF", "image/gif", accepted=False)
HEIC = _fmt("image", "HEIC", "image/heic", accepted=False)
AVIF = _fmt("image", "AVIF", "image/avif", accepted=False)
MP4 = _fmt("video", "MP4", "video/mp4")
QUICKTIME = _fmt("video", "QuickTime", "video/quicktime", accepted=False)
WEBM = _fmt("video", "WebM/Matroska", "video/webm", accepted=False)
MP3 = _fmt("audio", "MP3", "audio/mpeg")
WAV = _fmt("audio", "WAV", "audio/wav")
M4A = _fmt("audio", "M4A", "audio/mp4")
FLAC = _fmt("audio", "FLAC", "audio/flac")
OGG = _fmt("audio", "Ogg", "audio/ogg")
_ALL = (JPEG, PNG, WEBP, GIF, HEIC, AVIF, MP4, QUICKTIME, WEBM, MP3, WAV, M4A, FLAC, OGG)

_AUDIO_BRANDS = (b"M4A ", b"M4B ", b"M4P ")
# HEIF/AVIF stills share the ISO box layout with mp4; without these they would pass as video.
_HEIC_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"hevc", b"hevx")
_AVIF_BRANDS = (b"avif", b"avis")
# MPEG audio tables, indexed by the header's version bits (0: 2.5, 2: 2, 3: 1).
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_L3_KBPS_V1 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_L3_KBPS_V2 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)


def accepted_names(kind: MediaKind) -> str:
    """The accepted formats of a kind, for messages: ``JPEG, PNG or WebP``."""
    names = [f.name for f in _ALL if f.kind == kind and f.accepted]
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def _mpeg_frame_length(header: bytes) -> int | None:
    """Bytes of the MPEG Layer III frame whose 4-byte header this is, or None if invalid."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version = (header[1] >> 3) & 3
    layer = (header[1] >> 1) & 3
    bitrate_index = header[2] >> 4
    rate_index = (header[2] >> 2) & 3
    if version == 1 or layer != 1 or rate_index == 3 or (header[3] & 3) == 2:
        return None  # reserved version, not Layer III, reserved rate or emphasis
    if bitrate_index in (0, 15):
        return None  # free-format or invalid bitrate
    table = _L3_KBPS_V1 if version == 3 else _L3_KBPS_V2
    rate = _RATES[version][rate_index]
    padding = (header[2] >> 1) & 1
    per_frame = 144 if version == 3 else 72
    return per_frame * table[bitrate_index] * 1000 // rate + padding


def _is_mp3(head: bytes) -> bool:
    if head[:3] == b"ID3":
        # ID3v2: major version 2-4, then four sync-safe size bytes (high bit clear).
        return len(head) >= 10 and 2 <= head[3] <= 4 and all(b < 0x80 for b in head[6:10])
    length = _mpeg_frame_length(head[:4])
    if length is None:
        return False
    # One header could be chance; a second where the first frame ends is a stream.
    return _mpeg_frame_length(head[length : length + 4]) is not None


def _iso_format(head: bytes) -> MediaFormat | None:
    """The format of an ISO base media file (``ftyp`` box first), by its major brand."""
    size = int.from_bytes(head[:4], "big")
    if head[4:8] != b"ftyp" or size < 16 or size % 4:
        return None
    brand = head[8:12]
    if brand in _HEIC_BRANDS:
        return HEIC
    if brand in _AVIF_BRANDS:
        return AVIF
    if brand in _AUDIO_BRANDS:
        return M4A
    return QUICKTIME if brand == b"qt  " else MP4


def identify(head: bytes) -> MediaFormat | None:
    """The format of a file that starts with ``head`` (up to :data:`HEAD_BYTES`), or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head[:4] == b"RIFF" and head[8:12] in (b"WEBP", b"WAVE"):
        return WEBP if head[8:12] == b"WEBP" else WAV
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if head[4:8] == b"ftyp":
        return _iso_format(head)
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return WEBM
    if head.startswith(b"fLaC"):
        return FLAC
    if head.startswith(b"OggS\x00"):
        return OGG
    return MP3 if _is_mp3(head) else None
