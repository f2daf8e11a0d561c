"""The clip download's SSRF rules: every redirect rechecked, only global addresses, no query shown."""

from __future__ import annotations

import httpx
import pytest

from tests.unit.download.fakes import (
    GOOD,
    SECRET,
    Collected,
    assert_nothing_written,
    client_for,
    fetch,
    mp4_bytes,
)
from worker.errors import TransportFailure, UnsafeUrl
from worker.provider.download import MAX_REDIRECTS
from worker.provider.urlsafety import check_url, redact_url


def test_download_refuses_more_than_five_redirects(fake_dns: None, sink: Collected) -> None:
    client, seen = client_for(
        lambda request: httpx.Response(302, headers={"Location": "https://cdn.example.com/again"})
    )

    with pytest.raises(UnsafeUrl, match="redirects"):
        fetch(GOOD, client, sink)

    assert len(seen.urls) == MAX_REDIRECTS + 1
    assert_nothing_written(sink)


@pytest.mark.parametrize(
    "location",
    [
        "https://10.0.0.5/clip.mp4",
        "https://internal.example.com/clip.mp4",
        "https://metadata.example.com/latest/meta-data/",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::ffff:127.0.0.1]/clip.mp4",
        "https://split.example.com/clip.mp4",
        "http://cdn.example.com/clip.mp4",
    ],
)
def test_download_refuses_a_redirect_to_an_unsafe_url_without_requesting_it(
    fake_dns: None, sink: Collected, location: str
) -> None:
    client, seen = client_for(lambda request: httpx.Response(301, headers={"Location": location}))

    with pytest.raises(UnsafeUrl):
        fetch(GOOD, client, sink)

    assert seen.urls == [GOOD]
    assert_nothing_written(sink)


def test_redirects_are_rechecked_even_on_a_client_that_follows_redirects(
    fake_dns: None, sink: Collected
) -> None:
    client, seen = client_for(
        lambda request: httpx.Response(302, headers={"Location": "https://10.0.0.5/x"}),
        follow_redirects=True,
    )

    with pytest.raises(UnsafeUrl):
        fetch(GOOD, client, sink)

    assert seen.urls == [GOOD]


def test_download_refuses_http_unless_local_urls_are_allowed(
    fake_dns: None, sink: Collected
) -> None:
    client, seen = client_for(lambda request: httpx.Response(200, content=mp4_bytes()))

    with pytest.raises(UnsafeUrl, match="scheme"):
        fetch("http://cdn.example.com/clip.mp4", client, sink)

    assert seen.urls == []
    assert fetch("http://cdn.example.com/clip.mp4", client, sink, allow_local=True).size


def test_download_refuses_a_loopback_url_before_connecting(fake_dns: None, sink: Collected) -> None:
    client, seen = client_for(lambda request: httpx.Response(200, content=mp4_bytes()))

    with pytest.raises(UnsafeUrl, match="loopback"):
        fetch("https://127.0.0.1:8443/clip.mp4", client, sink)

    assert seen.urls == []
    assert_nothing_written(sink)


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("[::1]", "loopback"),
        ("localhost", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("[fd00::1]", "private"),
        ("169.254.169.254", "metadata"),
        ("169.254.1.1", "link-local"),
        ("[fe80::1]", "link-local"),
        ("[fec0::1]", "site-local"),
        ("224.0.0.1", "multicast"),
        ("[ff02::1]", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("[::]", "unspecified"),
        ("100.64.0.1", "CGNAT"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("[::ffff:a9fe:a9fe]", "metadata"),
        ("[2002:7f00:1::1]", "loopback"),
        ("[64:ff9b::a00:1]", "private"),
        ("2130706433", "loopback"),
        ("0x7f000001", "loopback"),
        ("127.1", "loopback"),
        ("0177.0.0.1", "loopback|malformed"),
    ],
)
def test_check_url_refuses_every_non_global_address_class(host: str, reason: str) -> None:
    with pytest.raises(UnsafeUrl, match=reason):
        check_url(f"https://{host}/clip.mp4?{SECRET}", allow_local=False)


@pytest.mark.parametrize(
    "url",
    [
        "https://93.184.216.34/clip.mp4",
        "https://[2606:4700:4700::1111]/clip.mp4",
        "https://cdn.example.com/clip.mp4",
        "https://mirror.example.com:8443/clip.mp4",
    ],
)
def test_check_url_accepts_https_to_global_addresses(fake_dns: None, url: str) -> None:
    check_url(url, allow_local=False)


def test_check_url_refuses_a_name_when_any_of_its_addresses_is_private(fake_dns: None) -> None:
    with pytest.raises(UnsafeUrl, match=r"192\.168\.1\.20"):
        check_url("https://split.example.com/clip.mp4", allow_local=False)


def test_check_url_reports_an_unresolvable_name_as_transient(fake_dns: None) -> None:
    with pytest.raises(TransportFailure, match="resolve"):
        check_url(f"https://nowhere.example.com/clip.mp4?{SECRET}", allow_local=False)


@pytest.mark.parametrize(
    "url",
    ["ftp://cdn.example.com/clip.mp4", "file:///etc/passwd", "https:///clip.mp4", "not a url"],
)
def test_check_url_refuses_other_schemes_and_missing_hosts_even_when_local_is_allowed(
    url: str,
) -> None:
    with pytest.raises(UnsafeUrl):
        check_url(url, allow_local=True)


def test_check_url_allows_http_and_loopback_for_local_development() -> None:
    check_url("http://127.0.0.1:8000/clip.mp4", allow_local=True)
    check_url("https://[::1]/clip.mp4", allow_local=True)


def test_check_url_refusals_do_not_show_the_query() -> None:
    with pytest.raises(UnsafeUrl) as caught:
        check_url(f"http://10.0.0.1/a/clip.mp4?{SECRET}#frag", allow_local=False)

    assert "s3cr3tsig" not in str(caught.value)
    assert "http://10.0.0.1/a/clip.mp4" in str(caught.value)


def test_redact_url_keeps_scheme_host_port_and_path_only() -> None:
    assert redact_url(f"https://user:pw@cdn.example.com:8443/a/b.mp4?{SECRET}#t=1") == (
        "https://cdn.example.com:8443/a/b.mp4"
    )
    assert redact_url("https://[::1]/x?y=1") == "https://[::1]/x"
    assert len(redact_url("https://h/" + "p" * 500)) < 120
    assert redact_url("https://[broken/x?sig=1") == "<unparseable url>"
