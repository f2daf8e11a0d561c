"""Every task name is written once: each names a registered task, routed where it belongs,
and every task the fleet registers has its name there."""

from __future__ import annotations

import tasks.batches
import tasks.render
import tasks.webhooks
from config import task_names as names
from config.celery import DELIVERY_QUEUE, DELIVERY_TASKS, QUEUE, STEP_TIME_LIMITS
from worker.infra.celery_app import app

MODULES = (tasks.render, tasks.batches, tasks.webhooks)  # what a worker includes


def _registered() -> set[str]:
    return {name for name in app.tasks if name.startswith("relaydance.")}


def test_every_name_is_a_registered_task_and_every_registered_task_has_a_name() -> None:
    assert MODULES
    assert _registered() == set(names.ALL)
    assert set(names.STEP_TASKS.values()) <= names.ALL


def test_every_registered_task_is_routed_to_its_queue() -> None:
    router = app.amqp.router
    for name in _registered():
        queue = router.route({}, name)["queue"].name
        assert queue == (DELIVERY_QUEUE if name in DELIVERY_TASKS else QUEUE), name


def test_routes_and_time_limits_name_only_registered_tasks() -> None:
    assert set(DELIVERY_TASKS) <= _registered()
    assert set(STEP_TIME_LIMITS) <= _registered()
    assert set(app.conf.task_routes) <= _registered()
    assert set(app.conf.task_annotations) <= _registered()
