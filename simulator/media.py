"""The files the simulator hands out: a tiny playable mp4 and a 1x1 PNG, built in code.

The mp4 is one 16x16 H.264 frame (a single I_PCM macroblock, so no encoder is needed)
shown for the clip's whole duration, laid out ``ftyp``, ``moov``, ``mdat``. The duration
is the one the task asked for: it is written in the movie header (``mvhd``), the track
and media headers and the one sample's time-to-sample entry, so a player shows 0:05 for
a 5 s task while the file stays a few hundred bytes. A movie of a given duration is
byte-for-byte the same on every run, so tests can compare hashes (``VIDEO_SHA256`` is
the default 5 s movie's; :func:`video_sha256` gives any other's). A larger file is the
same movie with zero bytes appended inside ``mdat``; players ignore them because the
sample table points only at the frame.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterator
from functools import lru_cache

__all__ = [
    "MAX_VIDEO_BYTES",
    "PNG_BYTES",
    "VIDEO_SHA256",
    "iter_video",
    "movie_duration",
    "video_bytes",
    "video_prefix",
    "video_sha256",
    "video_size",
]

_WIDTH = _HEIGHT = 16
_TIMESCALE = 1000  # duration units per second
DEFAULT_SECONDS = 5  # the provider's default clip length
MAX_VIDEO_BYTES = 2**32 - 1  # a 32-bit mdat size; larger would need a 64-bit box header
_ZEROS = bytes(256 * 1024)


class _Bits:
    """Big-endian bit writer with the Exp-Golomb codes H.264 headers use."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, width: int, value: int) -> None:
        self.bits.extend((value >> (width - 1 - i)) & 1 for i in range(width))

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(2 * code.bit_length() - 1, code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def align_zero(self) -> None:
        while len(self.bits) % 8:
            self.bits.append(0)

    def trailing(self) -> bytes:
        self.bits.append(1)
        self.align_zero()
        return bytes(
            int("".join(map(str, self.bits[i : i + 8])), 2) for i in range(0, len(self.bits), 8)
        )


def _nal(ref_idc: int, nal_type: int, rbsp: bytes) -> bytes:
    # Emulation prevention: no 0x000000-0x000003 run may appear inside a NAL unit.
    out = bytearray([(ref_idc << 5) | nal_type])
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _sps() -> bytes:
    b = _Bits()
    b.u(8, 66)  # Baseline profile
    b.u(8, 0xC0)  # constraint_set0/1: decodable by Baseline and Main decoders
    b.u(8, 10)  # level 1.0
    for value in (0, 0, 2, 1):  # sps id, log2_max_frame_num-4, poc type 2, max refs
        b.ue(value)
    b.u(1, 0)  # gaps_in_frame_num_allowed
    b.ue(_WIDTH // 16 - 1)
    b.ue(_HEIGHT // 16 - 1)
    b.u(3, 0b110)  # frame_mbs_only, direct_8x8_inference, no cropping
    b.u(1, 0)  # no VUI
    return _nal(3, 7, b.trailing())


def _pps() -> bytes:
    b = _Bits()
    b.ue(0)  # pps id
    b.ue(0)  # sps id
    b.u(2, 0)  # CAVLC, no field order flag
    for value in (0, 0, 0):  # slice groups, l0 refs, l1 refs
        b.ue(value)
    b.u(3, 0)  # no weighted prediction
    for value in (0, 0, 0):  # qp, qs, chroma qp offset
        b.se(value)
    b.u(3, 0b100)  # deblocking control present, no constrained intra, no redundant pics
    return _nal(3, 8, b.trailing())


def _idr_slice() -> bytes:
    b = _Bits()
    b.ue(0)  # first_mb_in_slice
    b.ue(7)  # slice_type I (all slices)
    b.ue(0)  # pps id
    b.u(4, 0)  # frame_num
    b.ue(0)  # idr_pic_id
    b.u(2, 0)  # no_output_of_prior_pics, long_term_reference
    b.se(0)  # slice_qp_delta
    b.ue(1)  # deblocking off
    b.ue(25)  # mb_type I_PCM: raw samples follow, byte aligned
    b.align_zero()
    # A diagonal luma ramp and flat chroma; no zero bytes, so no emulation bytes either.
    luma = [16 + 6 * (x + y) for y in range(16) for x in range(16)]
    for value in (*luma, *([110] * 64), *([150] * 64)):
        b.u(8, value)
    return _nal(3, 5, b.trailing())


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _avc1() -> bytes:
    """The sample description: an H.264 track of ``_WIDTH`` by ``_HEIGHT``."""
    sps, pps = _sps(), _pps()
    avcc = _box(
        b"avcC",
        bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]),
        struct.pack(">H", len(sps)),
        sps,
        b"\x01",
        struct.pack(">H", len(pps)),
        pps,
    )
    return _box(
        b"avc1",
        bytes(6) + struct.pack(">H", 1) + bytes(16),
        struct.pack(">HHIIIH", _WIDTH, _HEIGHT, 0x480000, 0x480000, 0, 1),
        bytes(32),  # compressor name
        struct.pack(">Hh", 0x18, -1),
        avcc,
    )


def _moov(sample_size: int, sample_offset: int, duration: int) -> bytes:
    avc1 = _avc1()
    stbl = _box(
        b"stbl",
        _full_box(b"stsd", 0, 0, struct.pack(">I", 1), avc1),
        _full_box(b"stts", 0, 0, struct.pack(">III", 1, 1, duration)),
        _full_box(b"stss", 0, 0, struct.pack(">II", 1, 1)),
        _full_box(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, 1, 1)),
        _full_box(b"stsz", 0, 0, struct.pack(">III", 0, 1, sample_size)),
        _full_box(b"stco", 0, 0, struct.pack(">II", 1, sample_offset)),
    )
    minf = _box(
        b"minf",
        _full_box(b"vmhd", 0, 1, bytes(8)),
        _box(b"dinf", _full_box(b"dref", 0, 0, struct.pack(">I", 1), _full_box(b"url ", 0, 1))),
        stbl,
    )
    mdia = _box(
        b"mdia",
        _full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, _TIMESCALE, duration, 0x55C4, 0)),
        _full_box(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, b"vide"), b"VideoHandler\x00"),
        minf,
    )
    tkhd = _full_box(
        b"tkhd", 0, 3,
        struct.pack(">IIIII8xhhh2x", 0, 0, 1, 0, duration, 0, 0, 0),
        _MATRIX,
        struct.pack(">II", _WIDTH << 16, _HEIGHT << 16),
    )  # fmt: skip
    mvhd = _full_box(
        b"mvhd", 0, 0,
        struct.pack(">IIIIIH10x", 0, 0, _TIMESCALE, duration, 0x10000, 0x100),
        _MATRIX,
        bytes(24),
        struct.pack(">I", 2),
    )  # fmt: skip
    return _box(b"moov", mvhd, _box(b"trak", tkhd, mdia))


