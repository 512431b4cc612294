"""What the bundle carries across a restart on one --data-dir, with every port 0 (each start gets new ones).

Each test starts a `BackgroundBundle` on a data dir, stops it, and starts another on the same dir.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.bundle import BUNDLE_STATE_FILE, BackgroundBundle, Bundle, remembered_auth_key
from emulator.common.clock import EARLIEST, LATEST, iso, parse_iso
from emulator.config import BundleConfig

WAIT_SECONDS = 15
SEND = {"Messages": [{"From": {"Email": "shop@example.com"}, "To": [{"Email": "ada@example.com"}],
                      "Subject": "Hi", "TextPart": "Hello"}]}


REMEMBERED = object()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., dict[str, Any]]]:
    """`start(**config)`: a bundle on the test's data dir; starting again stops the one before.
    `auth_key=REMEMBERED` starts with the key bundle.json holds then, as `segjet up` without --auth-key."""
    running: list[BackgroundBundle] = []

    def start_bundle(**config: Any) -> dict[str, Any]:
        if running:
            running.pop().stop()
        if config.get("auth_key") is REMEMBERED:
            config["auth_key"] = remembered_auth_key(str(tmp_path / "data"))
        bundle = BackgroundBundle(BundleConfig(segment_port=0, mailjet_port=0, destination_port=0,
                                               data_dir=str(tmp_path / "data"), **config))
        running.append(bundle)
        return bundle.start()

    yield start_bundle
    for bundle in running:
        bundle.stop()


def call(method: str, url: str, body: Any = None, auth: tuple[str, str] | None = None) -> Any:
    answer = httpx.request(method, url, json=body, auth=auth, timeout=WAIT_SECONDS)
    assert answer.is_success, answer.text
    return answer.json()


def wait_for(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return found


def forward_states(info: dict[str, Any]) -> list[str]:
    records = call("GET", f"{info['mailjet_url']}/_emulator/email-events")["email_events"]
    return [record["segment"]["state"] for record in records]


def send_email(info: dict[str, Any]) -> None:
    call("POST", f"{info['mailjet_url']}/v3.1/send", SEND, auth=(info["mailjet_api_key"], info["mailjet_secret_key"]))


def test_email_events_follow_the_bundles_segment_to_its_new_port(start: Callable[..., dict[str, Any]]) -> None:
    # The App Connections segmentUrl was stored: after a restart on new ports, waiting and new email
    # events went to the old Segment port and were retried forever ("Cannot connect to host").
    first = start()
    connection = {"writeKey": first["write_key"], "sendEvents": True}
    call("PUT", f"{first['mailjet_url']}/_emulator/app-connections/segment", connection)
    call("POST", f"{first['segment_url']}/_emulator/faults", {"path": "/v1/batch", "status": 500})
    send_email(first)
    wait_for("the forward to wait for its retry", lambda: forward_states(first) == ["retrying"])

    second = start()
    assert second["segment_url"] != first["segment_url"]
    connection = call("GET", f"{second['mailjet_url']}/_emulator/app-connections/segment")
    assert connection["segmentUrl"] == second["segment_url"]
    send_email(second)  # a new event, queued behind the batch waiting for its retry
    call("POST", f"{second['segment_url']}/_emulator/clock", {"advance": "1m"})
    wait_for("both forwards delivered", lambda: forward_states(second) == ["delivered", "delivered"])
    tracked = call("GET", f"{second['segment_url']}/_emulator/events?type=track")["events"]
    assert len(tracked) == 2


@pytest.mark.parametrize(("given", "kept"), [("http://127.0.0.1:9/segment", True), ("bundle's own", False)])
def test_only_a_segment_url_given_by_a_user_is_kept_across_restarts(
    start: Callable[..., dict[str, Any]], given: str, kept: bool
) -> None:
    first = start()
    # The dashboard sends back the URL it shows: the bundle's own, which keeps following the bundle.
    url = first["segment_url"] if given == "bundle's own" else given
    call("PUT", f"{first['mailjet_url']}/_emulator/app-connections/segment", {"segmentUrl": url})
    second = start()
    connection = call("GET", f"{second['mailjet_url']}/_emulator/app-connections/segment")
    assert connection["segmentUrl"] == (given if kept else second["segment_url"])


def engage_identifies(info: dict[str, Any]) -> list[dict[str, Any]]:
    return call("GET", f"{info['segment_url']}/_emulator/events?source=Engage")["events"]


def test_a_restart_keeps_the_due_time_of_the_scheduled_engage_sync(start: Callable[..., dict[str, Any]]) -> None:
    # The scheduler set the next sync to start + interval: a restart 1 min before it was due put it
    # off by the whole interval (2 h).
    first = start()
    segment = first["segment_url"]
    call("POST", f"{segment}/_emulator/engage/audiences", {"name": "Pro", "rule": {"trait": "plan", "equals": "pro"}})
    identify = {"userId": "u1", "traits": {"email": "ada@example.com", "plan": "pro"}}
    call("POST", f"{segment}/v1/identify", identify, auth=(first["write_key"], ""))
    call("POST", f"{segment}/_emulator/clock", {"advance": "119m"})
    assert engage_identifies(first) == []

    second = start()
    call("POST", f"{second['segment_url']}/_emulator/clock", {"advance": "2m"})
    assert [event["userId"] for event in engage_identifies(second)] == ["u1"]


def test_a_clock_set_at_its_upper_limit_does_not_stop_the_next_start(
    start: Callable[..., dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    # The clock ran on past its limit while the bundle was stopped: the start failed with "the clock
    # must stay between ..." until bundle.json was edited by hand.
    first = start()
    call("POST", f"{first['segment_url']}/_emulator/clock", {"set": iso(LATEST)})
    time.sleep(0.01)
    with caplog.at_level(logging.WARNING, logger="segjet.bundle"):
        second = start()
    now = parse_iso(call("GET", f"{second['segment_url']}/_emulator/clock")["now"])
    assert LATEST <= now < LATEST + timedelta(seconds=WAIT_SECONDS)
    assert "out of range" in caplog.text


@pytest.mark.parametrize(("offset_seconds", "moment"), [(1e30, LATEST), (-1e30, EARLIEST), (2.3e11, LATEST)])
def test_a_saved_clock_offset_out_of_range_starts_the_clock_at_the_limit(
    tmp_path: Path, offset_seconds: float, moment: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    # Written by hand (or left by an older version): anything that is a number starts the bundle.
    (tmp_path / BUNDLE_STATE_FILE).write_text(json.dumps({"clock_offset_seconds": offset_seconds}), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="segjet.bundle"):
        clock = Bundle(BundleConfig(data_dir=str(tmp_path))).clock
    assert moment <= clock.now() < moment + timedelta(seconds=WAIT_SECONDS)
    # With the warning README "Persistence" promises: an offset beyond datetime's range (1e30) started
    # the clock at the limit silently.
    assert "out of range" in caplog.text
    saved = json.loads((tmp_path / BUNDLE_STATE_FILE).read_text(encoding="utf-8"))["clock_offset_seconds"]
    assert abs(saved - (moment - datetime.now(timezone.utc)).total_seconds()) < WAIT_SECONDS


def test_a_data_dir_that_cannot_be_made_names_the_flag(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match=f"--data-dir {blocker}/data: "):
        Bundle(BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, data_dir=str(blocker / "data")))


def test_a_second_bundle_on_the_same_data_dir_is_refused_and_the_first_keeps_it(tmp_path: Path) -> None:
    # Both used to start, and each wrote over what the other had answered 2xx for.
    config = BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, data_dir=str(tmp_path))
    first = BackgroundBundle(config)
    first.start()
    try:
        with pytest.raises(OSError, match="is in use by another segjet"):
            Bundle(config)
    finally:
        first.stop()
    second = BackgroundBundle(config)  # released when the first stopped
    second.start()
    second.stop()


def test_a_port_in_use_names_the_server_and_its_flag(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        bundle = BackgroundBundle(BundleConfig(segment_port=0, mailjet_port=port, destination_port=0))
        with pytest.raises(OSError, match=f"the fake Mailjet cannot listen on 127.0.0.1:{port}.*--mailjet-port"):
            bundle.start()
        bundle.stop()
    finally:
        taken.close()


def test_a_bundle_starts_once(tmp_path: Path) -> None:
    # Started again after a stop, it answered with URLs, and its second stop failed (EBADF from the
    # first run's closed sockets) with tasks left pending; running, a second start replaced its thread.
    bundle = BackgroundBundle(BundleConfig(segment_port=0, mailjet_port=0, destination_port=0))
    with bundle:
        with pytest.raises(RuntimeError, match="starts once"):
            bundle.start()
        call("GET", f"{bundle.bundle.info()['segment_url']}/_emulator/health")  # the running one is untouched
    with pytest.raises(RuntimeError, match="starts once"):
        bundle.start()
    bundle.stop()  # nothing left to stop


def contact_of(info: dict[str, Any], email: str) -> dict[str, Any] | None:
    answer = httpx.get(f"{info['mailjet_url']}/v3/REST/contact/{email}", auth=(info["mailjet_api_key"], info["mailjet_secret_key"]))
    return answer.json()["Data"][0] if answer.status_code == 200 else None


def delivery_states(info: dict[str, Any], user_id: str) -> list[str]:
    records = call("GET", f"{info['segment_url']}/_emulator/deliveries?userId={user_id}")["deliveries"]
    return [record["state"] for record in records]


@pytest.mark.parametrize("keys", [("first-key", "second-key"), (None, None)], ids=["--auth-key changed", "generated"])
def test_the_stored_round_trip_follows_the_authentication_key_of_the_new_start(
    start: Callable[..., dict[str, Any]], keys: tuple[str | None, str | None]
) -> None:
    # The fake Segment's Mailjet destination and Mailjet's App Connections kept the key of the first
    # start while the destination knew only the new one: every identify failed "unknown
    # authentication key", silently, and at every later start (bundle.json remembered the new key).
    first = start(**({"auth_key": keys[0]} if keys[0] else {}))
    call("POST", f"{first['segment_url']}/v1/identify", {"userId": "u1", "traits": {"email": "u1@example.com"}},
         auth=(first["write_key"], ""))
    wait_for("the first identify delivered", lambda: delivery_states(first, "u1") == ["delivered"])
    # A key a user set on the tile is theirs: it stays whatever the bundle's key.
    call("POST", f"{first['segment_url']}/_emulator/sources", {"name": "ci", "write_key": "ci-key"})
    call("PUT", f"{first['segment_url']}/_emulator/destinations/mailjet?writeKey=ci-key", {"settings": {"apiKey": "users-own"}})

    second = start(**({"auth_key": keys[1]} if keys[1] else {}))
    assert second["auth_key"] != first["auth_key"]
    tile = call("GET", f"{second['segment_url']}/_emulator/destinations/mailjet")
    assert tile["settings"]["apiKey"] == second["auth_key"]
    connection = call("GET", f"{second['mailjet_url']}/_emulator/app-connections/segment")
    assert connection["authenticationKey"] == second["auth_key"]
    ci_tile = call("GET", f"{second['segment_url']}/_emulator/destinations/mailjet?writeKey=ci-key")
    assert ci_tile["settings"]["apiKey"] == "users-own"
    call("POST", f"{second['segment_url']}/v1/identify", {"userId": "u2", "traits": {"email": "u2@example.com"}},
         auth=(second["write_key"], ""))
    wait_for("the identify after the restart delivered", lambda: delivery_states(second, "u2") == ["delivered"])
    assert contact_of(second, "u2@example.com") is not None

    third = start(**({"auth_key": keys[1]} if keys[1] else {}))  # and it is what the next start finds stored
    assert call("GET", f"{third['segment_url']}/_emulator/destinations/mailjet")["settings"]["apiKey"] == third["auth_key"]


@pytest.mark.parametrize("change", ["snapshot import", "App Connections PUT"])
def test_a_restart_keeps_and_names_the_key_app_connections_holds(start: Callable[..., dict[str, Any]], change: str) -> None:
    # The start banner and the ready file named the key bundle.json kept from the first start, which
    # the destination refused (401 "unknown authentication key") once the page held another.
    first = start(auth_key="first-key")
    if change == "snapshot import":
        other = BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, auth_key="imported-key")
        with BackgroundBundle(other) as exporter:
            segment_snapshot = call("GET", f"{exporter['segment_url']}/_emulator/snapshot")
            mailjet_snapshot = call("GET", f"{exporter['mailjet_url']}/_emulator/snapshot")
        call("PUT", f"{first['segment_url']}/_emulator/snapshot", segment_snapshot)
        call("PUT", f"{first['mailjet_url']}/_emulator/snapshot", mailjet_snapshot)
    else:
        call("PUT", f"{first['mailjet_url']}/_emulator/app-connections/segment", {"authenticationKey": "imported-key"})
        call("PUT", f"{first['segment_url']}/_emulator/destinations/mailjet", {"settings": {"apiKey": "imported-key"}})

    again = start(auth_key=REMEMBERED)
    assert again["auth_key"] == "imported-key"
    call("POST", f"{again['segment_url']}/v1/identify", {"userId": "u1", "traits": {"email": "u1@example.com"}},
         auth=(again["write_key"], ""))
    wait_for("the identify after the restart delivered", lambda: delivery_states(again, "u1") == ["delivered"])
    assert call("GET", f"{again['segment_url']}/_emulator/destinations/mailjet")["settings"]["apiKey"] == "imported-key"
    assert call("GET", f"{again['mailjet_url']}/_emulator/app-connections/segment")["authenticationKey"] == "imported-key"

    moved = start(auth_key="flag-key")  # --auth-key on a later start moves that key's wiring to the flag's
    assert moved["auth_key"] == "flag-key"
    assert call("GET", f"{moved['segment_url']}/_emulator/destinations/mailjet")["settings"]["apiKey"] == "flag-key"


def on_data_dir(data_dir: Path, auth_key: str | None) -> BackgroundBundle:
    assert auth_key is not None
    return BackgroundBundle(BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, data_dir=str(data_dir),
                                         auth_key=auth_key))


def leave_as_a_kill_would(data_dir: Path, **state: Any) -> None:
    """bundle.json as the start wrote it (with `state`), not as the stop writes it."""
    (data_dir / BUNDLE_STATE_FILE).write_text(json.dumps({"clock_offset_seconds": 0, **state}) + "\n")


def assert_wired_to(info: dict[str, Any], key: str) -> None:
    """The page, the tile and the start's answer hold `key`, and an identify is delivered with it."""
    assert info["auth_key"] == key
    assert call("GET", f"{info['mailjet_url']}/_emulator/app-connections/segment")["authenticationKey"] == key
    assert call("GET", f"{info['segment_url']}/_emulator/destinations/mailjet")["settings"]["apiKey"] == key
    call("POST", f"{info['segment_url']}/v1/identify", {"userId": "u1", "traits": {"email": "u1@example.com"}},
         auth=(info["write_key"], ""))
    wait_for("the identify after the restart delivered", lambda: delivery_states(info, "u1") == ["delivered"])


