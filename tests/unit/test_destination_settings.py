import base64
import json
import re
import subprocess
import sys

import httpx
import pytest

from destination.keyring import KeyRing, KeyRingError, MailjetAccount
from destination.settings import (
    DestinationSettings,
    MissingAuthenticationKey,
    SettingsError,
    parse_authentication_key,
    parse_list_id,
    parse_settings,
    parse_settings_header,
)


def basic(username: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:".encode()).decode()


def settings_header(settings) -> str:
    return base64.b64encode(json.dumps(settings).encode()).decode()


def test_parse_settings_from_segment_headers():
    parsed = parse_settings(basic("auth-key-1"), settings_header({"apiKey": "auth-key-1", "listId": "42"}))
    assert parsed == DestinationSettings(api_key="auth-key-1", list_id=42)


def test_authentication_key_without_colon_is_tolerated():
    assert parse_authentication_key("Basic " + base64.b64encode(b"k").decode()) == "k"


def test_the_authentication_key_is_the_user_name_whatever_the_password():
    # Segment sends `key:`; a client sending a password too still names the key before the colon.
    assert parse_authentication_key("Basic " + base64.b64encode(b"auth-key-1:pw").decode()) == "auth-key-1"


@pytest.mark.parametrize("scheme", ["basic", "BASIC"])
def test_the_basic_scheme_matches_in_any_case(scheme):
    # RFC 9110 §11.1: "It uses a case-insensitive token to identify the authentication scheme".
    assert parse_authentication_key(basic("auth-key-1").replace("Basic", scheme)) == "auth-key-1"


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer abc", "Basic !!!not-base64", basic(""), "Basic " + base64.b64encode(b"\xff\xfe:").decode()],
)
def test_missing_or_unusable_authentication_key(authorization):
    with pytest.raises(MissingAuthenticationKey):
        parse_authentication_key(authorization)


def test_settings_header_absent_is_empty():
    assert parse_settings_header(None) == {}
    assert parse_settings_header("  ") == {}


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ("%%%not base64%%%", "not valid base64"),
        (base64.b64encode(b"{not json").decode(), "not base64 of JSON"),
        (base64.b64encode(b"\xff\xfe").decode(), "not base64 of JSON"),
        (settings_header(["listId", "1"]), "must be a JSON object"),
    ],
)
def test_bad_settings_header(header, error):
    with pytest.raises(SettingsError, match=error):
        parse_settings_header(header)


def test_missing_list_id_is_an_error():
    with pytest.raises(SettingsError, match="listId is required"):
        parse_settings(basic("k"), settings_header({"apiKey": "k"}))
    with pytest.raises(SettingsError, match="listId is required"):
        parse_settings(basic("k"), None)


@pytest.mark.parametrize(("value", "expected"), [("1", 1), (" 12 ", 12), (7, 7)])
def test_valid_list_id(value, expected):
    assert parse_list_id(value) == expected


@pytest.mark.parametrize("value", ["", "0", "-3", "abc", "1.5", "١٢", None, True, 1.0, 0, ["1"]])
def test_invalid_list_id(value):
    with pytest.raises(SettingsError, match="listId"):
        parse_list_id(value)


@pytest.mark.parametrize("value", ["1" * 5000, "9" * 20, str(2**63), 2**63])
def test_list_id_beyond_a_mailjet_id_is_a_settings_error_not_a_500(value):
    # 5,000 digits made int() raise a plain ValueError (Python's 4,300-digit limit): answered 500,
    # which Segment retries for 4 h. Mailjet ids are int64 (ListID: reference/mailjet.md §3).
    with pytest.raises(SettingsError, match="listId"):
        parse_list_id(value)


def test_list_id_with_leading_zeros_is_still_a_list_id():
    assert parse_list_id("0" * 30 + "42") == 42


def test_key_ring_from_json_and_lookup(tmp_path):
    path = tmp_path / "keyring.json"
    path.write_text(json.dumps({"accounts": {"auth-1": {"base_url": "https://api.mailjet.com/", "api_key": "pk", "secret_key": "sk"}}}))
    ring = KeyRing.from_file(path)
    assert ring.account_for("auth-1") == MailjetAccount("https://api.mailjet.com", "pk", "sk")
    assert ring.account_for("other") is None
    assert "sk" not in repr(ring.account_for("auth-1"))


@pytest.mark.parametrize(
    "data",
    [[], {"accounts": []}, {"accounts": {"a": {"base_url": "u", "api_key": "k"}}}, {"accounts": {"": {"base_url": "u", "api_key": "k", "secret_key": "s"}}}],
)
def test_bad_key_ring(data):
    with pytest.raises(KeyRingError):
        KeyRing.from_json(data)