def _duration(seconds: float) -> int:
    units = round(seconds * _TIMESCALE)
    if not 0 < units < 2**32:
        raise ValueError(f"a clip must last more than 0 and under {2**32 // _TIMESCALE} s")
    return units


@lru_cache(maxsize=64)
def _parts(seconds: float = DEFAULT_SECONDS) -> tuple[bytes, bytes]:
    """(ftyp + moov, the sample) of the unpadded movie lasting ``seconds``."""
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isomiso2avc1mp41")
    frame = _idr_slice()
    sample = struct.pack(">I", len(frame)) + frame
    duration = _duration(seconds)
    # The moov size depends on neither the offset nor the duration (fixed-width fields),
    # so one pass finds the offset, and every duration has the same size.
    offset = len(ftyp) + len(_moov(len(sample), 0, duration)) + 8
    return ftyp + _moov(len(sample), offset, duration), sample


def video_prefix(total: int | None = None, *, seconds: float = DEFAULT_SECONDS) -> bytes:
    """Everything before the zero padding of a movie of ``total`` bytes (None: unpadded)."""
    head, sample = _parts(seconds)
    size = max(video_size(total) - len(head), 8 + len(sample))
    return head + struct.pack(">I4s", size, b"mdat") + sample


def video_size(total: int | None = None) -> int:
    """Size in bytes of the movie served for a ``video_bytes`` setting of ``total``."""
    head, sample = _parts()
    smallest = len(head) + 8 + len(sample)
    if total is None or total <= smallest:
        return smallest
    if total > MAX_VIDEO_BYTES:
        raise ValueError(f"video size must be at most {MAX_VIDEO_BYTES} bytes")
    return total


def video_bytes(seconds: float = DEFAULT_SECONDS) -> bytes:
    """The unpadded movie: a valid 16x16 mp4 of a few hundred bytes lasting ``seconds``."""
    return video_prefix(None, seconds=seconds)


def video_sha256(seconds: float = DEFAULT_SECONDS) -> str:
    """The sha256 of the unpadded movie lasting ``seconds``."""
    return hashlib.sha256(video_bytes(seconds)).hexdigest()


def movie_duration(data: bytes) -> float:
    """The duration in seconds an mp4's movie header (``mvhd``, version 0) states."""
    at = data.index(b"mvhd")
    timescale, duration = struct.unpack(">II", data[at + 16 : at + 24])
    return float(duration / timescale)


def iter_video(
    total: int | None = None,
    *,
    seconds: float = DEFAULT_SECONDS,
    chunk_size: int = len(_ZEROS),
) -> Iterator[bytes]:
    """The movie of ``total`` bytes in chunks; padding costs no memory beyond one chunk."""
    prefix = video_prefix(total, seconds=seconds)
    yield prefix
    remaining = video_size(total) - len(prefix)
    zeros = _ZEROS if chunk_size == len(_ZEROS) else bytes(chunk_size)
    while remaining > 0:
        step = min(remaining, len(zeros))
        yield zeros if step == len(zeros) else zeros[:step]
        remaining -= step


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xe0\x7a\x3c", 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


PNG_BYTES = _png()
VIDEO_SHA256 = video_sha256(DEFAULT_SECONDS)
