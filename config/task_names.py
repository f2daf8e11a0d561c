"""The name of every Celery task the fleet registers, written once.

Tasks are sent by name (the engine never imports the tasks package), so a name lives
here and is imported by whoever registers, sends or routes it: a rename is one edit, and
a test checks that every name here is registered and routed.
"""

from __future__ import annotations

__all__ = [
    "ALL",
    "BATCH_JOB_DONE",
    "BATCH_RUN",
    "CONFIRM_TASK",
    "DOWNLOAD",
    "FINISH",
    "GRANT",
    "NOTIFY",
    "POLL",
    "PREPARE",
    "RESUME",
    "RESUME_MANY",
    "STEP_TASKS",
    "SUBMIT",
    "SWEEP",
    "WEBHOOK",
]

# The steps of a job, in the order of the state machine's plan (worker/job/states.py).
PREPARE = "relaydance.prepare"
SUBMIT = "relaydance.submit"
POLL = "relaydance.poll"
DOWNLOAD = "relaydance.download"
STEP_TASKS = {"prepare": PREPARE, "submit": SUBMIT, "poll": POLL, "download": DOWNLOAD}

CONFIRM_TASK = "relaydance.confirm_task"  # a recorded task id made durable on the replicas
WEBHOOK = "relaydance.webhook"  # a delivered webhook, verified by a re-fetch
RESUME = "relaydance.resume"  # one job moved on from its record
RESUME_MANY = "relaydance.resume_many"  # a batch's chunk of jobs moved on
GRANT = "relaydance.grant"  # free slots of a key handed to its line
NOTIFY = "relaydance.notify"  # a final job's on_done sent from a worker
SWEEP = "relaydance.sweep"  # messages an earlier release's beat queued
BATCH_JOB_DONE = "relaydance.batch_job_done"
BATCH_RUN = "relaydance.batch_run"
# Kept for one release: messages an earlier release queued under it still move their job.
FINISH = "relaydance.finish"

ALL = frozenset({
    *STEP_TASKS.values(), CONFIRM_TASK, WEBHOOK, RESUME, RESUME_MANY, GRANT, NOTIFY, SWEEP,
    BATCH_JOB_DONE, BATCH_RUN, FINISH,
})  # fmt: skip