def test_a_key_changed_in_a_run_that_was_killed_is_kept_by_a_start_without_auth_key(tmp_path: Path) -> None:
    # A kill left bundle.json naming the first key, and the next start moved the page and the tile
    # back to it: a change answered 200 was undone, depending on how the run ended.
    data_dir = tmp_path / "data"
    with on_data_dir(data_dir, "first-key") as first:
        call("PUT", f"{first['mailjet_url']}/_emulator/app-connections/segment", {"authenticationKey": "put-key"})
        call("PUT", f"{first['segment_url']}/_emulator/destinations/mailjet", {"settings": {"apiKey": "put-key"}})
    leave_as_a_kill_would(data_dir, auth_key="first-key")
    with on_data_dir(data_dir, remembered_auth_key(str(data_dir))) as again:  # as `segjet up` without --auth-key
        assert_wired_to(again, "put-key")
    assert remembered_auth_key(str(data_dir)) == "put-key"


def test_a_key_move_a_kill_cut_short_is_finished_by_the_next_start_without_auth_key(tmp_path: Path) -> None:
    # Killed after the tiles took the new key but before the page and bundle.json did: the next start
    # (no --auth-key) took bundle.json's old key, and every delivery failed "unknown authentication key".
    data_dir = tmp_path / "data"
    with on_data_dir(data_dir, "first-key") as first:
        call("PUT", f"{first['segment_url']}/_emulator/destinations/mailjet", {"settings": {"apiKey": "new-key"}})
    leave_as_a_kill_would(data_dir, auth_key="first-key", moving_to="new-key")
    assert remembered_auth_key(str(data_dir)) == "new-key"
    with on_data_dir(data_dir, remembered_auth_key(str(data_dir))) as again:  # as `segjet up` without --auth-key
        assert_wired_to(again, "new-key")
    assert json.loads((data_dir / BUNDLE_STATE_FILE).read_text())["auth_key"] == "new-key"
    assert "moving_to" not in json.loads((data_dir / BUNDLE_STATE_FILE).read_text())