@pytest.mark.parametrize(
    ("auth_key", "base_url", "api_key", "complaint"),
    [
        ("a", "ftp://x", "k", "is not an http(s) URL with a host"),
        ("a", "not a url", "k", "is not an http(s) URL with a host"),
        ("a", "http://127.0.0.1:99999", "k", "Port out of range"),
        ("a", "http://127.0.0.1:9/?x=1", "k", "must carry no query"),
        ("a", "http://u:p@127.0.0.1:9", "k", "nor user:password"),
        # Each made aiohttp's resolver raise UnicodeError at every identify, answered 500.
        ("a", "http://a..b:8702", "k", "host name labels must be 1 to 63 characters"),
        ("a", "http://" + "x" * 64 + ".example.com", "k", "host name labels must be 1 to 63 characters"),
        ("a:b", "http://127.0.0.1:9", "k", "the authentication key must not contain ':'"),
        ("a", "http://127.0.0.1:9", "k:1", "the api_key must not contain ':'"),
    ],
)
def test_a_key_ring_entry_that_could_never_work_is_refused_at_start(auth_key, base_url, api_key, complaint):
    # It started, then answered every identify 503 ("Mailjet unreachable"), which Segment retries for hours.
    with pytest.raises(KeyRingError, match=re.escape(complaint)):
        KeyRing.from_json({"accounts": {auth_key: {"base_url": base_url, "api_key": api_key, "secret_key": "s"}}})
    assert len(KeyRing.from_json({"accounts": {"a": {"base_url": "http://127.0.0.1:9/proxy/", "api_key": "k", "secret_key": "s"}}})) == 1


def test_unreadable_key_ring_file(tmp_path):
    with pytest.raises(KeyRingError, match="cannot read"):
        KeyRing.from_file(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("text", "explained"),
    [
        (b"[" * 5000 + b"]" * 5000, "nested more than 254 levels"),
        (b'{"listId": NaN}', "NaN is not valid JSON"),
    ],
)
def test_settings_header_that_is_not_json_is_refused(text: bytes, explained: str):
    with pytest.raises(SettingsError, match=explained):
        parse_settings_header(base64.b64encode(text).decode())


@pytest.mark.parametrize("option", [["--port", "99999"], ["--port", "-1"], ["--port", "http"], ["--log-level", "verbose"]])
def test_destination_command_refuses_a_bad_port_or_log_level(tmp_path, capsys, monkeypatch, option):
    # Port 99999 used to be served on 34463 (the OS keeps 16 bits) while 99999 was announced; an
    # unknown log level was a KeyError traceback from uvicorn. argparse refuses both with usage.
    import destination.__main__ as command

    def serve(*args, **kwargs):
        raise AssertionError(f"served with {kwargs}")

    monkeypatch.setattr(command.uvicorn, "Server", serve)
    main = command.main
    path = tmp_path / "keyring.json"
    path.write_text(json.dumps({"accounts": {"auth-1": {"base_url": "http://127.0.0.1:1", "api_key": "pk", "secret_key": "sk"}}}))
    with pytest.raises(SystemExit) as exit_info:
        main(["--keyring", str(path), *option])
    assert exit_info.value.code == 2
    assert option[0] in capsys.readouterr().err


def test_destination_command_serves_the_key_ring_it_was_given_on_the_port_it_announces(tmp_path):
    # With --port 0 it announced port 0, a URL nobody could reach; it announces the port the OS chose.
    path = tmp_path / "keyring.json"
    entry = {"base_url": "http://127.0.0.1:1", "api_key": "pk", "secret_key": "sk"}
    path.write_text(json.dumps({"accounts": {"auth-1": entry, "auth-2": entry}}))
    command = [sys.executable, "-m", "destination", "--keyring", str(path), "--port", "0", "--log-level", "WARNING"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        announced = process.stderr.readline()
        match = re.fullmatch(r"destination: 2 account\(s\), listening on (http://127\.0\.0\.1:(\d+)/)\n", announced)
        assert match is not None, announced
        assert int(match[2]) != 0
        assert httpx.get(match[1] + "health", timeout=10).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("content", [None, "{not json", '{"accounts": []}'])
def test_destination_command_refuses_a_key_ring_it_cannot_load(tmp_path, capsys, monkeypatch, content):
    import destination.__main__ as command

    def serve(*args, **kwargs):
        raise AssertionError(f"served with {kwargs}")

    monkeypatch.setattr(command.uvicorn, "Server", serve)
    path = tmp_path / "keyring.json"
    if content is not None:
        path.write_text(content)
    assert command.main(["--keyring", str(path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_a_settings_header_json_reads_only_through_its_fallback_keeps_its_numbers():
    # A lone surrogate escape sends the header to Python's json (orjson refuses it): its other
    # values, numbers with a fraction too, come back as they were written.
    header = base64.b64encode(b'{"listId": "7", "ratio": 0.25, "label": "\\ud800"}').decode()
    assert parse_settings_header(header) == {"listId": "7", "ratio": 0.25, "label": "\ufffd"}
