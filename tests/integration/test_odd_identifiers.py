"""Odd identifiers end to end: analytics-python identify → fake Segment (events, profile) → destination
→ fake Mailjet (contact, contactdata, listrecipient) → Send v3.1 → email events → track calls back in
Segment with the same userId and email.

Real users' ids are not ASCII: addresses with capitals, plus-addressing, internationalised domains
and local parts, characters that must be percent-encoded in a path; userIds with spaces, slashes,
`%`, `?`, `#`, emoji, bidi marks. Each hop must keep them as given and match them where the real
service does (Mailjet: emails and property names case-insensitively, reference/mailjet.md §1).
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from emulator.harness.client import SegjetClient


def segment(value: str) -> str:
    """`value` as one path segment, dots included: a client (httpx) resolves a `.` or `..` segment."""
    return quote(value, safe="").replace(".", "%2E")


# (userId, email): each survives every hop.
ODD = [
    ("plain-1", "Alice.Upper@Example.COM"),
    ("plus tag", "a+tag@example.com"),
    ("a/b/../c", "user@bücher.de"),
    ("100%?#x&y=z", "user@xn--bcher-kva.de"),
    ("😀🎉", "用户@例子.广告"),
    ("\u202eabc\u200f", "a/b?c#d%e@example.com"),
    ("..", "{a}|~!*'`^@example.com"),
    (" padded ", "A%2Fb@Example.com"),
]


@pytest.mark.parametrize(("user_id", "email"), ODD)
def test_an_odd_user_id_and_email_survive_every_hop(segjet: SegjetClient, user_id: str, email: str) -> None:
    segjet.mailjet_settings({"writeKey": segjet.write_key, "sendEvents": True})
    message_id = segjet.identify(user_id, {"email": email, "cité": "Zürich 😀"})

    # Fake Segment: stored under the userId as given, found by it, and so is the profile.
    stored = segjet.events(user_id=user_id, type="identify")
    assert [m["messageId"] for m in stored] == [message_id]
    profile = segjet.http.get(f"{segjet.segment_url}/_emulator/profiles/{segment(user_id)}")
    assert profile.status_code == 200, profile.text
    assert profile.json()["userId"] == user_id
    assert profile.json()["traits"]["email"] == email

    # Fake Mailjet: one contact, found by its address in any case, with the userId kept.
    properties = segjet.wait_for_contact(email, {"segment_user_id": user_id, "cite": "Zürich 😀"})
    assert properties["segment_user_id"] == user_id
    for spelling in (email, email.upper(), email.lower()):
        contact = segjet.mailjet("GET", f"/v3/REST/contact/{segment(spelling)}")
        assert contact.status_code == 200, (spelling, contact.text)
        assert contact.json()["Data"][0]["Email"] == email
        recipients = segjet.mailjet("GET", "/v3/REST/listrecipient", params={"ContactEmail": spelling})
        assert recipients.json()["Count"] == 1, (spelling, recipients.text)
        data = segjet.mailjet("GET", "/v3/REST/contactdata", params={"ContactEmail": spelling})
        assert data.json()["Count"] == 1, (spelling, data.text)

    # Send v3.1 to it, open it: Segment gets both events for the same person.
    sent = segjet.send_email(email, "Grüße 😀", "<p>hi</p>")
    segjet.emit_email_event(sent, "open")
    for name in ("Email Delivered", "Email Opened"):
        event = segjet.wait_for_event(name, user_id=user_id)
        assert event["userId"] == user_id
        assert event["context"]["traits"]["email"] == email
        assert event["properties"]["email_id"] == str(sent)


def test_one_contact_for_an_address_identified_and_mailed_in_other_cases(segjet: SegjetClient) -> None:
    segjet.mailjet_settings({"writeKey": segjet.write_key, "sendEvents": True})
    segjet.identify("case-1", {"email": "Zoë.Case@Example.COM", "plan": "a"})
    segjet.wait_for_contact("Zoë.Case@Example.COM", {"plan": "a"})
    segjet.identify("case-1", {"email": "ZOË.CASE@EXAMPLE.COM", "plan": "b"})
    properties = segjet.wait_for_contact("zoë.case@example.com", {"plan": "b"})
    assert properties["segment_user_id"] == "case-1"
    contacts = segjet.mailjet("GET", "/v3/REST/contact", params={"Limit": 100}).json()
    assert [c["Email"] for c in contacts["Data"]] == ["Zoë.Case@Example.COM"], "stored as first given, once"

    sent = segjet.send_email("zoë.case@example.com", "hello", "<p>hi</p>")
    event = segjet.wait_for_event("Email Delivered", user_id="case-1")
    assert event["properties"]["email_id"] == str(sent)
    assert segjet.mailjet("GET", "/v3/REST/contact", params={"Limit": 100}).json()["Count"] == 1, "the send made no second contact"


def test_the_user_id_goes_back_to_segment_when_its_property_is_defined_in_another_case(segjet: SegjetClient) -> None:
    # Mailjet matches property names case-insensitively: a property a user defined as
    # "Segment_User_ID" is the one the destination writes `segment_user_id` to (under Mailjet's spelling).
    segjet.mailjet_settings({"writeKey": segjet.write_key, "sendEvents": True})
    defined = segjet.mailjet("POST", "/v3/REST/contactmetadata", json={"Name": "Segment_User_ID", "Datatype": "str"})
    assert defined.status_code == 201, defined.text
    segjet.identify("user-ci", {"email": "ci@example.com"})
    assert segjet.wait_for_contact("ci@example.com") == {"Segment_User_ID": "user-ci"}

    sent = segjet.send_email("ci@example.com", "hello", "<p>hi</p>")
    forwards = segjet.wait_until(
        lambda: [e["segment"]["call"] for e in segjet.mailjet_email_events(sent) if e["segment"].get("call")] or None,
        10, "the Email Delivered forward",
    )
    assert forwards[0].get("userId") == "user-ci", forwards[0]
