"""The storage part of the settings: where finished clips go, and which local media is allowed.

Credentials are never settings: boto3 reads AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/
AWS_SESSION_TOKEN or AWS_PROFILE itself, so they cannot reach a record or a repr.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, Field, field_validator, model_validator

from config.parts.checks import absolute_url

__all__ = ["ADDRESSING_STYLES", "MIB", "S3_SCHEME", "StorageSettings"]

MIB = 1 << 20
S3_SCHEME = "s3://"
ADDRESSING_STYLES = ("auto", "path", "virtual")
# S3's bucket naming rules (the common subset every S3-compatible store accepts).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class StorageSettings(BaseModel):
    """The output (a local directory or an S3-compatible bucket) and the local media roots."""

    output_dir: Path = Field(
        Path("./renders"),
        description="Where finished mp4 files go, unless RELAYDANCE_OUTPUT names a bucket; "
        "then the worker's local working directory.",
    )
    media_dirs: str | None = Field(
        None,
        description="Absolute directories local media files may come from, separated by "
        f"{os.pathsep!r}; the producer and the workers must share it. Unset: no local file "
        "is taken (URLs only).",
    )
    output_mode: str | None = Field(
        None,
        description="Permissions of clips and manifests in a local output directory, in octal "
        "(e.g. 0640); unset: 0666 less the worker's umask, as cp does.",
    )
    output: str | None = Field(
        None,
        validation_alias=AliasChoices("RELAYDANCE_OUTPUT", "RELAYDANCE_OUTPUT_URL"),
        description="Where finished clips go: a local directory or s3://bucket/prefix "
        "(also RELAYDANCE_OUTPUT_URL); unset: RELAYDANCE_OUTPUT_DIR.",
    )
    s3_endpoint_url: str | None = Field(
        None,
        description="S3 API endpoint (R2, MinIO, GCS...); unset: AWS, or AWS_ENDPOINT_URL_S3.",
    )
    s3_region: str | None = Field(
        None, description="Region of the bucket; unset: AWS_REGION or the profile's region."
    )
    s3_addressing_style: str = Field(
        "auto", description="S3 URL style: auto, path (most MinIO setups) or virtual."
    )
    s3_part_size: int = Field(
        8 * MIB,
        ge=5 * MIB,
        le=512 * MIB,
        description="Multipart upload part size, bytes: about the memory one upload holds.",
    )
    s3_presign_seconds: int = Field(
        3600, ge=1, le=7 * 24 * 3600, description="Lifetime of presigned clip URLs, s."
    )
    storage_retry_interval: float = Field(
        60.0, gt=0, description="When the output refuses a clip, try its delivery again this often."
    )
    storage_retry_seconds: float = Field(
        6 * 3600.0,
        gt=0,
        description="Keep retrying a refused delivery this long, then fail the job.",
    )

    @field_validator("output")
    @classmethod
    def _check_output(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if value.startswith(S3_SCHEME):
            return _bucket_url(value)
        scheme = urlsplit(value).scheme
        if "://" in value:
            raise ValueError(
                f"must be a local directory or s3://bucket/prefix, got scheme {scheme!r}; "
                "for R2, GCS or MinIO use s3:// with RELAYDANCE_S3_ENDPOINT_URL"
            )
        return value

    @field_validator("media_dirs")
    @classmethod
    def _check_media_dirs(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        entries = [part.strip() for part in value.split(os.pathsep) if part.strip()]
        relative = [e for e in entries if not Path(e).expanduser().is_absolute()]
        if relative:
            raise ValueError(
                f"{', '.join(map(repr, relative))} is relative, so the producer and the "
                "workers would each read it from their own working directory; give "
                "absolute directories, e.g. /srv/media"
            )
        return os.pathsep.join(entries)

    @field_validator("output_mode")
    @classmethod
    def _check_output_mode(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        text = value.strip().lower().removeprefix("0o")
        if not re.fullmatch(r"0?[0-7]{3}", text):
            raise ValueError(f"{value!r} is not an octal file mode; write e.g. 0640 or 0644")
        mode = int(text, 8)
        if mode & 0o600 != 0o600:
            raise ValueError(
                f"{value!r} leaves the worker unable to read or write its own files; keep "
                "the owner's rw, e.g. 0640"
            )
        return f"0{mode:03o}"

    @field_validator("s3_addressing_style")
    @classmethod
    def _check_addressing_style(cls, value: str) -> str:
        if value not in ADDRESSING_STYLES:
            raise ValueError(f"must be one of {', '.join(ADDRESSING_STYLES)}, got {value!r}")
        return value

    @field_validator("s3_endpoint_url")
    @classmethod
    def _check_endpoint_url(cls, value: str | None) -> str | None:
        return absolute_url(value)

    @model_validator(mode="after")
    def _check_output_place(self) -> Self:
        # A local RELAYDANCE_OUTPUT is the output directory: one place, however it is named.
        if self.output is None or self.output.startswith(S3_SCHEME):
            return self
        directory = Path(self.output)
        if "output_dir" in self.model_fields_set and directory != self.output_dir:
            raise ValueError(
                "RELAYDANCE_OUTPUT names a directory other than RELAYDANCE_OUTPUT_DIR; "
                "set only one of them (or RELAYDANCE_OUTPUT to s3://bucket/prefix)"
            )
        self.output_dir = directory
        return self

    def media_directories(self) -> list[Path]:
        """``RELAYDANCE_MEDIA_DIRS`` as paths (a PATH-like list); empty when unset."""
        return [Path(p.strip()) for p in (self.media_dirs or "").split(os.pathsep) if p.strip()]

    def file_mode(self) -> int | None:
        """RELAYDANCE_OUTPUT_MODE as a number, or None (the umask decides)."""
        return None if self.output_mode is None else int(self.output_mode, 8)

    def output_bucket(self) -> tuple[str, str] | None:
        """(bucket, prefix) when clips go to an S3-compatible bucket; None for a directory."""
        if self.output is None or not self.output.startswith(S3_SCHEME):
            return None
        bucket, _, prefix = self.output[len(S3_SCHEME) :].partition("/")
        return bucket, prefix


def _bucket_url(value: str) -> str:
    bucket, _, prefix = value[len(S3_SCHEME) :].partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ValueError(
            f"bucket {bucket!r} is not a valid S3 bucket name (3-63 characters: "
            "lowercase letters, digits, dots, hyphens); write s3://bucket/prefix"
        )
    prefix = prefix.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise ValueError(
            "the prefix after the bucket must be plain path segments, "
            "e.g. s3://bucket/renders/2025 (no empty, '.' or '..' parts)"
        )
    return f"{S3_SCHEME}{bucket}/{prefix}" if prefix else f"{S3_SCHEME}{bucket}"