@pytest.mark.parametrize("given", ["third-key", "first-key"])
def test_a_key_move_cut_short_then_given_another_key_moves_the_half_moved_tiles_too(tmp_path: Path, given: str) -> None:
    data_dir = tmp_path / "data"
    with on_data_dir(data_dir, "first-key") as first:
        call("PUT", f"{first['segment_url']}/_emulator/destinations/mailjet", {"settings": {"apiKey": "new-key"}})
    leave_as_a_kill_would(data_dir, auth_key="first-key", moving_to="new-key")
    with on_data_dir(data_dir, given) as again:
        assert_wired_to(again, given)
    assert "moving_to" not in json.loads((data_dir / BUNDLE_STATE_FILE).read_text())


def test_a_start_that_fails_before_serving_leaves_the_key_change_to_the_next_one(tmp_path: Path) -> None:
    # bundle.json took the new key as the bundle was made: a start that then failed (a port in use)
    # left the next start with that key, nothing to move the stored state from, and deliveries failing.
    def config(auth_key: str, mailjet_port: int = 0) -> BundleConfig:
        return BundleConfig(segment_port=0, mailjet_port=mailjet_port, destination_port=0,
                            data_dir=str(tmp_path / "data"), auth_key=auth_key)

    with BackgroundBundle(config("first-key")):
        pass
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        failed = BackgroundBundle(config("second-key", mailjet_port=taken.getsockname()[1]))
        with pytest.raises(OSError, match="cannot listen"):
            failed.start()
        failed.stop()
    finally:
        taken.close()
    with BackgroundBundle(config("second-key")) as info:
        tile = call("GET", f"{info['segment_url']}/_emulator/destinations/mailjet")
        assert tile["settings"]["apiKey"] == "second-key"


