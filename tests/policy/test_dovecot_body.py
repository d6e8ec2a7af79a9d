import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailward.errors import ProtocolError
from mailward.policy.dovecot_body import AuthBody, body_from, decode_body

# A Dovecot 2.4 report body, as auth_policy_request_attributes sends it by default.
REPORT = (
    b'{"device_id":"","login":"bob","protocol":"imap","pwhash":"0757","remote":"192.0.2.1",'
    b'"session_id":"s1","tls":true,"success":false,"policy_reject":false,'
    b'"fail_type":"credentials"}'
)


def test_decodes_the_fields_mailward_reads_and_skips_the_rest() -> None:
    assert decode_body(REPORT) == AuthBody(
        remote="192.0.2.1",
        login="bob",
        protocol="imap",
        pwhash="0757",
        session_id="s1",
        fail_type="credentials",
        success=False,
        policy_reject=False,
    )


def test_null_counts_as_absent_and_a_repeated_key_keeps_its_last_value() -> None:
    assert decode_body(b'{"login":null,"remote":"x","remote":"y"}') == AuthBody(remote="y")
    assert decode_body(b"{}") == AuthBody()


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b'{"login":5}', "got `int` - at `$.login`"),
        (b'{"success":"yes"}', "got `str` - at `$.success`"),
        (b'{"success":null}', "got `null` - at `$.success`"),
        (b"[1,2]", "Expected `object`, got `array`"),
        (b"{not json", "body is not JSON"),
        (b'{"login":"\xff"}', "body is not JSON"),  # not UTF-8
        (b'{"login":"a"} trailing', "body is not JSON"),
        (b"", "body is not JSON"),
        (b'{"x":' + b"[" * 5000 + b"]" * 5000 + b"}", "body is not JSON"),  # nesting
    ],
)
def test_a_bad_body_is_a_protocol_error_that_says_what_and_where(raw: bytes, why: str) -> None:
    with pytest.raises(ProtocolError) as err:
        decode_body(raw)
    assert why in str(err.value)


def test_an_already_decoded_body_gets_the_same_checks() -> None:
    assert body_from(json.loads(REPORT)) == decode_body(REPORT)
    with pytest.raises(ProtocolError, match=r"\$\.pwhash"):
        body_from({"pwhash": []})
    with pytest.raises(ProtocolError):
        body_from("not an object")


@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_protocol_error(raw: bytes) -> None:
    try:
        body = decode_body(raw)
    except ProtocolError:
        return
    assert isinstance(body, AuthBody)


def test_the_fields_keep_the_order_the_request_builder_reads_them_in() -> None:
    # AuthRequest.from_body takes them by position from one astuple() call
    assert AuthBody.__struct_fields__ == (
        "remote",
        "login",
        "protocol",
        "pwhash",
        "session_id",
        "fail_type",
        "success",
        "policy_reject",
    )
