"""A storyboard's plan: an image line before the lines made from its still, a clip's identity
including its stills, a budget that takes a still and its clips whole or not at all, and a
dry run that prints every refusal. Line checks are in tests/unit/test_batch_storyboard.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.batch_requests import jsonl, req
from tests.unit.test_batch_storyboard import IMAGE, _keys, parse, still
from worker.batch.budget import Claim, Ledger, chain_checks, to_micros
from worker.batch.plan import plan_batch
from worker.batch.storyboard import topological
from worker.cli.batch import batch
from worker.render.pricing import load_prices

__all__ = ["_keys"]  # the Kinovi and RelayDance aliases, for every test here

PRICES = load_prices(None, image_default=0.25)  # a FAST 5 s clip is $0.70


def test_an_image_line_is_planned_before_the_lines_that_use_its_still() -> None:
    parsed = parse([req("first", refs=["k1"]), req("plain"), still("k1"), req("last")])
    plan = plan_batch(parsed, prices=PRICES)
    # The still first, its clip next (a chain stays together, where its first line is).
    assert [item.lines for item in plan.items] == [(3,), (1,), (2,), (4,)]
    assert [item.index for item in plan.items] == [0, 1, 2, 3]
    assert plan.items[1].refs == (0,) and plan.items[0].is_image
    assert plan.line_items == [(1, 1), (2, 2), (3, 0), (4, 3)]  # still by line, for reports


def test_without_refs_the_plan_keeps_line_order() -> None:
    plan = plan_batch(parse([req("b"), req("a"), req("b"), req("c")]), prices=PRICES)
    assert [item.lines for item in plan.items] == [(1, 3), (2,), (4,)]
    assert topological({3: (), 1: (), 2: ()}) == [1, 2, 3]
    assert topological({1: (3,), 2: (), 3: ()}) == [3, 1, 2]
    assert topological({1: (4,), 2: (5,), 3: (4,), 4: (), 5: ()}) == [4, 1, 3, 5, 2]
    with pytest.raises(ValueError, match="cycle"):
        topological({1: (2,), 2: (1,)})


def test_a_clip_is_one_item_per_still_it_is_made_from() -> None:
    parsed = parse([
        req("same", refs=["k1"]), req("same", refs=["k2"]), req("same", refs=["k1"]),
        still("k1", prompt="a fox"), still("k2", prompt="a hare"), req("same"),
    ])  # fmt: skip
    plan = plan_batch(parsed, prices=PRICES)
    clips = sorted(item.lines for item in plan.items if not item.is_image)
    assert clips == [(1, 3), (2,), (6,)]
    assert len({item.fingerprint for item in plan.items}) == len(plan.items)
    same_stills = plan_batch(parse([req("same", refs=["k1"]), still("k1"),
                                    still("k2", prompt="keyframe k1")]),
                             prices=PRICES)  # fmt: skip
    assert len(same_stills.items) == 2  # one still (k1 and k2 are the same request), one clip


def test_an_image_line_costs_the_image_default_per_image() -> None:
    plan = plan_batch(parse([still("k1"), still("k2", n=3)]), prices=PRICES)
    assert [item.cost_micros for item in plan.items] == [to_micros(0.25), to_micros(0.75)]
    priced = load_prices({IMAGE: 0.05}, image_default=0.25)
    assert plan_batch(parse([still("k1")]), prices=priced).items[0].cost_micros == 50_000


def test_a_budget_takes_a_still_and_its_clips_whole_or_not_at_all() -> None:
    parsed = parse([
        req("alone"),                                       # $0.70
        still("k1"), req("a", refs=["k1"]), req("b", refs=["k1"]),  # $0.25 + 2 x $0.70
        req("after"),                                       # $0.70
    ])  # fmt: skip
    plan = plan_batch(parsed, prices=PRICES)
    assert plan.chains() == [(0,), (1, 2, 3), (4,)]
    assert plan.total_micros == to_micros(0.70 * 4 + 0.25)

    def admitted(usd: float) -> list[tuple[int, ...]]:
        return [item.lines for item in plan.fitting(to_micros(usd))]

    assert admitted(2.30) == [(1,)]  # the chain needs $1.65 more: no still without its clips
    assert admitted(2.35) == [(1,), (2,), (3,), (4,)]
    assert admitted(3.05) == [(1,), (2,), (3,), (4,), (5,)]
    assert admitted(0.69) == []


def test_a_dry_run_prints_every_storyboard_refusal_and_exits_2(tmp_path: Path) -> None:
    file = tmp_path / "board.jsonl"
    file.write_text(jsonl([
        still("k1"), req("a", refs=["k1"]), req("b", refs=["nope"]),
        {"model": "happyhorse-1.0-t2v", "prompt": "c", "seconds": 5, "refs": ["k1"]},
    ]))  # fmt: skip
    result = CliRunner().invoke(batch, ["submit", str(file), "--dry-run"])
    assert result.exit_code == 2, result.output
    assert "4 lines: 2 valid (2 distinct requests, 0 duplicates), 2 invalid" in result.stdout
    assert "line 3: refs: 'nope' is no line's id" in result.stderr
    assert "line 4: refs: happyhorse-1.0-t2v takes no reference images" in result.stderr


def test_a_dry_run_of_a_valid_storyboard_prices_its_chains(tmp_path: Path) -> None:
    file = tmp_path / "board.jsonl"
    file.write_text(jsonl([req("a", refs=["k1"]), still("k1"), req("plain")]))
    result = CliRunner().invoke(batch, ["submit", str(file), "--dry-run", "--budget", "0.75"])
    assert result.exit_code == 0, result.output
    assert "budget $0.75: 0 requests ($0.00) would be submitted, 3 skipped_budget" in (
        result.stdout
    )


def claims_of(plan_costs: list[int]) -> list[Claim]:
    return [Claim(index, "", f"job_{index}", cost) for index, cost in enumerate(plan_costs)]


@pytest.mark.parametrize(
    ("budget", "expected", "reserved"),
    [
        (0.90, ["skipped", "skipped", "skipped"], 0.0),  # no still made for a refused clip
        (0.95, ["ok", "ok", "skipped"], 0.95),
        (1.65, ["ok", "ok", "ok"], 1.65),
    ],
)
def test_the_ledger_reserves_a_chain_whole_or_skips_it(
    budget: float, expected: list[str], reserved: float
) -> None:
    from tests.contracts.harness import fake_backend

    client = fake_backend()
    ledger, meta, jobs = Ledger(client), "rd:test:batch", "rd:test:jobs"
    client.hset(meta, "budget_micros", to_micros(budget))
    plan = plan_batch(parse([still("k1"), req("a", refs=["k1"]), req("plain")]), prices=PRICES)
    chain_of = {index: chain[0] for chain in plan.chains() for index in chain}
    claims = chain_checks(claims_of([item.cost_micros for item in plan.items]), chain_of)
    assert [claim.room_micros for claim in claims] == [950_000, 700_000, 700_000]
    assert ledger.claim(meta, jobs, claims) == expected
    assert int(client.hget(meta, "reserved_micros") or 0) == to_micros(reserved)


def test_a_claim_without_a_chain_is_checked_for_its_own_cost_as_before() -> None:
    claims = claims_of([1, 2, 3])
    assert chain_checks(claims, {}) == claims
    assert chain_checks(claims, {0: 0, 2: 2}) == claims  # chains of one
    assert [c.room_micros for c in chain_checks(claims, {1: 1, 2: 1})] == [1, 5, 3]