def test_a_restart_names_the_list_the_restored_tile_writes_to_not_the_flags(start: Callable[..., dict[str, Any]]) -> None:
    first = start(list_id=7)
    assert first["list_id"] == 7
    again = start(list_id=9)  # --list-id makes new state only: the stored tile still writes to list 7
    assert again["list_id"] == 7
    tile = call("GET", f"{again['segment_url']}/_emulator/destinations/mailjet")
    assert tile["settings"]["listId"] == "7"


def test_after_a_restart_new_and_reset_tiles_write_to_the_stored_accounts_list(start: Callable[..., dict[str, Any]]) -> None:
    # They took --list-id's list (1 here), which the restored account does not have: every delivery
    # of a new workspace failed "Mailjet contact list 1 does not exist" (R49).
    start(list_id=7)
    again = start()
    segment = again["segment_url"]
    call("POST", f"{segment}/_emulator/sources", {"name": "job", "write_key": "wk-job"})
    assert call("GET", f"{segment}/_emulator/destinations/mailjet?writeKey=wk-job")["settings"]["listId"] == "7"
    call("PUT", f"{segment}/_emulator/destinations/mailjet", {"settings": {"listId": "3"}})
    call("POST", f"{segment}/_emulator/reset?writeKey={again['write_key']}")
    assert call("GET", f"{segment}/_emulator/destinations/mailjet")["settings"]["listId"] == "7"


