"""A real S3-compatible server for tests: moto's server mode on a loopback port.

moto speaks the S3 HTTP API (multipart uploads, presigned URLs, IAM-checked requests when
asked), so the fleet's boto3 code runs unchanged against it. The tests start it; nothing
leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from worker.infra.redis_server import free_port

REGION = "us-east-1"
ADMIN = {"AWS_ACCESS_KEY_ID": "AKIATESTADMIN0000000", "AWS_SECRET_ACCESS_KEY": "test-admin"}


def aws_env(access_key: str, secret_key: str) -> dict[str, str]:
    """The standard AWS environment of a process that uses these credentials, and no other
    source (no ~/.aws files, no instance metadata endpoint off loopback)."""
    return {
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


class S3Server:
    """``python -m moto.server`` on a free 127.0.0.1 port; a context manager."""

    def __init__(self) -> None:
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._clients: dict[tuple[str, str, str], Any] = {}
        self._log = Path(tempfile.mkdtemp(prefix="moto-")) / "moto.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 30.0) -> S3Server:
        """Start the server and wait (bounded) until it answers."""
        self.port = free_port()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto server exited: {self._log.read_text()[-2000:]}")
            try:
                httpx.get(f"{self.url}/moto-api/data.json", timeout=1.0)
                return self
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("moto server did not answer in time")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=10)

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget every bucket, object, upload and IAM user."""
        httpx.post(f"{self.url}/moto-api/reset", timeout=10.0).raise_for_status()

    def client(self, service: str = "s3", *, access_key: str = "", secret_key: str = "") -> Any:
        """A boto3 client of this server (admin credentials unless others are given)."""
        # Clients are cached: making one loads botocore's service model (~0.5 s).
        cached = self._clients.get((service, access_key, secret_key))
        if cached is None:
            cached = self._clients[(service, access_key, secret_key)] = self._new_client(
                service, access_key, secret_key
            )
        return cached

    def _new_client(self, service: str, access_key: str, secret_key: str) -> Any:
        # Imported here: every test process loads this module, few make a client (~0.3 s).
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(
            aws_access_key_id=access_key or ADMIN["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=secret_key or ADMIN["AWS_SECRET_ACCESS_KEY"],
            region_name=REGION,
        )
        return session.client(
            service, endpoint_url=self.url, config=Config(signature_version="s3v4")
        )

    @contextmanager
    def enforcing_iam(self) -> Iterator[None]:
        """From now until the block ends, every request must be signed by an IAM user
        whose policies allow it (moto's request authentication)."""
        httpx.post(f"{self.url}/moto-api/reset-auth", content=b"0", timeout=10.0)
        try:
            yield
        finally:
            httpx.post(f"{self.url}/moto-api/reset-auth", content=b"inf", timeout=10.0)


@dataclass
class Bucket:
    """One empty bucket of the session's S3 server, and what a test asks of it."""

    server: S3Server
    name: str = "clips"
    prefix: str = "renders"
    #: credentials of this helper's own requests (an IAM admin's while IAM is enforced)
    creds: dict[str, str] = field(default_factory=dict)

    def s3(self) -> Any:
        return self.server.client(**self.creds)

    @property
    def output(self) -> str:
        return f"s3://{self.name}/{self.prefix}"

    def env(self, *, access_key: str = "", secret_key: str = "") -> dict[str, str]:
        """Settings and AWS environment of a worker that delivers into this bucket."""
        return {
            "RELAYDANCE_OUTPUT": self.output,
            "RELAYDANCE_S3_ENDPOINT_URL": self.server.url,
            "RELAYDANCE_S3_REGION": REGION,
            **aws_env(
                access_key or ADMIN["AWS_ACCESS_KEY_ID"],
                secret_key or ADMIN["AWS_SECRET_ACCESS_KEY"],
            ),
        }

    def keys(self) -> list[str]:
        """Every object key in the bucket."""
        listing = self.s3().list_objects_v2(Bucket=self.name)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def uploads(self) -> list[str]:
        """The keys of incomplete multipart uploads."""
        listing = self.s3().list_multipart_uploads(Bucket=self.name)
        return sorted(u["Key"] for u in listing.get("Uploads", []))

    def read(self, key: str) -> bytes:
        return bytes(self.s3().get_object(Bucket=self.name, Key=key)["Body"].read())

    def head(self, key: str) -> dict[str, Any]:
        return dict(self.s3().head_object(Bucket=self.name, Key=key))

    def manifest(self, job_id: str) -> dict[str, Any]:
        return dict(json.loads(self.read(f"{self.prefix}/{job_id}.json")))

    def make_user(self, name: str, actions: list[str]) -> dict[str, str]:
        """An IAM user allowed only ``actions`` (on every resource); its AWS environment."""
        iam = self.server.client("iam", **self.creds)
        iam.create_user(UserName=name)
        self.allow(name, actions)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {"access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"]}

    def allow(self, user: str, actions: list[str]) -> None:
        """Replace ``user``'s policy with one allowing ``actions``."""
        iam = self.server.client("iam", **self.creds)
        policy = {"Version": "2012-10-17",
                  "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}  # fmt: skip
        iam.put_user_policy(UserName=user, PolicyName="clips", PolicyDocument=json.dumps(policy))
