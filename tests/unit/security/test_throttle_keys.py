"""Whom the sign-in throttle counts: one IPv4 address, or one IPv6 /64 (a host holds all of it)."""

from __future__ import annotations

import pytest

from worker.web.jobs_page.sessions import client_group


@pytest.mark.parametrize(
    ("address", "group"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:2::/64"),  # the same host, rotating
        ("::ffff:203.0.113.9", "203.0.113.9"),  # IPv4-mapped is the IPv4 client
        ("not an address", "unknown"),
        (None, "unknown"),
    ],
)
def test_failed_sign_ins_are_counted_per_address_and_per_ipv6_64(
    address: str | None, group: str
) -> None:
    assert client_group(address) == group