@pytest.mark.parametrize("damaged", ["segment.sqlite3", "mailjet.sqlite3"])
def test_a_start_refused_by_a_damaged_database_leaves_the_data_dir_free(tmp_path: Path, damaged: str) -> None:
    # The failed start kept the data dir's lock (and its loop thread): once the file was fixed, the
    # next start in the same process was refused "in use by another segjet" (its own pid).
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / damaged).write_bytes(b"not a database\n" * 20)
    config = BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, data_dir=str(data_dir))
    with pytest.raises(ValueError, match=f"{damaged}: file is not a database"), BackgroundBundle(config):
        pass
    (data_dir / damaged).unlink()
    with BackgroundBundle(config) as info:
        assert call("GET", f"{info['segment_url']}/_emulator/health")["status"] == "ok"


def test_urls_the_fake_mailjet_handed_out_follow_it_to_its_new_port(start: Callable[..., dict[str, Any]]) -> None:
    # Like App Connections' segmentUrl: after a restart on new ports, a restored message's
    # MessageHref and a finished job's ErrorFile named the port of the run that stored them, gone
    # (found by test_persistence_differential).
    first = start()
    send_email(first)
    keys = (first["mailjet_api_key"], first["mailjet_secret_key"])
    jobs = f"{first['mailjet_url']}/v3/REST/contactslist/1/managemanycontacts"
    job_id = call("POST", jobs, {"Action": "addnoforce", "Contacts": [{"Email": "not-an-email"}]}, auth=keys)["Data"][0]["JobID"]
    call("POST", f"{first['mailjet_url']}/_emulator/clock", {"advance": "2s"})
    second = start()
    [message] = call("GET", f"{second['mailjet_url']}/_emulator/messages")["messages"]
    assert message["MessageHref"] == f"{second['mailjet_url']}/v3/REST/message/{message['MessageID']}"
    [job] = call("GET", f"{second['mailjet_url']}/v3/REST/contactslist/1/managemanycontacts/{job_id}", auth=keys)["Data"]
    assert job["Status"] == "Error"
    assert job["ErrorFile"] == f"{second['mailjet_url']}/v3/DATA/batchjob/{job_id}/JSONError/application:json/LAST"
