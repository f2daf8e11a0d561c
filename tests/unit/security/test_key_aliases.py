"""A configured key is never taken as an alias, whatever it looks like (issue: key-like aliases).

The shape rules (``sk-`` prefixes, long random runs) miss a key of 32 characters or
fewer whose parts are each short: it looks like a name. Any alias equal to a configured
key is refused by comparing it with every key the process holds, and a configuration
that names an alias with the text of a key is refused at start; neither answer repeats
the key.
"""

from __future__ import annotations

import json

import pytest

from config.settings import SettingsError, load_settings
from worker.render.aliases import ALIAS, alias_problem, looks_like_key

NAME_SHAPED_KEYS = ["kv7.ab3-x9.zq-m2", "studio-main", "a1", "Prod_Key.2024"]


@pytest.mark.parametrize("key", NAME_SHAPED_KEYS)
def test_a_configured_key_is_refused_as_an_alias_whatever_its_shape(key: str) -> None:
    assert ALIAS.match(key) and not looks_like_key(key)  # the shape rules let it through
    settings = load_settings(api_keys=json.dumps({"tenant-b": key}), api_key="sk-default-1")
    problem = alias_problem(key, settings.keys())
    assert problem is not None and "configured API keys" in problem
    assert key not in problem
    assert alias_problem(f" {key}\n", settings.keys()) is not None  # pasted with whitespace
    assert alias_problem("tenant-b", settings.keys()) is None  # the alias itself still works


def test_an_alias_named_with_the_text_of_a_key_is_refused_at_start() -> None:
    keys = {"studio-main": "sk-live-0123456789abcdef", "tenant-b": "studio-main"}
    with pytest.raises(SettingsError) as caught:
        load_settings(api_keys=json.dumps(keys))
    assert "RELAYDANCE_API_KEYS: an alias is the same text as a configured key" in str(caught.value)
    assert "sk-live" not in str(caught.value)
