"""A restart on one --data-dir with another Mailjet API key pair than the stored account's.

Each test starts a `BackgroundBundle` on a data dir, stops it, and starts another on the same dir
with other Mailjet credentials and the key bundle.json holds, as `segjet up` without --auth-key does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from emulator.bundle import BackgroundBundle
from emulator.config import BundleConfig

from .test_restart_state import REMEMBERED, call, start  # noqa: F401 (start: the fixture)

WAIT_SECONDS = 15
DEFAULTS = BundleConfig()


def identify_delivered(info: dict[str, Any], user_id: str) -> None:
    call("POST", f"{info['segment_url']}/v1/identify", {"userId": user_id, "traits": {"email": f"{user_id}@example.com"}},
         auth=(info["write_key"], ""))
    deadline = time.monotonic() + WAIT_SECONDS
    while delivery_states(info, user_id) != ["delivered"]:
        assert time.monotonic() < deadline, f"{user_id}'s identify was not delivered: {delivery_states(info, user_id)}"
        time.sleep(0.05)


def delivery_states(info: dict[str, Any], user_id: str) -> list[str]:
    records = call("GET", f"{info['segment_url']}/_emulator/deliveries?userId={user_id}")["deliveries"]
    return [record["state"] for record in records]


def contact_status(mailjet_url: str, email: str, auth: tuple[str, str]) -> int:
    return httpx.get(f"{mailjet_url}/v3/REST/contact/{email}", auth=auth, timeout=WAIT_SECONDS).status_code


def page_key(info: dict[str, Any], api_key: str) -> str:
    connection = call("GET", f"{info['mailjet_url']}/_emulator/app-connections/segment?apiKey={api_key}")
    return str(connection["authenticationKey"])


def test_a_restart_with_another_mailjet_account_makes_it_the_bundles_account(start: Callable[..., dict[str, Any]]) -> None:
    # The new account was made with the bundle's key, which the stored account held too: identifies
    # landed in the stored account, not the one the ready file named, and every later start was
    # refused ("two accounts with one app_connection.authentication_key").
    first = start()
    identify_delivered(first, "u1")
    old_keys = (first["mailjet_api_key"], first["mailjet_secret_key"])

    second = start(auth_key=REMEMBERED, mailjet_api_key="other-key", mailjet_secret_key="other-secret")
    assert (second["mailjet_api_key"], second["mailjet_secret_key"]) == ("other-key", "other-secret")
    assert second["auth_key"] == first["auth_key"]
    assert page_key(second, "other-key") == second["auth_key"]
    # The stored account gave the key up for a fresh one of its own, and keeps its data.
    given_up = page_key(second, old_keys[0])
    assert given_up not in ("", second["auth_key"])
    assert contact_status(second["mailjet_url"], "u1@example.com", old_keys) == 200
    identify_delivered(second, "u2")
    assert contact_status(second["mailjet_url"], "u2@example.com", ("other-key", "other-secret")) == 200
    assert contact_status(second["mailjet_url"], "u2@example.com", old_keys) == 404

    third = start(auth_key=REMEMBERED, mailjet_api_key="other-key", mailjet_secret_key="other-secret")  # the data dir restarts
    assert third["auth_key"] == first["auth_key"]
    assert page_key(third, old_keys[0]) == given_up
    identify_delivered(third, "u3")
    assert contact_status(third["mailjet_url"], "u3@example.com", ("other-key", "other-secret")) == 200


def test_a_snapshot_import_without_the_configured_account_but_with_its_key_leaves_each_key_to_one_account(
    start: Callable[..., dict[str, Any]],
) -> None:
    first = start(mailjet_api_key="other-key", mailjet_secret_key="other-secret")
    # Exported by a bundle of the default account wired with the same key.
    with BackgroundBundle(BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, auth_key=first["auth_key"])) as exporter:
        snapshot = call("GET", f"{exporter['mailjet_url']}/_emulator/snapshot")
    call("PUT", f"{first['mailjet_url']}/_emulator/snapshot", snapshot)
    assert page_key(first, "other-key") == first["auth_key"]
    assert page_key(first, DEFAULTS.mailjet_api_key) != first["auth_key"]
    identify_delivered(first, "u1")
    assert contact_status(first["mailjet_url"], "u1@example.com", ("other-key", "other-secret")) == 200

    again = start(auth_key=REMEMBERED, mailjet_api_key="other-key", mailjet_secret_key="other-secret")  # the data dir restarts
    assert page_key(again, "other-key") == again["auth_key"] == first["auth_key"]


def test_a_restart_with_another_secret_names_the_secret_the_stored_account_keeps(
    start: Callable[..., dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    # The banner, the ready file and info() named the flag's secret, which every call was refused with (401).
    start()
    with caplog.at_level(logging.WARNING, logger="segjet.bundle"):
        again = start(auth_key=REMEMBERED, mailjet_secret_key="new-secret")
    assert again["mailjet_secret_key"] == DEFAULTS.mailjet_secret_key
    assert contact_status(again["mailjet_url"], "nobody@example.com", (again["mailjet_api_key"], again["mailjet_secret_key"])) == 404
    assert "keeps its secret key" in caplog.text
    assert "new-secret" not in caplog.text  # credentials are printed in the banner only


def test_a_reset_keeps_the_secret_the_stored_account_kept(start: Callable[..., dict[str, Any]]) -> None:
    # A reset made the configured account again with the flag's secret: the pair the ready file
    # named answered 401 from then on (`segjet check` resets first, so it failed).
    start()
    again = start(auth_key=REMEMBERED, mailjet_secret_key="new-secret")
    call("POST", f"{again['mailjet_url']}/_emulator/reset")
    pair = (again["mailjet_api_key"], again["mailjet_secret_key"])
    assert contact_status(again["mailjet_url"], "nobody@example.com", pair) == 404


def test_a_restart_back_to_an_earlier_mailjet_account_moves_the_tile_to_it(start: Callable[..., dict[str, Any]]) -> None:
    # The earlier account was given a fresh key when the other took the bundle's: back on it, the
    # bundle took its page's key, while the tile kept the one the other account holds, and wrote there.
    start()
    start(auth_key=REMEMBERED, mailjet_api_key="other-key", mailjet_secret_key="other-secret")
    back = start(auth_key=REMEMBERED)
    tile = call("GET", f"{back['segment_url']}/_emulator/destinations/mailjet")["settings"]
    assert tile["apiKey"] == back["auth_key"] == page_key(back, DEFAULTS.mailjet_api_key)
    identify_delivered(back, "u1")
    assert contact_status(back["mailjet_url"], "u1@example.com", (back["mailjet_api_key"], back["mailjet_secret_key"])) == 200
    assert contact_status(back["mailjet_url"], "u1@example.com", ("other-key", "other-secret")) == 404


@pytest.mark.parametrize("reset", ["mailjet_url", "segment_url"])
def test_a_reset_after_a_start_back_on_an_earlier_account_keeps_its_wiring(start: Callable[..., dict[str, Any]], reset: str) -> None:
    # The start took the page's key, while a reset of either fake wired the tile or the page with
    # the key the start was given, which the other account holds: the deliveries failed "unknown
    # authentication key", or landed in the other account.
    start()
    start(auth_key=REMEMBERED, mailjet_api_key="other-key", mailjet_secret_key="other-secret")
    back = start(auth_key=REMEMBERED)
    call("POST", f"{back[reset]}/_emulator/reset")
    identify_delivered(back, "u1")
    assert contact_status(back["mailjet_url"], "u1@example.com", (back["mailjet_api_key"], back["mailjet_secret_key"])) == 200
