"""Flower's login guard, in-process: a login given on the command line passes and keeps the
columns asked for, and the guard stays out of every process that is not Flower.

Flower started for real, bare and by the Procfile, is in
tests/integration/test_flower_guard.py.
"""

from __future__ import annotations

from types import SimpleNamespace

from worker.infra.flower_guard import FLOWER_COLUMNS, check_flower_options, launching_flower


def test_a_login_on_the_command_line_is_accepted_and_own_columns_are_kept() -> None:
    options = SimpleNamespace(basic_auth=["ops:pw"], auth="", tasks_columns="name,uuid")
    check_flower_options(options)
    assert options.tasks_columns == "name,uuid"
    defaults = SimpleNamespace(
        basic_auth=["ops:pw"], auth="", tasks_columns="name,uuid,state,received,runtime,worker"
    )
    check_flower_options(defaults)
    assert defaults.tasks_columns == FLOWER_COLUMNS


def test_the_guard_stays_out_of_every_other_process() -> None:
    assert not launching_flower()  # pytest imported the app: no Flower, no guard
