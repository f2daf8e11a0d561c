"""The simulated provider's state and rules, independent of HTTP routing."""

from __future__ import annotations

import hashlib
import hmac
import math
import random
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from simulator.config import SimConfig, update_config
from simulator.kinovi_format import envelope
from simulator.stills import ImageStore
from simulator.store import Task, TaskStore
from simulator.validation import ValidRequest
from simulator.webhooks import WebhookDispatcher

__all__ = ["Simulator", "Upload"]


@dataclass(slots=True)
class Upload:
    """A file received on ``POST /v1/files``, served back at its url."""

    file_id: str
    owner: str
    filename: str
    content_type: str
    data: bytes
    created_at: float


class Simulator:
    """Config, random generator, tasks, uploads and the webhook dispatcher of one app."""

    def __init__(self, config: SimConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.rng = random.Random(config.seed)  # noqa: S311 - simulation, not security
        self.store = TaskStore()
        self.uploads: dict[str, Upload] = {}
        self.images = ImageStore()
        self.webhooks = WebhookDispatcher(self)
        # The account's remaining credit, in clips (None: unlimited); the knob tops it up.
        self.credits_left: int | None = config.credit_clips
        # Signs handed-out urls; fresh per process so old urls die with the process.
        self._url_key = secrets.token_bytes(32)

    # Configuration ---------------------------------------------------------------------------

    def configure(self, changes: dict[str, Any]) -> SimConfig:
        """Apply a partial update of the knobs; a new seed restarts the random sequence."""
        self.config = update_config(self.config, changes)
        if "seed" in changes:
            self.rng.seed(self.config.seed)
        if "credit_clips" in changes:
            self.credits_left = self.config.credit_clips
        return self.config

    def revoked(self, owner: str) -> bool:
        """Whether the key (by its owner hash) is revoked: refused 401 everywhere."""
        revoked = self.config.revoked_keys
        return "*" in revoked or any(owner.startswith(p) for p in revoked if p)

    def account_refusal(
        self, model: str, *, dialect: str, units: int = 1
    ) -> tuple[int, str] | None:
        """Why the account refuses a submission of ``model`` (status, message), if it does:
        the model is not allowed for the key, or less than ``units`` of credit is left."""
        if model in self.config.forbidden_models:
            self.store.counters["refused_model"] += 1
            return 403, f"this API key may not use model {model}"
        if self.credits_left is not None and self.credits_left < units:
            self.store.counters["refused_credits"] += 1
            if dialect == "kinovi":
                return 402, "Insufficient credits: please recharge your account"
            return 403, "Insufficient balance: please top up your account"
        return None

    def spend_credit(self, units: int = 1) -> None:
        """An accepted submission spends one unit of credit (a clip, or one image)."""
        if self.credits_left is not None:
            self.credits_left = max(0, self.credits_left - units)

    def reset(self) -> None:
        """Forget tasks, uploads, pending webhooks and counters; keep the knobs."""
        self.store.clear()
        self.uploads.clear()
        self.images.clear()
        self.webhooks.clear()

    def chance(self, rate: float) -> bool:
        """True with probability ``rate`` (no random draw when the rate is 0 or 1)."""
        if rate <= 0:
            return False
        return rate >= 1 or self.rng.random() < rate

    def new_id(self, prefix: str) -> str:
        """A fresh id such as ``task_3f9a...``, reproducible under a fixed seed."""
        return f"{prefix}_{self.rng.getrandbits(96):024x}"

    # Tasks -----------------------------------------------------------------------------------

    def create_task(
        self,
        request: ValidRequest,
        *,
        owner: str,
        idempotency_key: str | None,
        body_hash: str,
        base_url: str,
    ) -> Task:
        """Accept a validated submit: draw its duration and outcome, schedule its webhook."""
        cfg, now = self.config, self.clock()
        jitter = cfg.gen_time_jitter * (2 * self.rng.random() - 1) if cfg.gen_time_jitter else 0
        duration = max(0.0, cfg.gen_time_mean * (1 + jitter)) * cfg.time_scale
        task_id = self.new_id("task")
        while task_id in self.store.tasks:
            task_id = self.new_id("task")
        task = Task(
            task_id=task_id,
            owner=owner,
            model=request.model,
            seconds=request.seconds,
            ratio=request.ratio,
            resolution=request.resolution,
            generate_audio=request.generate_audio,
            callback_url=request.callback_url,
            idempotency_key=idempotency_key,
            created_at=now,
            start_at=now + duration * 0.2,  # queued for a fifth of the time, then running
            ready_at=now + duration,
            failed=self.chance(cfg.failure_rate),
            dialect=request.dialect,
            credits=request.credits,
            input_urls=request.input_urls,
        )
        self.store.add(task, now=now, body_hash=body_hash)
        if task.callback_url is not None:
            self.webhooks.schedule(task, base_url=base_url)
        return task

    def retry_after(self, owner: str) -> str:
        """The ``Retry-After`` of a refused submit: the knob, or until a slot frees when 0.

        Whole seconds, as HTTP has them; on a scaled clock (``time_scale`` below 1) the
        scaled value keeps its fraction, so that the fleet's timers keep their real order.
        """
        scale = self.config.time_scale
        if self.config.retry_after > 0:
            seconds = self.config.retry_after * scale
        else:
            earliest = self.store.earliest_ready(owner)
            seconds = max(scale, earliest - self.clock()) if earliest is not None else scale
        if scale >= 1:
            return str(max(1, math.ceil(seconds)))
        return f"{seconds:.3f}"

    def submission_fault(self) -> str | None:
        """The fault an accepted submission meets after its task exists, if any.

        ``"drop"``: the connection drops before the reply; ``"error"``: a 502 reply. Either
        way the task was created and is billed: exactly the ambiguous submission.
        """
        cfg = self.config
        self.store.counters["accepted"] += 1
        if cfg.drop_reply_every and self.store.counters["accepted"] % cfg.drop_reply_every == 0:
            self.store.counters["dropped_replies"] += 1
            return "drop"
        if self.chance(cfg.lost_response_rate):
            self.store.counters["lost_responses"] += 1
            return "error"
        return None

    def image_fault(self) -> str | None:
        """The fault an accepted image request meets after its images were made and billed:
        ``"drop"`` (every ``image_drop_reply_every``-th, by default ``drop_reply_every``)
        or ``"error"`` (``lost_response_rate``)."""
        cfg, counters = self.config, self.store.counters
        counters["images_accepted"] += 1
        every = (
            cfg.drop_reply_every
            if cfg.image_drop_reply_every is None
            else cfg.image_drop_reply_every
        )
        if every and counters["images_accepted"] % every == 0:
            counters["dropped_replies"] += 1
            return "drop"
        if self.chance(cfg.lost_response_rate):
            counters["lost_responses"] += 1
            return "error"
        return None

    def replay(self, owner: str, idempotency_key: str | None) -> tuple[Task, str] | None:
        """The earlier task of a repeated Idempotency-Key, when the knob honours keys."""
        if idempotency_key is None or not self.config.honour_idempotency:
            return None
        return self.store.find_idempotent(owner, idempotency_key)

    def task_view(self, task: Task, base_url: str, *, status: str | None = None) -> dict[str, Any]:
        """The task JSON a poll or a webhook carries."""
        now = self.clock()
        status = status or task.status(now)
        metadata: dict[str, Any] = {"ratio": task.ratio, "resolution": task.resolution}
        if task.generate_audio:
            metadata["generate_audio"] = True
        view: dict[str, Any] = {
            "task_id": task.task_id,
            "status": status,
            "model": task.model,
            "seconds": str(task.seconds),
            "url": None,
            "format": "mp4",
            "metadata": metadata,
            "created_at": int(task.created_at),
        }
        if status == "succeeded":
            view["url"] = self.signed_url(base_url, f"videos/{task.task_id}.mp4")
        if status in ("succeeded", "failed"):
            view["completed_at"] = int(task.ready_at)
        if status == "failed":
            view["error"] = {
                "code": "generation_failed",
                "message": "the generation failed; failed tasks are not billed",
            }
        return view

    def webhook_body(self, task: Task, base_url: str, *, status: str) -> dict[str, Any]:
        """What a webhook carries, in the dialect the task was made in."""
        if task.dialect == "kinovi":
            url = self.signed_url(base_url, f"videos/{task.task_id}.mp4")
            return envelope(
                task,
                status=status,
                url=url if status == "succeeded" else None,
                now=self.clock(),
                factor=self.config.billed_factor,
            )
        return self.task_view(task, base_url, status=status)

    # Signed urls -----------------------------------------------------------------------------

    def _signature(self, resource: str, expires: str) -> str:
        mac = hmac.new(self._url_key, f"{resource}\n{expires}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    def signed_url(self, base_url: str, resource: str, *, prefix: str = "/_files/") -> str:
        """An url for ``resource`` (e.g. ``videos/task_x.mp4``) valid for ``url_ttl`` seconds."""
        expires = f"{self.clock() + self.config.url_ttl * self.config.time_scale:.3f}"
        query = urlencode({"expires": expires, "sig": self._signature(resource, expires)})
        return f"{base_url}{prefix}{resource}?{query}"

    def stale_input(self, urls: Iterable[str]) -> str | None:
        """Why the provider could not fetch one of a submission's media ``urls``: one of
        its own signed urls (a still's) that expired; None when it could fetch them all."""
        for url in urls:
            parts = urlsplit(url)
            query = parse_qs(parts.query)
            if "/_files/" not in parts.path or "sig" not in query:
                continue  # someone else's url, or an upload's (unsigned)
            resource = parts.path.split("/_files/", 1)[1].removeprefix("blob/")
            reason = self.check_signature(resource, query.get("expires", [""])[0],
                                          query["sig"][0])  # fmt: skip
            if reason is not None:
                return f"cannot fetch {parts.path}: {reason}"
        return None

    def check_signature(self, resource: str, expires: str | None, sig: str | None) -> str | None:
        """None when the url is genuine and unexpired, else the reason to refuse it."""
        if not expires or not sig:
            return "missing signature"
        if not hmac.compare_digest(self._signature(resource, expires), sig):
            return "bad signature"
        try:
            deadline = float(expires)
        except ValueError:
            return "bad signature"
        if self.clock() >= deadline:
            return "url expired; fetch the task again for a fresh url"
        return None
