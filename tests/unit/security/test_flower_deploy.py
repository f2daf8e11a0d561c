"""The Procfile's Flower and compose's agree: loopback on the host, whatever runs them."""

from __future__ import annotations

import shlex

from tests.unit.test_deploy import compose, interpolate, procfile


def _flower_address(command: str | list[str], env: dict[str, str], *, compose_file: bool) -> str:
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    script = argv[2].replace("$$", "$") if compose_file else argv[2]
    words = shlex.split(interpolate(script, env).replace(";", " ; "))
    return next(w.split("=", 1)[1] for w in words if w.startswith("--address="))


def test_the_procfiles_flower_binds_the_loopback_by_default() -> None:
    command = procfile()["flower"]
    assert _flower_address(command, {}, compose_file=False) == "127.0.0.1"
    assert _flower_address(command, {"FLOWER_ADDRESS": "0.0.0.0"}, compose_file=False) == "0.0.0.0"


def test_compose_listens_inside_its_container_and_publishes_on_the_hosts_loopback() -> None:
    flower = compose()["services"]["flower"]
    address = flower["environment"]["FLOWER_ADDRESS"]
    assert (
        _flower_address(flower["command"], {"FLOWER_ADDRESS": address}, compose_file=True)
        == "0.0.0.0"
    )
    assert [interpolate(p, {}) for p in flower["ports"]] == ["127.0.0.1:5555:5555"]
