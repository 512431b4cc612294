"""Round trip of identify calls: analytics-python → fake Segment → destination → fake Mailjet.

Every hop is a real server; Mailjet state is read back with the official mailjet_rest client.
Retries are driven by the virtual clock (`POST /_emulator/clock`); waits poll server state.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from mailjet_rest import Client as MailjetClient
from mailjet_rest.errors import DoesNotExistError
from segment.analytics import Client as SegmentClient

import contracts
from destination.app import create_app as create_destination_app
from destination.keyring import KeyRing, MailjetAccount
from emulator.bundle import BackgroundBundle
from emulator.common.clock import Clock
from emulator.common.server import LoopThread, Runner, bind, url_of
from emulator.config import BundleConfig, BundleUrls
from emulator.mailjet.routes import create_app as create_mailjet_app
from emulator.segment.routes import create_app as create_segment_app

WAIT_SECONDS = 15


@dataclass
class Stack:
    info: dict[str, Any]

    @property
    def segment_url(self) -> str:
        return self.info["segment_url"]

    def identify(self, user_id: str, traits: dict[str, Any]) -> str:
        client = SegmentClient(self.info["write_key"], host=self.segment_url, sync_mode=True)
        _, message = client.identify(user_id, traits)
        return message["messageId"]

    def track(self, user_id: str, event: str) -> str:
        client = SegmentClient(self.info["write_key"], host=self.segment_url, sync_mode=True)
        _, message = client.track(user_id, event, {"plan": "pro"})
        return message["messageId"]

    def deliveries(self, **query: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.segment_url}/_emulator/deliveries", params=query)
        answer.raise_for_status()
        return answer.json()["deliveries"]

    def wait_delivery(self, message_id: str, *states: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            found = self.deliveries(messageId=message_id)
            if found and found[-1]["state"] in states:
                return found[-1]
            if time.monotonic() > deadline:
                raise AssertionError(f"delivery of {message_id} is {found}, expected one of {states}")
            time.sleep(0.01)

    def wait_accepted(self, message_id: str) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while not httpx.get(f"{self.segment_url}/_emulator/events", params={"messageId": message_id}).json()["events"]:
            assert time.monotonic() < deadline, f"{message_id} never reached the fake Segment"
            time.sleep(0.01)

    def advance(self, duration: str) -> None:
        httpx.post(f"{self.segment_url}/_emulator/clock", json={"advance": duration}).raise_for_status()

    def configure_destination(self, update: dict[str, Any]) -> dict[str, Any]:
        answer = httpx.put(f"{self.segment_url}/_emulator/destinations/mailjet", json=update)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def mailjet(self) -> MailjetClient:
        return MailjetClient(
            auth=(self.info["mailjet_api_key"], self.info["mailjet_secret_key"]), api_url=self.info["mailjet_url"] + "/"
        )

    def contact_properties(self, email: str) -> dict[str, str]:
        answer = self.mailjet().contactdata.get(id=email)
        assert answer.status_code == 200, answer.text
        (entry,) = answer.json()["Data"]
        return {item["Name"]: item["Value"] for item in entry["Data"]}

    def list_memberships(self, email: str) -> list[dict[str, Any]]:
        answer = self.mailjet().listrecipient.get(filters={"ContactsList": self.info["list_id"], "ContactEmail": email})
        assert answer.status_code == 200, answer.text
        return answer.json()["Data"]


@pytest.fixture(scope="module")
def bundle() -> Iterator[dict[str, Any]]:
    background = BackgroundBundle(BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, seed=11))
    info = background.start()
    yield info
    background.stop()


@pytest.fixture
def stack(bundle: dict[str, Any]) -> Stack:
    for url in (bundle["segment_url"], bundle["mailjet_url"]):
        httpx.post(f"{url}/_emulator/reset").raise_for_status()
    return Stack(bundle)


def test_identify_lands_in_the_list_with_flattened_traits(stack):
    traits = {
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "plan": "pro",
        "logins": 3,
        "address": {"city": "London", "postalCode": "N1 9GU"},
    }
    message_id = stack.identify("ada-1", traits)
    record = stack.wait_delivery(message_id, "delivered", "failed")
    assert record["state"] == "delivered", record
    assert record["destination"] == "Mailjet" and record["type"] == "identify" and record["userId"] == "ada-1"

    properties = stack.contact_properties("ada@example.com")
    assert properties["plan"] == "pro"
    assert properties["logins"] == "3"
    assert properties["address_city"] == "London"
    assert properties["address_postalCode"] == "N1 9GU"
    assert properties["segment_user_id"] == "ada-1"
    (membership,) = stack.list_memberships("ada@example.com")
    assert membership["ListID"] == stack.info["list_id"]

    # What crossed the Segment → destination hop holds its contracts both ways.
    (attempt,) = record["attempts"]
    assert attempt["request"]["body"]["messageId"] == message_id
    assert contracts.validate("destination.request", attempt["request"]["body"]) == []
    assert contracts.validate("destination.response", attempt["response"]) == []


def test_a_second_identify_updates_the_contact_without_duplicating_it(stack):
    first = stack.identify("bob-1", {"email": "bob@example.com", "plan": "free"})
    stack.wait_delivery(first, "delivered")
    second = stack.identify("bob-1", {"email": "bob@example.com", "plan": "enterprise", "seats": 12})
    assert stack.wait_delivery(second, "delivered", "failed")["state"] == "delivered"

    properties = stack.contact_properties("bob@example.com")
    assert properties["plan"] == "enterprise" and properties["seats"] == "12"
    assert len(stack.list_memberships("bob@example.com")) == 1
    contacts = stack.mailjet().contact.get(id="bob@example.com").json()
    assert contacts["Count"] == 1 and contacts["Data"][0]["Email"] == "bob@example.com"
    assert stack.mailjet().contact.get().json()["Total"] == 1  # one contact, not two


def test_an_identify_without_email_fails_and_is_not_retried(stack):
    message_id = stack.identify("no-mail", {"plan": "pro"})
    record = stack.wait_delivery(message_id, "failed", "delivered", "retrying")
    assert record["state"] == "failed"
    assert "no email" in record["reason"]
    assert [attempt["status"] for attempt in record["attempts"]] == [400]
    stack.advance("5h")
    assert len(stack.wait_delivery(message_id, "failed")["attempts"]) == 1


def test_a_track_is_skipped_without_reaching_the_destination(stack):
    message_id = stack.track("ada-1", "Order Completed")
    record = stack.wait_delivery(message_id, "skipped", "delivered", "failed")
    assert record["state"] == "skipped"
    assert record["reason"] == "UNSUPPORTED_EVENT_TYPE"
    assert record["event"] == "Order Completed" and record["attempts"] == []


def test_an_unknown_list_id_fails_with_a_clear_reason(stack):
    stack.configure_destination({"settings": {"listId": "999"}})
    message_id = stack.identify("cleo-1", {"email": "cleo@example.com"})
    record = stack.wait_delivery(message_id, "failed", "delivered", "retrying")
    assert record["state"] == "failed"
    assert "999" in record["reason"] and "does not exist" in record["reason"]
    assert len(record["attempts"]) == 1


def test_a_disabled_destination_delivers_nothing(stack):
    answer = stack.configure_destination({"enabled": False})
    assert answer["enabled"] is False
    message_id = stack.identify("dora-1", {"email": "dora@example.com"})
    stack.wait_accepted(message_id)
    assert stack.deliveries() == []
    with pytest.raises(DoesNotExistError):
        stack.mailjet().contactdata.get(id="dora@example.com")
    # Reset puts the destination back as the bundle started it.
    httpx.post(f"{stack.segment_url}/_emulator/reset").raise_for_status()
    assert httpx.get(f"{stack.segment_url}/_emulator/destinations/mailjet").json()["enabled"] is True


def test_the_destination_starts_configured_from_the_bundle(bundle, stack):
    # `stack` resets: another test of this module's bundle may have changed the settings.
    answer = httpx.get(f"{bundle['segment_url']}/_emulator/destinations/mailjet").json()
    assert answer == {"enabled": True, "settings": {"apiKey": bundle["auth_key"], "listId": str(bundle["list_id"])}}


def test_the_destination_takes_the_key_app_connections_shows_now(stack):
    # A key changed on Mailjet's page is the destination's from then on; the one it replaced is refused.
    mailjet_url, old_key = stack.info["mailjet_url"], stack.info["auth_key"]
    answer = httpx.put(f"{mailjet_url}/_emulator/app-connections/segment", json={"authenticationKey": "regenerated-key"})
    assert answer.status_code == 200, answer.text
    stack.configure_destination({"settings": {"apiKey": "regenerated-key"}})
    delivered = stack.identify("fay-1", {"email": "fay@example.com"})
    assert stack.wait_delivery(delivered, "delivered", "failed")["state"] == "delivered"
    assert stack.list_memberships("fay@example.com") != []

    stack.configure_destination({"settings": {"apiKey": old_key}})
    refused = stack.wait_delivery(stack.identify("gus-1", {"email": "gus@example.com"}), "failed", "delivered")
    assert refused["state"] == "failed" and "unknown authentication key" in refused["reason"]
    assert [attempt["status"] for attempt in refused["attempts"]] == [401]


def test_an_added_account_is_written_to_with_its_own_key(stack):
    mailjet_url = stack.info["mailjet_url"]
    added = httpx.post(f"{mailjet_url}/_emulator/accounts", json={"api_key": "key-2", "secret_key": "secret-2"})
    assert added.status_code == 201, added.text
    stack.configure_destination({"settings": {"apiKey": added.json()["authenticationKey"], "listId": "1"}})
    message_id = stack.identify("hal-1", {"email": "hal@example.com"})
    assert stack.wait_delivery(message_id, "delivered", "failed")["state"] == "delivered"
    theirs = MailjetClient(auth=("key-2", "secret-2"), api_url=mailjet_url + "/")
    assert [c["Email"] for c in theirs.contact.get().json()["Data"]] == ["hal@example.com"]
    assert stack.mailjet().contact.get().json()["Data"] == []  # not the configured account's


def test_no_enable_leaves_the_destination_off():
    # As a Mailjet destination newly added in Segment: no key until the user pastes the one
    # App Connections shows, so nothing can be delivered before the setup is walked.
    config = BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, enable_destination=False)
    with BackgroundBundle(config) as info:
        tile = f"{info['segment_url']}/_emulator/destinations/mailjet"
        untouched = {"enabled": False, "settings": {"apiKey": "", "listId": "1"}}
        assert httpx.get(tile).json() == untouched
        stack = Stack(info)
        message_id = stack.identify("eve-1", {"email": "eve@example.com"})
        stack.wait_accepted(message_id)
        assert stack.deliveries() == []
        refused = httpx.put(tile, json={"enabled": True})
        assert refused.status_code == 400 and "apiKey" in refused.json()["error"]

        # A workspace a CI job creates starts as the default one did.
        created = httpx.post(f"{info['segment_url']}/_emulator/sources", json={"name": "Job", "write_key": "job-key"})
        assert created.status_code == 201, created.text
        assert httpx.get(tile, params={"writeKey": "job-key"}).json() == untouched

        # A reset puts the tile back as the bundle started it.
        stack.configure_destination({"settings": {"apiKey": info["auth_key"]}})
        httpx.post(f"{info['segment_url']}/_emulator/reset").raise_for_status()
        assert httpx.get(tile).json() == untouched

        stack.configure_destination({"enabled": True, "settings": {"apiKey": info["auth_key"]}})
        delivered = stack.identify("eve-2", {"email": "eve@example.com"})
        assert stack.wait_delivery(delivered, "delivered", "failed")["state"] == "delivered"


def test_mailjet_down_then_up_is_delivered_once_after_retries():
    """The bundle's pieces, wired by hand so that Mailjet's socket refuses connections at first."""
    config = BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, seed=5)
    clock = Clock()
    segment_sock = bind(config.host, 0)
    destination_sock = bind(config.host, 0)
    # Bound but not listening: the port is reserved and the kernel refuses connections to it.
    mailjet_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    mailjet_sock.bind((config.host, 0))
    urls = BundleUrls(url_of(segment_sock), url_of(mailjet_sock), url_of(destination_sock))
    key_ring = KeyRing({config.auth_key: MailjetAccount(urls.mailjet_url, config.mailjet_api_key, config.mailjet_secret_key)})
    loop_thread = LoopThread("roundtrip-down-then-up")
    runner, mailjet_runner = Runner(), Runner()
    runner.add("segment", create_segment_app(config, clock, urls), segment_sock)
    runner.add("destination", create_destination_app(key_ring), destination_sock)
    loop_thread.run(runner.start())
    try:
        info = {**config.to_json(), "segment_url": urls.segment_url, "mailjet_url": urls.mailjet_url}
        stack = Stack(info)
        message_id = stack.identify("fay-1", {"email": "fay@example.com", "plan": "pro"})
        record = stack.wait_delivery(message_id, "retrying", "delivered", "failed")
        assert record["state"] == "retrying"
        assert record["reason"].startswith("HTTP 503: Mailjet is temporarily unavailable")
        assert record["next_attempt_at"] is not None

        stack.advance("10m")  # still down: another failed attempt, still retrying
        record = stack.wait_delivery(message_id, "retrying", "delivered", "failed")
        assert record["state"] == "retrying" and len(record["attempts"]) == 2

        mailjet_sock.setblocking(False)
        mailjet_runner.add("mailjet", create_mailjet_app(config, clock, urls), mailjet_sock)
        loop_thread.run(mailjet_runner.start())
        stack.advance("1h")
        record = stack.wait_delivery(message_id, "delivered", "failed")
        assert record["state"] == "delivered"
        assert [attempt["status"] for attempt in record["attempts"]] == [503, 503, 200]
        assert stack.contact_properties("fay@example.com")["plan"] == "pro"
        assert len(stack.list_memberships("fay@example.com")) == 1
    finally:
        loop_thread.run(runner.stop())
        if mailjet_runner.handles and mailjet_runner.handles[0].task is not None:
            loop_thread.run(mailjet_runner.stop())
        loop_thread.close()
        mailjet_sock.close()
