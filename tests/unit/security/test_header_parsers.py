"""Each header parser of the jobs page and the receiver, on the inputs that used to be 500s.

The fuzz test (tests/integration/security/test_header_fuzz.py) drives the whole app with
generated requests; these rows pin the cases found, at the parser, with the answer each
must give: 416 for a ``Range`` the clip cannot serve (malformed included), 400 for any
other malformed header, never an exception.
"""

from __future__ import annotations

import base64

import pytest

from worker.web.bodies import MalformedLength, declared_length
from worker.web.jobs_page.auth import Credentials, MalformedHeader
from worker.web.jobs_page.http import UiRequest
from worker.web.jobs_page.media import parse_range
from worker.web.jobs_page.signin import same_origin

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "answer"),
    [
        ("bytes=" + "9" * 5000 + "-", "unsatisfiable"),  # int() refuses 5,000 digits: was a 500
        ("bytes=0-" + "9" * 5000, (0, SIZE - 1)),
        ("bytes=-" + "9" * 5000, (0, SIZE - 1)),
        ("bytes=²-", "unsatisfiable"),  # str.isdigit() says yes, int() says no
        ("bytes=\u0663-", "unsatisfiable"),  # an Arabic-Indic digit: \d matched it
        ("bytes=abc", "unsatisfiable"),
        ("items=0-5", "unsatisfiable"),
        ("bytes=-", "unsatisfiable"),
        ("bytes=1-2,", "unsatisfiable"),
        ("bytes=5-3", "unsatisfiable"),
        ("bytes=0-1,4-5", None),  # several ranges: answered whole
        ("", None),
        ("bytes = 10 - 19", (10, 19)),
        ("BYTES=990-", (990, SIZE - 1)),
    ],
)
def test_a_range_header_parses_or_is_unsatisfiable_never_an_error(
    header: str, answer: object
) -> None:
    assert parse_range(header, SIZE) == answer


@pytest.mark.parametrize("value", ["²", "12³", "-1", "1e3", "0x10", "12 34", "\u0663"])
def test_a_content_length_that_is_not_decimal_digits_is_malformed(value: str) -> None:
    with pytest.raises(MalformedLength):
        declared_length(value)


def test_a_content_length_of_thousands_of_digits_is_over_every_limit() -> None:
    assert declared_length("9" * 5000) == 10**18
    assert declared_length(" 42 ") == 42 and declared_length(None) is None


@pytest.mark.parametrize(
    "value",
    ["Basic é", "Basic !!!!", "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
     "Basic " + base64.b64encode(b"no-colon").decode(), "Basic"],
)  # fmt: skip
def test_malformed_basic_credentials_are_a_malformed_header(value: str) -> None:
    with pytest.raises(MalformedHeader) as caught:
        Credentials(user="ops", password="x" * 40).header_attempt(value)
    assert caught.value.header == "Authorization"


@pytest.mark.parametrize("origin", ["http://[::1", "http://[zz]", "https://[1:2:3"])
def test_an_origin_that_does_not_parse_is_a_malformed_header(origin: str) -> None:
    request = UiRequest(method="POST", path="/login", root="/ui",
                        headers={"origin": origin, "host": "testserver"})  # fmt: skip
    with pytest.raises(MalformedHeader):
        same_origin(request)
