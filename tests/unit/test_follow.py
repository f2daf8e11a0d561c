"""The one wait-until-final loop and the one progress display of ``render``/``batch --wait``."""

from __future__ import annotations

import pytest

from worker.cli import follow
from worker.cli.follow import Progress
from worker.infra.waiting import wait_until_final


def test_the_loop_reports_each_change_once_and_returns_the_final_value() -> None:
    values = iter([1, 1, 2, 2, 3])
    seen: list[int] = []
    last = wait_until_final(
        lambda: next(values), lambda v: v == 3, timeout=5, interval=0,
        on_progress=seen.append, progress_of=lambda v: v, timeout_message=str,
    )  # fmt: skip
    assert (last, seen) == (3, [1, 2, 3])


def test_without_a_marker_every_read_is_reported() -> None:
    values = iter([1, 1, 2])
    seen: list[int] = []
    wait_until_final(lambda: next(values), lambda v: v == 2, timeout=5, interval=0,
                     on_progress=seen.append, timeout_message=str)  # fmt: skip
    assert seen == [1, 1, 2]


def test_the_loop_times_out_naming_the_last_value() -> None:
    with pytest.raises(TimeoutError, match="still 7"):
        wait_until_final(lambda: 7, lambda v: False, timeout=0, interval=0,
                         timeout_message=lambda v: f"still {v}")  # fmt: skip


def test_off_a_terminal_a_line_is_printed_when_it_moves_not_on_each_read(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    monkeypatch.setattr(follow.time, "monotonic", lambda: clock[0])
    progress = Progress(quiet=False)
    assert not progress.live  # pytest's stderr is no terminal
    progress.show("a 1", moved=1)
    progress.show("a 1 later", moved=1)  # nothing moved, too soon: not printed
    progress.show("b 2", moved=2)
    clock[0] += follow.QUIET_EVERY
    progress.show("b 2 still", moved=2)  # nothing moved, but a while passed: printed
    assert capsys.readouterr().err.splitlines() == ["a 1", "b 2", "b 2 still"]


def test_json_output_shows_no_progress_and_a_timeout_is_said_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    quiet = Progress(quiet=True)
    quiet.show("a", moved=1)

    def too_slow() -> int:
        raise TimeoutError("job rdj_1 still polling after 5s")

    assert Progress(quiet=False).follow(too_slow) is None
    assert capsys.readouterr().err == "job rdj_1 still polling after 5s\n"
