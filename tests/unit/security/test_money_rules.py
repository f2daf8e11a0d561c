"""Money rules that need no service: who may be declared idempotent, and a batch line's
money whatever its submissions did. Each row would fail without its guard."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.settings import SettingsError, load_settings
from worker.batch.budget import settlement
from worker.job.record import Billing

KINOVI_ROUTE = {"key": "kin-security-key", "provider": "kinovi"}


def test_a_kinovi_key_declared_idempotent_is_refused_naming_the_alias_and_the_fix() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(api_keys=json.dumps({"kin": {**KINOVI_ROUTE, "idempotent": True}}))
    message = str(caught.value)
    assert "'kin'" in message and "kinovi documents no Idempotency-Key" in message
    assert 'remove "idempotent"' in message


def test_the_global_declaration_is_refused_while_kinovi_is_the_default_provider() -> None:
    with pytest.raises(SettingsError, match="RELAYDANCE_PROVIDER_IDEMPOTENT cannot be true"):
        load_settings(provider_idempotent=True, dialect="kinovi", api_key="k")


def test_the_global_declaration_applies_to_relaydance_keys_only() -> None:
    settings = load_settings(
        provider_idempotent=True,
        api_keys=json.dumps({"studio": "sk-studio", "kin": KINOVI_ROUTE,
                             "careful": {"key": "sk-careful", "idempotent": False}}),
    )  # fmt: skip
    assert settings.idempotent_for("studio") is True
    assert settings.idempotent_for("kin") is False
    assert settings.idempotent_for("careful") is False  # a key may deny it


COST = 1_000_000  # $1.00 per submission, in micro-dollars


@given(
    billing=st.sampled_from(list(Billing)),
    orphans=st.integers(min_value=0, max_value=4),
    duplicates=st.integers(min_value=0, max_value=6),
    actual=st.one_of(st.none(), st.integers(min_value=0, max_value=COST)),
)
def test_a_lines_billed_and_possibly_billed_money_never_exceeds_what_it_reserved(
    billing: Billing, orphans: int, duplicates: int, actual: int | None
) -> None:
    money = settlement(COST, billing.value, orphans, actual_micros=actual, duplicates=duplicates)
    reserved = COST * (1 + orphans)  # the line's, and one per resubmission
    assert money.release >= 0
    assert money.spent + money.unknown + money.release == reserved


def test_a_resubmitted_done_job_keeps_its_orphan_as_possibly_billed_and_is_not_trued_down() -> None:
    # Kinovi said the job's own task cost $0.70; its first submission may have cost $1.
    money = settlement(COST, "billed", 1, actual_micros=700_000)
    assert (money.spent, money.unknown, money.release) == (700_000, COST, 300_000)


def test_a_confirmed_second_billed_task_enters_the_spend() -> None:
    money = settlement(COST, "billed", 1, duplicates=1)
    assert (money.spent, money.unknown, money.release) == (2 * COST, 0, 0)
