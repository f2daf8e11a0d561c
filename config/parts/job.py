"""The job part of the settings: polling, the sweeper, task limits and how long records live."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, Field, model_validator

__all__ = ["JobSettings"]


class JobSettings(BaseModel):
    """How a job moves: when it polls, when the sweeper takes it over, how long it is kept."""

    poll_first_delay: float | None = Field(
        None, ge=0, description="First poll delay in seconds; unset means learned per model."
    )
    poll_interval_min: float = Field(2.0, gt=0, description="Shortest interval between polls.")
    poll_interval_max: float = Field(30.0, gt=0, description="Longest interval between polls.")
    poll_deadline_seconds: float = Field(
        3600.0, gt=0, description="A job not finished remotely this long after submit fails."
    )
    sweep_interval_seconds: float = Field(20.0, gt=0, description="How often the sweeper runs.")
    sweep_grace_seconds: float = Field(
        20.0, ge=0, description="A step this long overdue is resumed by the sweeper."
    )
    step_grace_seconds: float = Field(
        90.0,
        gt=0,
        description="How long a claimed step (after its provider call's deadline) may run "
        "before the sweeper takes the job over.",
    )
    job_retention_seconds: int = Field(
        7 * 24 * 3600, gt=0, description="Finished jobs expire after this long."
    )
    input_url_trust_seconds: float = Field(
        1800.0,
        ge=1,
        description="How long after a url was handed out (a storyboard still's by the "
        "provider, a file's by an upload) a clip still sends it; a clip that waited longer "
        "uploads its inputs again (the still's stored file) just before its POST. Keep it "
        "below the urls' real lifetime by the time the provider may take to fetch them.",
    )
    task_soft_time_limit: float = Field(
        120.0, gt=0, description="Soft time limit of every task except download, s."
    )
    max_transient_retries: int = Field(
        8,
        ge=0,
        description="Retries of a step after transient errors before it fails, while the "
        "provider answers other calls well; during an outage the job waits instead.",
    )
    time_scale: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Multiplies the catalogue's expected generation times (first-poll "
        "priors), to run a simulation on a faster clock; 1 in production.",
    )

    @model_validator(mode="after")
    def _check_poll_intervals(self) -> Self:
        if self.poll_interval_min > self.poll_interval_max:
            raise ValueError(
                "RELAYDANCE_POLL_INTERVAL_MIN must not exceed RELAYDANCE_POLL_INTERVAL_MAX"
            )
        return self
