"""Email events of the fake Mailjet on the models (no sockets): the lifecycle rules, the simulation,
payloads and Segment track calls against the contracts, and the webhook / Segment delivery rules
with a scripted transport on the virtual clock."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import contracts
from emulator.common.clock import LATEST, Clock, parse_iso
from emulator.config import BundleConfig
from emulator.mailjet.events import (
    CONTROL_FIELDS, SENT_DELAY, EmailEvent, EmailEventError, EmailEvents, Simulation, check_control_event, links_of, track_call,
    unix_time,
)
from emulator.mailjet.models import Account, MailjetBackend
from emulator.mailjet.outbound import HttpTransport, Outbox, Outcome
from emulator.mailjet.service import MailjetService
from emulator.mailjet.send import send

LINK = "https://shop.example.com/offer?a=1&b=2"
HTML = f'<p>Hi <a href="{LINK.replace("&", "&amp;")}">offer</a> <a href=\'https://example.com/faq\'>faq</a></p>'
SEGMENT_CONTRACTS = {
    "Email Delivered": "segment.email_delivered",
    "Email Opened": "segment.email_opened",
    "Email Link Clicked": "segment.email_link_clicked",
    "Email Bounced": "segment.email_bounced",
    "Email Marked as Spam": "segment.email_marked_as_spam",
    "Email Unsubscribed": "segment.email_unsubscribed",
}


@dataclass
class ScriptedTransport(HttpTransport):
    """Answers POSTs from a script of statuses (None = connection error); the last one repeats.

    `answer`, when set, gives the status for each (url, body) instead; `gate`, when set, holds every
    POST until it is set (an endpoint slow to answer)."""

    statuses: list[int | None] = field(default_factory=lambda: [200])
    posts: list[tuple[str, Any, dict[str, str]]] = field(default_factory=list)
    timeouts: list[tuple[str, float]] = field(default_factory=list)  # (url, timeout) of each POST
    answer: Callable[[str, Any], int | None] | None = None
    gate: asyncio.Event | None = None

    def __post_init__(self) -> None:
        super().__init__()

    async def post_json(self, url: str, body: Any, headers: dict[str, str], timeout: float) -> Outcome:
        self.posts.append((url, body, headers))
        self.timeouts.append((url, timeout))
        if self.gate is not None:
            await self.gate.wait()
        if self.answer is not None:
            status = self.answer(url, body)
        else:
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if status is None:
            return Outcome(None, error="connection error: refused")
        return Outcome(status, {"code": "x", "message": f"scripted {status}"})


async def settle(clock: Clock) -> None:
    """Fire what is due, then wait for the deliveries the timers started (they run as tasks, off the clock)."""
    await clock.run_due()
    while pending := asyncio.all_tasks() - {asyncio.current_task()}:
        await asyncio.gather(*pending)


class Fake:
    """A Mailjet backend with its lifecycle and outbox, driven on a private event loop."""

    def __init__(self, seed: int = 7) -> None:
        self.clock = Clock()
        self.transport = ScriptedTransport()
        self.service = MailjetService(
            BundleConfig(seed=seed), self.clock, "http://mj.test", "http://segment.test", self.transport
        )
        self.loop = asyncio.new_event_loop()

    @property
    def backend(self) -> MailjetBackend:
        return self.service.backend

    @property
    def events(self) -> EmailEvents:
        return self.service.default.events

    @property
    def outbox(self) -> Outbox:
        return self.service.default.outbox

    @property
    def account(self) -> Account:
        return self.backend.default_account

    def send(self, to: str = "ada@example.com", html: str | None = HTML, **extra: Any) -> int:
        message: dict[str, Any] = {"From": {"Email": "shop@example.com"}, "To": [{"Email": to}], "Subject": "Your offer", **extra}
        message["HTMLPart" if html else "TextPart"] = html or "plain text"
        status, body = send(self.account, {"Messages": [message]})
        assert status == 200, body
        return body["Messages"][0]["To"][0]["MessageID"]

    def advance(self, delta: timedelta = SENT_DELAY) -> None:
        self.clock.advance(delta)
        self.loop.run_until_complete(settle(self.clock))

    def emit(self, message_id: int | str, event: str, **fields: Any) -> EmailEvent:
        return self.events.apply(message_id, {"event": event, **fields})

    def refused(self, message_id: int | str, event: str, **fields: Any) -> EmailEventError:
        with pytest.raises(EmailEventError) as raised:
            self.emit(message_id, event, **fields)
        return raised.value

    def kinds(self, message_id: int) -> list[str]:
        return [record.event for record in self.events.events(message_id=message_id)]

    def subscribe(self, email: str, list_id: int = 1) -> None:
        contact = self.account.ensure_contact(email)
        self.account.apply_action(contact, list_id, "addnoforce")

    def close(self) -> None:
        self.loop.close()


@pytest.fixture
def fake() -> Iterator[Fake]:
    made = Fake()
    yield made
    made.close()


def assert_contract(name: str, payload: Any) -> None:
    violations = contracts.validate(name, payload)
    assert not violations, f"{name}: " + "; ".join(str(v) for v in violations)


# ---------------------------------------------------------------- lifecycle


def test_sent_follows_a_send_after_a_little_virtual_time(fake: Fake) -> None:
    message_id = fake.send()
    message = fake.events.find_message(message_id)
    assert message.status == "queued" and fake.kinds(message_id) == []
    fake.advance()
    assert fake.kinds(message_id) == ["sent"] and message.status == "sent"
    (sent,) = message.events
    assert sent["mj_message_id"] == str(message_id) and sent["smtp_reply"].startswith("sent (250")
    assert sent["Message_GUID"] == message.message_uuid and sent["time"] == int(message.created_at.timestamp() + 1)
    assert fake.account.contacts[message.contact_id].delivered_count == 1
    fake.advance(timedelta(days=1))
    assert fake.kinds(message_id) == ["sent"]


def test_unknown_and_sandbox_messages_and_bad_requests_are_refused(fake: Fake) -> None:
    assert fake.refused(123, "open").status == 404
    assert fake.refused("abc", "open").status == 404
    send(fake.account, {"SandboxMode": True, "Messages": [{"From": {"Email": "a@example.com"}, "To": [{"Email": "b@example.com"}], "TextPart": "x"}]})
    sandbox = fake.refused(0, "open")
    assert sandbox.status == 400 and "Sandbox" in sandbox.message
    message_id = fake.send()
    assert "by itself" in fake.refused(message_id, "sent").message
    assert "must be one of" in fake.refused(message_id, "delivered").message
    assert "unknown field(s) for open: url" in fake.refused(message_id, "open", url=LINK).message
    assert "non-empty string" in fake.refused(message_id, "open", ip="").message
    assert "true or false" in fake.refused(message_id, "bounce", hard_bounce="yes").message
    assert fake.kinds(message_id) == []


@pytest.mark.parametrize(
    ("event", "name"),
    [(event, name) for event, names in CONTROL_FIELDS.items() for name in names if name not in ("hard_bounce", "blocked", "mj_list_id")],
)
@pytest.mark.parametrize("value", [5, "", None, ["x"]])
def test_a_text_field_of_a_control_event_must_be_a_non_empty_string(event: str, name: str, value: Any) -> None:
    # What goes into the event payload Mailjet sends as text (webhooks, the Segment forward).
    with pytest.raises(EmailEventError, match=f"^{name} must be a non-empty string$"):
        check_control_event(event, {name: value})
    check_control_event(event, {name: "https://example.com/x" if name == "url" else "text"})


def test_engagement_on_a_queued_message_delivers_it_first(fake: Fake) -> None:
    message_id = fake.send()
    opened = fake.emit(message_id, "open", ip="10.1.2.3", geo="FR", agent="Thunderbird")
    assert fake.kinds(message_id) == ["sent", "open"]
    assert {key: opened.payload[key] for key in ("ip", "geo", "agent")} == {"ip": "10.1.2.3", "geo": "FR", "agent": "Thunderbird"}
    fake.advance()  # the sent timer was cancelled: no second sent
    assert fake.kinds(message_id) == ["sent", "open"]
    made_up = fake.emit(message_id, "open").payload
    assert made_up["ip"].count(".") == 3 and len(made_up["geo"]) == 2 and made_up["agent"]
    assert fake.events.find_message(message_id).status == "opened"


def test_click_needs_one_of_the_message_links(fake: Fake) -> None:
    message_id = fake.send()
    assert links_of(fake.events.find_message(message_id)) == [LINK, "https://example.com/faq"]
    assert fake.emit(message_id, "click").payload["url"] == LINK  # default: the first link
    assert fake.emit(message_id, "click", url="https://example.com/faq").payload["url"] == "https://example.com/faq"
    assert "is not a link of message" in fake.refused(message_id, "click", url="https://elsewhere.example.com/").message
    plain = fake.send("bob@example.com", html=None)
    assert "has no http(s) link" in fake.refused(plain, "click").message
    assert fake.events.find_message(message_id).status == "clicked"


def test_url_tags_are_in_every_link_and_in_the_clicks(fake: Fake) -> None:
    # DevGuide "Add URL tags": Mailjet adds them "in all of the URLs in your message, before adding
    # the Mailjet click tracking", and "the URLs in your click statistics will include the URLTags".
    page = '<a href="http://www.example.com">x</a> <a href="http://e.com/p?z=9&amp;y=1#top">y</a> <a href="mailto:a@b.co">m</a>'
    message_id = fake.send(html=page, URLTags="param1=1&param2=2")
    message = fake.events.find_message(message_id)
    assert links_of(message) == ["http://www.example.com?param1=1&param2=2", "http://e.com/p?z=9&y=1&param1=1&param2=2#top"]
    assert 'href="mailto:a@b.co"' in message.html_part
    assert fake.emit(message_id, "click").payload["url"] == "http://www.example.com?param1=1&param2=2"
    assert "is not a link of message" in fake.refused(message_id, "click", url="http://www.example.com").message
    # A link's own text is kept: "&region" is no entity there (as a browser reads an attribute), an
    # apostrophe ends no double-quoted link, and single quotes are a link's quotes too.
    kept = fake.send("kept@example.com", URLTags="utm_source=mj", html=(
        '<a href="https://shop.example.com/list?page=2&region=eu">eu</a> <a href="https://x.example.com/it\'s">it</a>'
        " <a href='https://y.example.com/a?b=1&amp;c=2'>y</a>"))
    assert links_of(fake.events.find_message(kept)) == [
        "https://shop.example.com/list?page=2&region=eu&utm_source=mj", "https://x.example.com/it's?utm_source=mj",
        "https://y.example.com/a?b=1&c=2&utm_source=mj"]
    assert 'href="https://shop.example.com/list?page=2&region=eu&amp;utm_source=mj"' in fake.events.find_message(kept).html_part
    # Printed by the template language first, then tagged: a link a variable holds gets them too.
    printed = fake.send("bob@example.com", html='<a href="{{var:link}}">go</a>', URLTags="utm_source=mj",
                        TemplateLanguage=True, Variables={"link": "https://shop.example.com/"})
    assert links_of(fake.events.find_message(printed)) == ["https://shop.example.com/?utm_source=mj"]


def test_no_open_without_open_tracking_and_no_click_without_click_tracking(fake: Fake) -> None:
    # TrackOpens "disabled": no pixel, so Mailjet can record no open; TrackClicks "disabled": links are
    # not rewritten, so no click. Refused before anything happens (the message stays queued).
    no_opens = fake.send(TrackOpens="disabled")
    refused = fake.refused(no_opens, "open")
    assert refused.status == 400 and 'TrackOpens "disabled"' in refused.message
    assert fake.kinds(no_opens) == [] and fake.events.find_message(no_opens).status == "queued"
    assert fake.emit(no_opens, "click").payload["url"] == LINK  # clicks are tracked by the links alone
    no_clicks = fake.send("bob@example.com", TrackClicks="disabled")
    refused = fake.refused(no_clicks, "click", url=LINK)
    assert refused.status == 400 and 'TrackClicks "disabled"' in refused.message
    assert fake.kinds(no_clicks) == []
    fake.emit(no_clicks, "open")
    fake.emit(no_clicks, "spam")  # spam and unsub do not depend on tracking
    assert fake.kinds(no_opens) == ["sent", "click"] and fake.kinds(no_clicks) == ["sent", "open", "spam"]
    default = fake.send("cy@example.com", TrackOpens="account_default", TrackClicks="account_default")
    fake.emit(default, "open")
    fake.emit(default, "click")
    assert fake.kinds(default) == ["sent", "open", "click"]


def test_hard_bounce_replaces_sent_excludes_the_contact_and_ends_engagement(fake: Fake) -> None:
    message_id = fake.send()
    bounce = fake.emit(message_id, "bounce").payload
    assert (bounce["hard_bounce"], bounce["blocked"], bounce["error_related_to"], bounce["error"]) == (True, False, "recipient", "user unknown")
    fake.advance()
    assert fake.kinds(message_id) == ["bounce"]
    contact = fake.account.find_contact("ada@example.com")
    assert contact.is_excluded_from_campaigns and contact.to_json()["ExclusionFromCampaignsUpdatedAt"]
    for event in ("open", "click", "spam", "unsub"):
        assert "hard-bounced" in fake.refused(message_id, event).message
    assert "already hard-bounced" in fake.refused(message_id, "bounce").message
    assert fake.events.find_message(message_id).status == "bounced"


def test_bounce_error_pairs_are_the_documented_ones(fake: Fake) -> None:
    message_id = fake.send()
    assert "error_related_to must be one of" in fake.refused(message_id, "bounce", error_related_to="network").message
    assert "does not go with" in fake.refused(message_id, "bounce", error_related_to="domain", error="user unknown").message
    soft = fake.emit(message_id, "bounce", hard_bounce=False, error_related_to="domain", error="greylisted", comment="try later").payload
    assert (soft["hard_bounce"], soft["error"], soft["comment"]) == (False, "greylisted", "try later")
    assert not fake.account.find_contact("ada@example.com").is_excluded_from_campaigns
    fake.emit(message_id, "open")  # a soft bounce does not stop a later delivery
    assert fake.kinds(message_id) == ["bounce", "sent", "open"]


def test_the_half_of_an_error_pair_left_out_follows_the_half_given(fake: Fake) -> None:
    # The default pair (recipient/user unknown) used to fill in a missing half, so giving only
    # error_related_to "domain" was refused: "error 'user unknown' does not go with 'domain'".
    def pair(event: str, **fields: Any) -> tuple[str, str]:
        payload = fake.emit(fake.send(), event, **fields).payload
        return payload["error_related_to"], payload["error"]

    assert pair("bounce", error_related_to="domain") == ("domain", "invalid domain")
    assert pair("bounce", hard_bounce=False, error_related_to="domain") == ("domain", "relay/access denied")
    assert pair("bounce", hard_bounce=False, error_related_to="system") == ("system", "system issue")
    assert pair("bounce", error="no mail host") == ("domain", "no mail host")
    assert pair("blocked", error_related_to="spam") == ("spam", "sender blocked")
    assert pair("blocked", error="duplicate in campaign") == ("mailjet", "duplicate in campaign")
    assert "error must be one of" in fake.refused(fake.send(), "blocked", error="oops").message


def test_a_soft_bounce_before_sending_takes_the_place_of_sent(fake: Fake) -> None:
    # The receiving server refused it: no `sent` may follow when its timer comes.
    message_id = fake.send()
    fake.emit(message_id, "bounce", hard_bounce=False)
    fake.advance(timedelta(minutes=5))
    assert fake.kinds(message_id) == ["bounce"] and fake.events.find_message(message_id).status == "bounced"
    assert fake.account.contacts[fake.events.find_message(message_id).contact_id].delivered_count == 0


def test_opens_and_clicks_are_the_contacts_last_activity(fake: Fake) -> None:
    message_id = fake.send()
    contact = fake.account.contacts[fake.events.find_message(message_id).contact_id]
    opened = fake.emit(message_id, "open")
    assert contact.last_activity_at == opened.at
    fake.clock.advance(timedelta(minutes=3))
    clicked = fake.emit(message_id, "click")
    assert contact.last_activity_at == clicked.at > opened.at


def test_the_listing_keeps_the_newest_records_newest_last(fake: Fake) -> None:
    sent = [fake.send(f"user{index}@example.com") for index in range(3)]
    fake.advance()
    assert [record.message.message_id for record in fake.events.events(limit=2)] == sent[1:]
    assert [record.message.message_id for record in fake.events.events(event="sent", limit=1)] == sent[2:]
    assert fake.events.events(limit=0) == []


def test_a_bounce_says_which_address_and_error_by_default(fake: Fake) -> None:
    bounce = fake.emit(fake.send(), "bounce", hard_bounce=False, error="greylisted").payload
    assert bounce["comment"] == "452 4.2.2 <ada@example.com>: greylisted"


def test_unsub_takes_where_the_recipient_acted_from_and_only_an_integer_list(fake: Fake) -> None:
    fake.subscribe("ada@example.com")
    message_id = fake.send()
    assert "not a contact list" in fake.refused(message_id, "unsub", mj_list_id=True).message
    assert "not a contact list" in fake.refused(message_id, "unsub", mj_list_id="1").message
    unsub = fake.emit(message_id, "unsub", mj_list_id=1, ip="10.0.0.1", geo="DE", agent="Mutt").payload
    assert (unsub["ip"], unsub["geo"], unsub["agent"]) == ("10.0.0.1", "DE", "Mutt")


def test_an_asynchronous_bounce_may_follow_sent(fake: Fake) -> None:
    message_id = fake.send()
    fake.advance()
    fake.emit(message_id, "bounce")
    assert fake.kinds(message_id) == ["sent", "bounce"]


def test_blocked_only_instead_of_sending(fake: Fake) -> None:
    queued = fake.send()
    blocked = fake.emit(queued, "blocked").payload
    assert (blocked["error_related_to"], blocked["error"]) == ("mailjet", "preblocked")
    fake.advance()
    assert fake.kinds(queued) == ["blocked"]
    assert "was blocked" in fake.refused(queued, "open").message
    assert "was blocked" in fake.refused(queued, "bounce").message
    sent = fake.send("bob@example.com")
    fake.advance()
    assert "already sent" in fake.refused(sent, "blocked").message
    bounced = fake.send("dee@example.com")
    fake.emit(bounced, "bounce", hard_bounce=True)  # the receiving server refused it: never sent
    assert fake.refused(bounced, "blocked").message == f"message {bounced} already hard-bounced"
    assert fake.kinds(bounced) == ["bounce"]
    assert "does not go with" in fake.refused(fake.send("cy@example.com"), "blocked", error_related_to="spam", error="preblocked").message


def test_spam_marks_the_contact_once(fake: Fake) -> None:
    message_id = fake.send()
    assert fake.emit(message_id, "spam").payload["source"] == "JMRPP"
    contact = fake.account.find_contact("ada@example.com")
    assert contact.is_spam_complaining and contact.to_json()["IsSpamComplaining"] is True
    assert "already reported" in fake.refused(message_id, "spam").message
    assert fake.kinds(message_id) == ["sent", "spam"]


def test_unsub_needs_a_list_the_contact_is_on(fake: Fake) -> None:
    message_id = fake.send()
    assert "needs mj_list_id" in fake.refused(message_id, "unsub").message
    assert "not a contact list" in fake.refused(message_id, "unsub", mj_list_id=99).message
    assert "is not on contact list 1" in fake.refused(message_id, "unsub", mj_list_id=1).message
    fake.subscribe("ada@example.com")
    unsub = fake.emit(message_id, "unsub", mj_list_id=1).payload
    assert unsub["mj_list_id"] == 1 and unsub["ip"]
    contact = fake.account.find_contact("ada@example.com")
    recipient = fake.account.find_recipient(contact.id, 1)
    assert recipient.is_unsubscribed and recipient.unsubscribed_at is not None
    assert "already unsubscribed" in fake.refused(message_id, "unsub", mj_list_id=1).message


def test_unsub_of_a_send_api_message_takes_the_recipients_one_subscribed_list(fake: Fake) -> None:
    # The dashboard's Unsubscribe button posts no mj_list_id; a Send API message has no list.
    second, third = (fake.account.create_list({"Name": name}).id for name in ("second", "third"))
    fake.subscribe("ada@example.com", second)
    message_id = fake.send()
    assert fake.emit(message_id, "unsub").payload["mj_list_id"] == second
    assert "needs mj_list_id" in fake.refused(message_id, "unsub").message  # no subscribed list left
    fake.subscribe("ada@example.com", 1)
    fake.subscribe("ada@example.com", third)  # on two lists: which one is not said
    refused = fake.refused(message_id, "unsub").message
    assert "needs mj_list_id" in refused and "2 lists" in refused


def test_a_message_its_recipient_acted_on_cannot_bounce(fake: Fake) -> None:
    # A bounce says the mail never reached the mailbox; after an open (click, spam, unsub) it did.
    for event in ("open", "click", "spam"):
        message_id = fake.send(f"{event}@example.com")
        fake.emit(message_id, event)
        assert "cannot bounce" in fake.refused(message_id, "bounce").message
        assert "cannot bounce" in fake.refused(message_id, "bounce", hard_bounce=False).message
        assert fake.kinds(message_id) == ["sent", event]
        assert not fake.account.find_contact(f"{event}@example.com").is_excluded_from_campaigns
    # The simulated recipient's server bounces it, but a control open got there first.
    fake.events.configure_simulation({"bounce_rate": 1, "seed": 5})
    opened = fake.send("late@example.com")
    fake.emit(opened, "open")
    fake.advance(timedelta(hours=1))
    assert fake.kinds(opened) == ["sent", "open"] and fake.events.find_message(opened).status == "opened"


def test_an_unsub_event_only_unsubscribes_at_its_own_time(fake: Fake) -> None:
    # apply_action's unsub (managecontact: "active=true") used to reactivate an inactive subscription,
    # and UnsubscribedAt was the clock's time when a simulated unsub fired late, not the event's.
    fake.subscribe("ada@example.com")
    contact = fake.account.find_contact("ada@example.com")
    recipient = fake.account.find_recipient(contact.id, 1)
    recipient.is_active = False
    unsub = fake.emit(fake.send(), "unsub", mj_list_id=1)
    assert recipient.is_unsubscribed and not recipient.is_active
    assert recipient.unsubscribed_at == unsub.at
    fake.events.configure_simulation({"open_rate": 1, "unsub_rate": 1, "delay": "10m", "seed": 3})
    fake.subscribe("bob@example.com")
    fake.events.send_campaign({"list_id": 1, "subject": "News", "html": HTML})
    fake.advance(timedelta(days=2))
    (simulated,) = [record for record in fake.events.events(event="unsub") if record.message.recipient["Email"] == "bob@example.com"]
    bob = fake.account.find_recipient(fake.account.find_contact("bob@example.com").id, 1)
    assert bob.unsubscribed_at == simulated.at == fake.account.find_contact("bob@example.com").last_activity_at
    assert bob.unsubscribed_at < fake.clock.now() - timedelta(days=1)


def test_a_simulated_unsub_of_a_send_api_message_is_from_the_recipients_one_list(fake: Fake) -> None:
    # Only campaign messages were ever unsubscribed from: the README's unsub rate ("a share of opened
    # messages") never applied to what the Send API sent. As the control API's unsub, the recipient's
    # one subscribed list is the one; a recipient on no list (or several) does not unsubscribe.
    fake.events.configure_simulation({"open_rate": 1, "unsub_rate": 1, "delay": "10m", "seed": 3})
    fake.subscribe("ada@example.com")
    subscribed, listless = fake.send("ada@example.com"), fake.send("nolist@example.com")
    fake.advance(timedelta(hours=1))
    assert fake.kinds(subscribed) == ["sent", "open", "unsub"]
    assert fake.kinds(listless) == ["sent", "open"]
    ada = fake.account.find_recipient(fake.account.find_contact("ada@example.com").id, 1)
    (unsub,) = fake.events.events(event="unsub")
    assert ada.is_unsubscribed and ada.unsubscribed_at == unsub.at


# ---------------------------------------------------------------- campaigns


def test_campaign_goes_to_subscribed_contacts_not_excluded(fake: Fake) -> None:
    for email in ("ada@example.com", "bob@example.com", "cy@example.com", "di@example.com"):
        fake.subscribe(email)
    fake.account.apply_action(fake.account.find_contact("bob@example.com"), 1, "unsub")
    fake.account.find_contact("cy@example.com").is_excluded_from_campaigns = True
    fake.account.find_contact("di@example.com").is_spam_complaining = True
    campaign = fake.events.send_campaign({"list_id": 1, "subject": "Spring sale", "html": HTML, "name": "Spring 2026"})
    assert campaign.to_json()["skipped"] == [
        {"email": "bob@example.com", "reason": "unsubscribed"},
        {"email": "cy@example.com", "reason": "excluded from campaigns"},
        {"email": "di@example.com", "reason": "spam complaint"},
    ]
    (message_id,) = campaign.message_ids
    message = fake.events.find_message(message_id)
    assert (message.recipient["Email"], message.campaign_id, message.campaign_name, message.list_id) == ("ada@example.com", campaign.id, "Spring 2026", 1)
    assert message.sender == {"Email": "campaigns@segjet.test", "Name": "segjet"}
    fake.advance()
    assert message.events[0]["mj_campaign_id"] == campaign.id
    assert fake.emit(message_id, "unsub").payload["mj_list_id"] == 1  # the campaign's list by default


def test_campaign_skips_inactive_subscriptions(fake: Fake) -> None:
    for email in ("ada@example.com", "bob@example.com"):
        fake.subscribe(email)
    bob = fake.account.find_contact("bob@example.com")
    fake.account.find_recipient(bob.id, 1).is_active = False
    campaign = fake.events.send_campaign({"list_id": 1, "subject": "News", "html": HTML})
    assert campaign.skipped == [{"email": "bob@example.com", "reason": "subscription inactive"}]
    assert [fake.events.find_message(m).recipient["Email"] for m in campaign.message_ids] == ["ada@example.com"]


def test_campaign_requests_are_checked(fake: Fake) -> None:
    def refused(body: dict[str, Any]) -> str:
        with pytest.raises(EmailEventError) as raised:
            fake.events.send_campaign(body)
        return raised.value.message

    assert "not a contact list" in refused({"list_id": 5, "subject": "s", "html": "<p>x</p>"})
    assert "list_id must be" in refused({"list_id": "1", "subject": "s", "html": "<p>x</p>"})
    assert "subject must be" in refused({"list_id": 1, "subject": "", "html": "<p>x</p>"})
    assert "html must be" in refused({"list_id": 1, "subject": "s"})
    assert "from must be" in refused({"list_id": 1, "subject": "s", "html": "<p>x</p>", "from": "nobody"})
    # A Name that is no string used to go out as its Python repr ("{'x': 1}").
    assert "from must be" in refused({"list_id": 1, "subject": "s", "html": "<p>x</p>", "from": {"Email": "a@example.com", "Name": {"x": 1}}})
    assert "unknown field(s): to" in refused({"list_id": 1, "subject": "s", "html": "<p>x</p>", "to": "x"})
    assert refused({"list_id": 1, "subject": "s", "html": "<p>x</p>", "text": 5}) == "text must be a string"
    for name in ("", None, 7):
        assert refused({"list_id": 1, "subject": "s", "html": "<p>x</p>", "name": name}) == "name must be a non-empty string"
    assert fake.events.campaigns == {}
    empty = fake.events.send_campaign({"list_id": 1, "subject": "s", "html": "<p>x</p>", "from": "news@example.com"})
    assert empty.message_ids == [] and empty.name == "s"


def test_a_campaign_subject_holds_at_most_255_characters(fake: Fake) -> None:
    # As Send v3.1's Subject (mj-0006).
    fake.subscribe("ada@example.com")
    assert len(fake.events.send_campaign({"list_id": 1, "subject": "s" * 255, "html": HTML}).message_ids) == 1
    with pytest.raises(EmailEventError, match="at most 255 characters"):
        fake.events.send_campaign({"list_id": 1, "subject": "s" * 256, "html": HTML})


def test_custom_campaign_groups_transactional_emails(fake: Fake) -> None:
    first = fake.events.find_message(fake.send(CustomCampaign="welcome"))
    second = fake.events.find_message(fake.send("bob@example.com", CustomCampaign="welcome"))
    other = fake.events.find_message(fake.send("cy@example.com"))
    assert first.campaign_id == second.campaign_id > 0 and first.campaign_name == "welcome"
    assert (other.campaign_id, other.campaign_name) == (0, "")
    fake.advance()
    assert first.events[0]["customcampaign"] == "welcome" and first.events[0]["mj_campaign_id"] == first.campaign_id


def test_deduplicate_campaign_blocks_a_second_email_to_the_same_contact_in_the_campaign(fake: Fake) -> None:
    # DevGuide "Group into a campaign": DeduplicateCampaign true stops contacts from being emailed
    # several times in the same campaign; the event docs name the blocked error "duplicate in campaign".
    register(fake, "blocked", "http://hooks.test/blocked")
    connect(fake)
    first = fake.send(CustomCampaign="welcome")
    duplicate = fake.send(CustomCampaign="welcome", DeduplicateCampaign=True)  # answered success, with its MessageID
    other_contact = fake.send("bob@example.com", CustomCampaign="welcome", DeduplicateCampaign=True)
    other_campaign = fake.send(CustomCampaign="spring", DeduplicateCampaign=True)
    not_asked = fake.send(CustomCampaign="welcome")  # without the flag Mailjet lets it through
    message = fake.events.find_message(duplicate)
    assert duplicate != first and message.status == "queued" and fake.kinds(duplicate) == []
    fake.advance()
    assert fake.kinds(duplicate) == ["blocked"] and message.status == "blocked"
    for message_id in (first, other_contact, other_campaign, not_asked):
        assert fake.kinds(message_id) == ["sent"]
    (blocked,) = message.events
    assert (blocked["error_related_to"], blocked["error"]) == ("mailjet", "duplicate in campaign")
    assert blocked["time"] == int(message.created_at.timestamp() + 1)  # when `sent` would have come
    assert (blocked["customcampaign"], blocked["mj_campaign_id"]) == ("welcome", fake.events.find_message(first).campaign_id)
    assert_contract("mailjet.event.blocked", blocked)
    assert fake.account.find_contact("ada@example.com").delivered_count == 3  # first, other_campaign, not_asked
    assert "was blocked" in fake.refused(duplicate, "open").message
    assert [(url, body["MessageID"]) for url, body, _ in fake.transport.posts if "hooks.test" in url] == [("http://hooks.test/blocked", duplicate)]
    record = fake.events.events(event="blocked")[0].to_json()["segment"]
    assert record["state"] == "not_forwarded"
    assert all(call["properties"]["email_id"] != str(duplicate) for _, body, _ in segment_posts(fake) for call in body["batch"])


def test_deduplicate_campaign_counts_only_earlier_delivered_sends(fake: Fake) -> None:
    # A sandbox send delivers nothing, so it does not make the next one a duplicate; a dedup send to a
    # contact the campaign has not mailed yet goes; a repeat within one request is a duplicate.
    message = {"From": {"Email": "shop@example.com"}, "To": [{"Email": "ada@example.com"}], "TextPart": "x", "CustomCampaign": "welcome"}
    send(fake.account, {"SandboxMode": True, "Messages": [message]})
    status, body = send(fake.account, {"Messages": [{**message, "DeduplicateCampaign": True}] * 2})
    assert status == 200 and [result["Status"] for result in body["Messages"]] == ["success", "success"]
    first, second = (result["To"][0]["MessageID"] for result in body["Messages"])
    fake.advance()
    assert (fake.kinds(first), fake.kinds(second)) == (["sent"], ["blocked"])


def test_a_template_language_error_blocks_the_message_unless_template_error_deliver(fake: Fake) -> None:
    # dev.mailjet.com/template-language/SMTP: on an error in the template language "by default the
    # delivery is deactivated and the message will be blocked"; TemplateErrorDeliver delivers it.
    # The event docs name that blocked error: content / "error in template language".
    fake.account.ensure_contact("ada@example.com")
    template = {"TemplateLanguage": True, "Subject": "Hi {{var:name}}", "Variables": {"day": "Monday"}}
    blocked_id = fake.send(**template)
    delivered_id = fake.send(**template, TemplateErrorDeliver=True)
    fine_id = fake.send(**{**template, "Variables": {"name": "Ada"}})
    fake.advance()
    assert (fake.kinds(blocked_id), fake.kinds(delivered_id), fake.kinds(fine_id)) == (["blocked"], ["sent"], ["sent"])
    blocked = fake.events.find_message(blocked_id)
    (event,) = blocked.events
    assert (event["error_related_to"], event["error"]) == ("content", "error in template language")
    assert_contract("mailjet.event.blocked", event)
    assert blocked.template_error == '{{var:name}}: the variable "name" has no value and the expression no default'
    assert blocked.subject == fake.events.find_message(delivered_id).subject == "Hi "
    assert fake.events.find_message(fine_id).to_json()["subject"] == "Hi Ada"
    assert fake.events.find_message(fine_id).template_error == ""


def test_template_language_prints_each_recipients_own_contact_properties(fake: Fake) -> None:
    account = fake.account
    account.create_property({"Name": "firstname", "DataType": "str"})
    account.set_contact_data(str(account.ensure_contact("ada@example.com").id), {"Data": [{"Name": "FirstName", "Value": "Ada"}]})
    message = {"From": {"Email": "shop@example.com"}, "To": [{"Email": "ada@example.com"}, {"Email": "bob@example.com"}],
               "TemplateLanguage": True, "TextPart": 'Dear {{data:firstname:"passenger"}}'}
    status, body = send(account, {"Messages": [message]})
    assert status == 200
    ada, bob = (fake.events.find_message(result["MessageID"]) for result in body["Messages"][0]["To"])
    assert (ada.text_part, bob.text_part) == ("Dear Ada", "Dear passenger")
    without_language = send(account, {"Messages": [{**message, "TemplateLanguage": False}]})[1]
    assert fake.events.find_message(without_language["Messages"][0]["To"][0]["MessageID"]).text_part == message["TextPart"]


def test_a_duplicate_in_campaign_has_no_simulated_recipient(fake: Fake) -> None:
    fake.events.configure_simulation({"open_rate": 1, "click_rate": 1, "bounce_rate": 0, "seed": 5})
    fake.send(CustomCampaign="welcome")
    duplicate = fake.send(CustomCampaign="welcome", DeduplicateCampaign=True)
    fake.advance(timedelta(hours=1))
    assert fake.kinds(duplicate) == ["blocked"]


# ---------------------------------------------------------------- simulation


def test_simulation_settings_are_validated_and_merged() -> None:
    simulation = Simulation(seed=1).merged({"open_rate": 0.5, "delay": "2h"})
    assert simulation.merged({"click_rate": 1}).to_json() == {
        "open_rate": 0.5, "click_rate": 1.0, "bounce_rate": 0.0, "spam_rate": 0.0, "unsub_rate": 0.0,
        "delay": "2h", "seed": 1, "active": True,
    }
    for bad, text in (
        ({"open_rate": 1.5}, "from 0 to 1"),
        ({"open_rate": True}, "from 0 to 1"),
        ({"delay": "soon"}, "invalid duration"),
        ({"seed": "x"}, "seed must be an integer"),
        ({"opens": 1}, "unknown field(s): opens"),
    ):
        with pytest.raises(ValueError, match=re.escape(text)):
            simulation.merged(bad)
    assert not Simulation().active


def test_simulation_seed_is_an_integer_not_a_boolean_and_settings_are_saved(fake: Fake) -> None:
    with pytest.raises(ValueError, match="seed must be an integer"):
        Simulation().merged({"seed": True})
    # A changed simulation is a change of the account row, which --data-dir saves.
    fake.account.changes.enabled = True
    fake.events.configure_simulation({"open_rate": 0.5})
    assert (fake.account.api_key, "account", 0) in fake.account.changes.rows


def test_simulated_bounces_are_hard_only_for_permanent_errors(fake: Fake) -> None:
    fake.events.configure_simulation({"bounce_rate": 1, "seed": 11})
    for number in range(30):
        fake.send(f"user{number}@example.com")
    fake.advance(timedelta(minutes=1))
    bounces = [record.payload for record in fake.events.events(event="bounce")]
    assert len(bounces) == 30 and fake.events.events(event="sent") == []
    assert all(b["hard_bounce"] == (b["error"] in ("user unknown", "mailbox inactive", "invalid domain", "no mail host")) for b in bounces)
    assert {b["hard_bounce"] for b in bounces} == {True, False}


def test_a_simulation_delay_too_long_for_the_calendar_is_refused(fake: Fake) -> None:
    # A delay the calendar cannot hold after the clock's last moment made every later send a 500.
    with pytest.raises(ValueError, match=re.escape("delay must be at most 365d")):
        fake.events.configure_simulation({"open_rate": 1, "click_rate": 1, "delay": "3000000d"})
    assert fake.events.simulation.delay_text == "10m"
    fake.events.configure_simulation({"open_rate": 1, "click_rate": 1, "delay": "365d"})
    fake.clock.set(LATEST)
    message_id = fake.send()  # the longest delay still fits after the clock's last moment
    assert fake.events.find_message(message_id).status == "queued"


def simulate(seed: int, sends: int = 30) -> list[tuple[Any, ...]]:
    fake = Fake(seed=3)
    try:
        fake.events.configure_simulation(
            {"open_rate": 0.6, "click_rate": 0.5, "bounce_rate": 0.2, "spam_rate": 0.1, "unsub_rate": 0.3, "delay": "1h", "seed": seed}
        )
        for number in range(sends):
            fake.subscribe(f"user{number}@example.com")
        campaign = fake.events.send_campaign({"list_id": 1, "subject": "News", "html": HTML})
        fake.advance(timedelta(hours=4))
        return [
            # Times relative to the send: the virtual clock runs on from real time.
            (r.event, r.message.message_id, r.at - r.message.created_at, r.payload.get("ip"), r.payload.get("url"), r.payload.get("error"))
            for r in fake.events.records
            if r.message.message_id in campaign.message_ids
        ]
    finally:
        fake.close()


def test_simulation_is_reproducible_for_a_seed() -> None:
    first, again, other = simulate(11), simulate(11), simulate(12)
    assert first == again and first != other
    kinds = {event for event, *_ in first}
    assert {"sent", "open", "click", "bounce", "unsub"} <= kinds
    # Every message either bounced or was sent; clicks follow opens, all within the delays.
    by_message: dict[int, list[str]] = {}
    for event, message_id, *_ in sorted(first, key=lambda row: row[2]):
        by_message.setdefault(message_id, []).append(event)
    for events in by_message.values():
        assert (events[0] == "bounce") != ("sent" in events)
        if "click" in events:
            assert events.index("open") < events.index("click")


def simulate_tracking(**tracking: str) -> list[tuple[Any, ...]]:
    """The records of 20 simulated recipients of emails sent with `tracking` (TrackOpens/TrackClicks)."""
    fake = Fake(seed=3)
    try:
        fake.events.configure_simulation(
            {"open_rate": 0.7, "click_rate": 0.6, "bounce_rate": 0.1, "spam_rate": 0.3, "delay": "1h", "seed": 21}
        )
        for number in range(20):
            fake.send(f"user{number}@example.com", **tracking)
        fake.advance(timedelta(hours=4))
        return [
            (r.event, r.message.message_id, r.at - r.message.created_at, r.payload.get("ip"), r.payload.get("url"))
            for r in fake.events.records
        ]
    finally:
        fake.close()


def test_the_simulation_plans_no_open_or_click_that_tracking_cannot_see() -> None:
    # The same seed and MessageIDs make the same recipients: they read, click and complain alike; only
    # what Mailjet can record differs. A click without a tracked open stays (links are rewritten anyway).
    tracked = simulate_tracking()
    assert {"sent", "open", "click", "bounce", "spam"} <= {row[0] for row in tracked}
    assert simulate_tracking(TrackOpens="disabled") == [row for row in tracked if row[0] != "open"]
    assert simulate_tracking(TrackClicks="disabled") == [row for row in tracked if row[0] != "click"]
    both = simulate_tracking(TrackOpens="disabled", TrackClicks="disabled")
    assert both == [row for row in tracked if row[0] not in ("open", "click")]
    assert simulate_tracking(TrackOpens="enabled", TrackClicks="account_default") == tracked


def test_simulation_only_acts_through_the_same_rules(fake: Fake) -> None:
    fake.events.configure_simulation({"open_rate": 1, "click_rate": 1, "delay": "10m", "seed": 5})
    message_id = fake.send()
    fake.emit(message_id, "bounce")  # the control API gets there first: the recipient never sees it
    fake.advance(timedelta(hours=1))
    assert fake.kinds(message_id) == ["bounce"]
    clicked = fake.send("bob@example.com")
    fake.advance(timedelta(hours=1))
    assert fake.kinds(clicked) == ["sent", "open", "click"]
    records = fake.events.events(message_id=clicked)
    assert records[1].payload["ip"] == records[2].payload["ip"]  # the same recipient device


def test_reset_forgets_events_and_watches_the_new_account(fake: Fake) -> None:
    fake.events.configure_simulation({"open_rate": 1})
    fake.send()
    fake.service.reset()
    fake.clock.reset(owner="mailjet")
    assert fake.events.records == [] and not fake.events.simulation.active
    message_id = fake.send()
    fake.advance()
    assert fake.kinds(message_id) == ["sent"]


# ---------------------------------------------------------------- payloads and Segment mapping


def every_event(fake: Fake) -> list[EmailEvent]:
    """One record of each of the seven types, on one campaign and two transactional messages."""
    fake.subscribe("ada@example.com")
    campaign = fake.events.send_campaign({"list_id": 1, "subject": "Spring sale", "html": HTML})
    (message_id,) = campaign.message_ids
    fake.advance()
    for event in ("open", "click", "spam", "unsub"):
        fake.emit(message_id, event)
    fake.emit(fake.send("bounce@example.com", CustomID="helloworld", EventPayload="Eticket,1234"), "bounce")
    fake.emit(fake.send("blocked@example.com"), "blocked")
    return fake.events.records


def test_webhook_payloads_match_the_contracts(fake: Fake) -> None:
    records = every_event(fake)
    assert sorted({record.event for record in records}) == ["blocked", "bounce", "click", "open", "sent", "spam", "unsub"]
    for record in records:
        assert_contract(f"mailjet.event.{record.event}", record.payload)
    bounce = next(record.payload for record in records if record.event == "bounce")
    assert (bounce["CustomID"], bounce["Payload"], bounce["mj_campaign_id"], bounce["customcampaign"]) == ("helloworld", "Eticket,1234", 0, "")
    assert list(bounce)[:8] == ["event", "time", "MessageID", "Message_GUID", "email", "mj_campaign_id", "mj_contact_id", "customcampaign"]


def test_track_calls_match_the_email_contracts(fake: Fake) -> None:
    records = every_event(fake)
    ada = fake.account.find_contact("ada@example.com")
    fake.account.create_property({"Name": "segment_user_id", "Datatype": "str"})
    ada.properties["segment_user_id"] = "user-ada"
    names = {}
    for record in records:
        call = track_call(record, fake.account, f"mj-{record.id}")
        if record.event == "blocked":
            assert call is None
            continue
        assert_contract(SEGMENT_CONTRACTS[call["event"]], call)
        assert all(isinstance(value, str) for value in call["properties"].values())
        assert call["context"]["integration"] == {"name": "mailjet", "version": "1.0.0"}
        assert call["timestamp"].endswith("Z") and call["messageId"] == f"mj-{record.id}"
        names[record.event] = call
    assert set(names) == {"sent", "open", "click", "spam", "unsub", "bounce"}
    opened = names["open"]
    assert opened["userId"] == "user-ada" and "anonymousId" not in opened
    assert opened["context"]["ip"] == records[1].payload["ip"] and opened["context"]["userAgent"] == records[1].payload["agent"]
    assert opened["context"]["traits"] == {"email": "ada@example.com"}
    assert opened["properties"]["email_subject"] == "Spring sale" and opened["properties"]["campaign_name"] == "Spring sale"
    assert names["click"]["properties"]["link_url"] == LINK
    assert (names["unsub"]["properties"]["list_id"], names["unsub"]["properties"]["list_name"]) == ("1", "segjet")
    bounced = names["bounce"]
    assert bounced["anonymousId"] == "bounce@example.com" and "userId" not in bounced
    assert bounced["properties"]["campaign_id"] == "" and "ip" not in bounced["context"]
    assert names["sent"]["properties"]["email_id"] == str(records[0].message.message_id)


# ---------------------------------------------------------------- webhooks


def register(fake: Fake, event_type: str, url: str, version: int = 1, backup: bool = False) -> int:
    return fake.account.create_callback({"EventType": event_type, "Url": url, "Version": version, "IsBackup": backup}).id


def test_webhook_version_1_posts_one_object_per_event(fake: Fake) -> None:
    register(fake, "sent", "http://hooks.test/sent")
    register(fake, "open", "http://user:pw@hooks.test/open")
    first, second = fake.send(), fake.send("bob@example.com")
    fake.advance()
    fake.emit(first, "open")
    fake.advance(timedelta(0))
    assert [(url, body["event"]) for url, body, _ in fake.transport.posts] == [
        ("http://hooks.test/sent", "sent"), ("http://hooks.test/sent", "sent"), ("http://user:pw@hooks.test/open", "open")
    ]
    assert {body["MessageID"] for _, body, _ in fake.transport.posts[:2]} == {first, second}
    webhook = fake.events.events(event="open")[0].to_json()["webhook"]
    assert (webhook["state"], webhook["version"], len(webhook["attempts"]), webhook["attempts"][0]["status"]) == ("delivered", 1, 1, 200)
    assert fake.events.events(event="click") == []
    fake.emit(first, "click")
    assert fake.events.events(event="click")[0].to_json()["webhook"]["state"] == "none"


def test_webhook_version_2_never_puts_two_seconds_in_one_batch(fake: Fake) -> None:
    # An event of a later second found the earlier second's batch still open (its timer not run
    # yet): it must start a batch of its own, not ride along with the earlier second's events.
    register(fake, "open", "http://hooks.test/open", version=2)
    message = fake.send()
    fake.advance()
    fake.emit(message, "open")
    fake.clock.advance(timedelta(seconds=2))  # the first second's batch is due; its timer has not run
    fake.emit(message, "open")
    fake.loop.run_until_complete(settle(fake.clock))
    fake.advance(timedelta(seconds=1))
    assert [[event["event"] for event in body] for _, body, _ in fake.transport.posts] == [["open"], ["open"]]


@pytest.mark.parametrize(("moment", "second"), [
    (datetime(8999, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone.utc), 221_845_391_999),
    (datetime(1000, 1, 1, 0, 0, 0, 999_999, tzinfo=timezone.utc), -30_610_224_000),
    (datetime(1969, 12, 31, 23, 59, 58, 700_000, tzinfo=timezone.utc), -2),
])
def test_unix_time_is_the_second_a_moment_falls_in_across_the_clocks_range(moment: datetime, second: int) -> None:
    # A float timestamp's step passes a microsecond far from 1970: the last microsecond of a second rounded up to the next.
    assert unix_time(moment) == second


def test_event_time_before_1970_is_the_second_it_happened_in(fake: Fake) -> None:
    # int() rounds toward zero: before 1970 an event at -1.3 s had `time` 0, after its own moment,
    # and its Version 2 batch was keyed (and sent) by that later second.
    register(fake, "open", "http://hooks.test/open", version=2)
    fake.clock.set(parse_iso("1969-12-31T23:59:57.000Z"))
    message = fake.send()
    fake.advance()
    fake.clock.set(parse_iso("1969-12-31T23:59:58.700Z"))
    first = fake.emit(message, "open")
    fake.clock.advance(timedelta(milliseconds=200))
    second = fake.emit(message, "open")
    assert first.payload["time"] == second.payload["time"] == -2
    fake.advance(timedelta(seconds=1))
    assert [[event["time"] for event in body] for _, body, _ in fake.transport.posts] == [[-2, -2]]


def test_webhook_version_2_keeps_one_batch_per_second_when_an_earlier_second_comes_late(fake: Fake) -> None:
    # A timer fires after the clock passed it, so an event of an earlier second (here A's `sent`)
    # can be routed after one of the current second: it took the URL's open batch over, and the
    # current second's next event started a third POST instead of joining its second's batch.
    register(fake, "sent", "http://hooks.test/all", version=2)
    register(fake, "open", "http://hooks.test/all", version=2)
    now = fake.clock.now()
    fake.clock.set(now.replace(microsecond=0) + timedelta(seconds=1, milliseconds=1))
    late = fake.send()  # its `sent` is due in 1 s
    fake.clock.advance(timedelta(seconds=3))  # past it; the timer has not run yet
    current = fake.send("bob@example.com")
    fake.emit(current, "open")  # sent + open of bob, this second
    fake.loop.run_until_complete(settle(fake.clock))  # ada's sent, of 3 s ago
    fake.emit(current, "open")  # bob again, the same second
    fake.advance(timedelta(seconds=1))
    fake.advance(timedelta(0))
    bodies = sorted([[(e["event"], e["MessageID"]) for e in body] for _, body, _ in fake.transport.posts], key=len)
    assert bodies == [[("sent", late)], [("sent", current), ("open", current), ("open", current)]]


def test_webhook_version_2_groups_the_events_of_a_second(fake: Fake) -> None:
    for event_type in ("sent", "open"):
        register(fake, event_type, "http://hooks.test/all", version=2)
    # The clock runs with real time: start just after a whole second, so that the wall clock does not
    # end the second between the open and the check that its batch still waits.
    now = fake.clock.now()
    fake.clock.set(now.replace(microsecond=0) + timedelta(seconds=1, milliseconds=1))
    first, second = fake.send(), fake.send("bob@example.com")
    fake.advance(timedelta(0))
    fake.emit(first, "open")  # delivers first now, same second: sent + open
    fake.advance(timedelta(0))
    assert fake.transport.posts == []  # the second is not over yet
    fake.advance(timedelta(seconds=1))
    fake.advance(timedelta(seconds=1))
    bodies = [body for _, body, _ in fake.transport.posts]
    assert [[(e["event"], e["MessageID"]) for e in body] for body in bodies] == [
        [("sent", first), ("open", first)],
        [("sent", second)],
    ]
    record = fake.events.events(event="open")[0].to_json()["webhook"]
    assert (record["state"], record["batch_size"], record["version"]) == ("delivered", 2, 2)


def test_failing_webhook_retries_every_30s_for_24h_then_dies(fake: Fake) -> None:
    primary = register(fake, "open", "http://hooks.test/down")
    backup = register(fake, "open", "http://hooks.test/backup", backup=True)
    fake.transport.statuses = [201]  # only 200 counts
    message_id = fake.send()
    fake.emit(message_id, "open")
    fake.advance(timedelta(0))
    webhook = fake.events.events(event="open")[0].webhook
    assert webhook.state == "retrying" and len(webhook.attempts) == 1 and webhook.reason == "HTTP 201"
    first_at = webhook.attempts[0]["at"]
    for _ in range(3):
        fake.advance(timedelta(seconds=30))
    assert len(webhook.attempts) == 4 and fake.account.callbacks[primary].status == "alive"
    fake.advance(timedelta(hours=24))
    assert webhook.state == "failed" and "Status dead" in webhook.reason and len(webhook.attempts) == 5
    assert webhook.attempts[0]["at"] == first_at
    assert fake.account.callbacks[primary].to_json()["Status"] == "dead"
    fake.transport.statuses = [200]
    fake.emit(message_id, "open")
    fake.advance(timedelta(0))
    latest = fake.events.events(event="open")[-1].to_json()["webhook"]
    assert (latest["url"], latest["callback_ids"], latest["state"]) == ("http://hooks.test/backup", [backup], "delivered")


def test_the_last_retry_is_at_the_24_hour_mark(fake: Fake) -> None:
    # Documented: retries "stop 24 hours after the initial failure". After a clock jump the retry
    # comes at the new time; the next one may not go past the 24 hours.
    register(fake, "open", "http://hooks.test/down")
    fake.transport.statuses = [500]
    fake.emit(fake.send(), "open")
    fake.advance(timedelta(0))
    webhook = fake.events.events(event="open")[0].webhook
    deadline = webhook.first_failure_at + timedelta(hours=24)
    fake.advance(timedelta(hours=24) - timedelta(seconds=10))
    assert webhook.state == "retrying" and len(webhook.attempts) == 2
    assert webhook.due == deadline
    fake.advance(timedelta(seconds=10))
    assert webhook.state == "failed" and len(webhook.attempts) == 3
    assert parse_iso(webhook.attempts[-1]["at"]) >= deadline - timedelta(milliseconds=1)


def test_a_delivery_whose_webhook_was_suspended_meanwhile_fails_at_its_next_attempt(fake: Fake) -> None:
    callback = register(fake, "open", "http://hooks.test/down")
    fake.transport.statuses = [500, 200]
    fake.emit(fake.send(), "open")
    fake.advance(timedelta(0))
    webhook = fake.events.events(event="open")[0].webhook
    assert webhook.state == "retrying"
    fake.account.update_callback(str(callback), {"Status": "dead"})
    fake.advance(timedelta(seconds=30))
    assert webhook.state == "failed" and "suspended" in webhook.reason
    assert len(fake.transport.posts) == 1


def test_an_endpoint_that_answered_200_before_and_during_the_failures_stays_alive(fake: Fake) -> None:
    # What counts is its latest 200: one from before the failing event began proves nothing, one
    # during the 24 hours does.
    callback = register(fake, "open", "http://hooks.test/hook")
    fake.transport.answer = lambda url, body: 400 if body["email"] == "poison@example.com" else 200
    fake.emit(fake.send("early@example.com"), "open")
    fake.advance(timedelta(0))
    fake.advance(timedelta(minutes=5))
    fake.emit(fake.send("poison@example.com"), "open")
    fake.advance(timedelta(0))
    fake.advance(timedelta(hours=12))
    fake.emit(fake.send("fine@example.com"), "open")
    fake.advance(timedelta(0))
    fake.advance(timedelta(hours=12))
    early, poison, fine = (record.webhook for record in fake.events.events(event="open"))
    assert early.state == fine.state == "delivered" and early.to_json()["next_attempt_at"] is None
    assert poison.state == "failed" and "stays alive" in poison.reason
    assert fake.account.callbacks[callback].status == "alive"


@pytest.mark.parametrize("answered_since", [False, True], ids=["none-since", "200-since"])
def test_after_a_clock_set_back_only_the_last_200_keeps_a_failing_endpoint_alive(fake: Fake, answered_since: bool) -> None:
    # A 200 of 2031, answered before the clock was set back to 2030, counted as "answered meanwhile"
    # and kept the webhook alive through 24 h of nothing but failures (no backup URL took over); kept
    # as the latest time instead, it hid a 200 answered during those 24 h, and suspended a live one.
    callback = register(fake, "open", "http://hooks.test/hook")
    fake.transport.answer = lambda url, body: 500 if body["email"] == "late@example.com" else 200
    fake.clock.set(datetime(2031, 1, 1, tzinfo=timezone.utc))
    fake.emit(fake.send("early@example.com"), "open")
    fake.advance(timedelta(0))
    fake.clock.set(datetime(2030, 1, 1, tzinfo=timezone.utc))
    fake.emit(fake.send("late@example.com"), "open")
    fake.advance(timedelta(0))
    if answered_since:
        fake.advance(timedelta(hours=6))
        fake.emit(fake.send("mid@example.com"), "open")
        fake.advance(timedelta(0))
    for _ in range(2):
        fake.advance(timedelta(hours=12, minutes=1))
    late = next(record.webhook for record in fake.events.events(event="open") if record.payload["email"] == "late@example.com")
    assert late.state == "failed"
    assert ("stays alive" in late.reason) is answered_since
    assert fake.account.callbacks[callback].status == ("alive" if answered_since else "dead")


def test_a_webhook_that_recovers_is_delivered(fake: Fake) -> None:
    register(fake, "sent", "http://hooks.test/flaky")
    fake.transport.statuses = [None, 500, 200]
    fake.send()
    fake.advance()
    webhook = fake.events.records[0].webhook
    assert webhook.state == "retrying" and "connection error" in webhook.reason
    fake.advance(timedelta(seconds=30))
    fake.advance(timedelta(seconds=30))
    assert webhook.state == "delivered" and [a["status"] for a in webhook.attempts] == [None, 500, 200]


def test_a_slow_endpoint_holds_neither_the_clock_nor_other_urls(fake: Fake) -> None:
    register(fake, "sent", "http://hooks.test/sent")
    register(fake, "open", "http://hooks.test/open")
    connect(fake)
    first, second = fake.send(), fake.send("bob@example.com")
    fake.emit(first, "open")  # each open delivers its message first: sent, open, sent, open
    fake.emit(second, "open")
    gate = fake.transport.gate = asyncio.Event()
    # The timers return while every POST hangs: the clock is shared by all three servers.
    fake.loop.run_until_complete(asyncio.wait_for(fake.clock.run_due(), timeout=5))

    async def first_posts() -> None:
        while len(fake.transport.posts) < 3:
            await asyncio.sleep(0)

    fake.loop.run_until_complete(asyncio.wait_for(first_posts(), timeout=5))
    in_flight = [(url, body["event"] if "event" in body else "batch") for url, body, _ in fake.transport.posts]
    # One POST per URL at a time: each URL's second event waits for the first answer.
    assert sorted(in_flight) == [
        ("http://hooks.test/open", "open"), ("http://hooks.test/sent", "sent"), ("http://segment.test/v1/batch", "batch")
    ]
    assert [record.webhook.state for record in fake.events.records] == ["pending"] * 4
    gate.set()
    fake.advance(timedelta(0))
    delivered = [(url, body["MessageID"]) for url, body, _ in fake.transport.posts if "/hooks.test/" in url]
    assert [post for post in delivered if post[0].endswith("/open")] == [("http://hooks.test/open", first), ("http://hooks.test/open", second)]
    assert [record.webhook.state for record in fake.events.records] == ["delivered"] * 4
    assert all(record.segment.state == "delivered" for record in fake.events.records)


@pytest.mark.parametrize("version", [1, 2])
def test_one_clock_move_makes_every_due_event_happen_with_webhooks_listening(fake: Fake, version: int) -> None:
    # A clock move fires due timers in rounds (at most 100), a round ending at the first timer
    # scheduled since. Each event's delivery was scheduled at the event's time, in the past once the
    # clock had jumped, so it went first and every round fired one event: with 150 `sent` due, the
    # clock's answer came while 50 were still to happen (reported by the integration no-loss test).
    register(fake, "sent", "http://hooks.test/sent", version=version)
    connect(fake)
    for n in range(150):
        fake.send(f"user{n}@example.com")
    fake.clock.advance(timedelta(minutes=1))
    fake.loop.run_until_complete(fake.clock.run_due())  # one `POST /_emulator/clock`
    assert len(fake.events.records) == 150
    assert all(record.webhook is not None and record.segment.call is not None for record in fake.events.records)
    fake.loop.run_until_complete(settle(fake.clock))
    assert {record.webhook.state for record in fake.events.records} == {"delivered"}
    posted = [body for url, body, _ in fake.transport.posts if url == "http://hooks.test/sent"]
    events = [event for body in posted for event in (body if version == 2 else [body])]
    assert sorted(event["MessageID"] for event in events) == sorted(r.message.message_id for r in fake.events.records)


def test_fixing_a_webhook_url_sends_the_waiting_retries_there(fake: Fake) -> None:
    callback = register(fake, "open", "http://hooks.test/typo")
    fake.transport.answer = lambda url, body: None if "typo" in url else 200
    waiting = fake.send()
    fake.emit(waiting, "open")
    fake.advance(timedelta(0))
    webhook = fake.events.events(event="open")[0].webhook
    assert webhook.state == "retrying"
    # Documented: "To reactivate a suspended endpoint URL, you need to update it with a new URL".
    fake.account.update_callback(str(callback), {"Url": "http://hooks.test/fixed"})
    fake.emit(fake.send("bob@example.com"), "open")
    fake.advance(timedelta(seconds=30))
    assert webhook.state == "delivered" and webhook.url == "http://hooks.test/fixed"
    assert [a["url"] for a in webhook.attempts] == ["http://hooks.test/typo", "http://hooks.test/fixed"]
    fake.advance(timedelta(hours=25))
    assert fake.account.callbacks[callback].status == "alive"
    assert [record.webhook.state for record in fake.events.events(event="open")] == ["delivered", "delivered"]


def test_the_24_hours_before_a_suspension_count_at_the_url_of_now(fake: Fake) -> None:
    callback = register(fake, "open", "http://hooks.test/old")
    fake.transport.statuses = [500]
    fake.emit(fake.send(), "open")
    fake.advance(timedelta(0))
    fake.advance(timedelta(hours=23))
    fake.account.update_callback(str(callback), {"Url": "http://hooks.test/new"})  # down too
    fake.advance(timedelta(hours=1, seconds=1))  # 24 h after the first failure at the old URL
    webhook = fake.events.events(event="open")[0].webhook
    assert webhook.state == "retrying" and webhook.attempts[-1]["url"] == "http://hooks.test/new"
    assert fake.account.callbacks[callback].status == "alive"
    fake.advance(timedelta(hours=24))
    assert webhook.state == "failed" and "Status dead" in webhook.reason
    assert fake.account.callbacks[callback].status == "dead"


def test_one_event_an_endpoint_keeps_refusing_does_not_suspend_it(fake: Fake) -> None:
    callback = register(fake, "open", "http://hooks.test/hook")
    fake.transport.answer = lambda url, body: 400 if body["email"] == "poison@example.com" else 200
    fake.emit(fake.send("poison@example.com"), "open")
    fake.advance(timedelta(0))
    fake.advance(timedelta(hours=12))
    fake.emit(fake.send("fine@example.com"), "open")
    fake.advance(timedelta(0))
    fake.advance(timedelta(hours=12))
    poison, fine = (record.webhook for record in fake.events.events(event="open"))
    assert fine.state == "delivered"
    assert poison.state == "failed" and "stays alive" in poison.reason
    assert fake.account.callbacks[callback].status == "alive"
    fake.emit(fake.send("later@example.com"), "open")
    fake.advance(timedelta(0))
    assert fake.events.events(event="open")[-1].webhook.state == "delivered"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"Url": "http://hooks.test/new"}, "given up; the webhook has another URL now"),
        ({"Status": "dead"}, "given up; the webhook was deleted or suspended meanwhile"),
        (None, "given up; the webhook was deleted or suspended meanwhile"),  # deleted
    ],
)
def test_a_webhook_changed_during_its_last_attempt_is_left_as_it_is_now(
    fake: Fake, change: dict[str, Any] | None, reason: str
) -> None:
    # The 24 hours ran out while the last attempt was in flight, and meanwhile its webhook was
    # changed: it is not suspended, and the reason says why. A deleted or suspended one used to be
    # said to "have another URL now".
    callback = register(fake, "open", "http://hooks.test/down")
    fake.transport.statuses = [500]
    fake.emit(fake.send(), "open")
    fake.advance(timedelta(0))
    webhook = fake.events.events(event="open")[0].webhook
    deadline = webhook.first_failure_at + timedelta(hours=24)

    def answer(url: str, body: Any) -> int:
        if fake.clock.now() >= deadline and callback in fake.account.callbacks:
            if change is None:
                fake.account.delete_callback(str(callback))
            else:
                fake.account.update_callback(str(callback), change)
        return 500

    fake.transport.answer = answer
    fake.advance(timedelta(hours=24))
    assert (webhook.state, webhook.reason) == ("failed", f"HTTP 500; retried every 30 s for 24 h, {reason}")
    assert change is None or fake.account.callbacks[callback].status == change.get("Status", "alive")


def test_a_webhook_delivery_failing_unexpectedly_ends_failed_and_the_next_is_delivered(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bug outside the HTTP call (here in recording the answer): the lane's task ended, and the
    # deliveries behind it in the lane stayed pending forever.
    register(fake, "open", "http://hooks.test/hook")
    webhooks = fake.outbox.webhooks
    record = webhooks._record

    def record_failing_for_broken(delivery, at, outcome) -> None:  # type: ignore[no-untyped-def]
        if delivery.body()["email"] == "broken@example.com":
            raise RuntimeError("a bug")
        record(delivery, at, outcome)

    monkeypatch.setattr(webhooks, "_record", record_failing_for_broken)
    fake.emit(fake.send("broken@example.com"), "open")
    fake.emit(fake.send("fine@example.com"), "open")
    fake.advance(timedelta(0))
    broken, fine = (record.webhook for record in fake.events.events(event="open"))
    assert broken.state == "failed" and broken.reason == "internal error: RuntimeError: a bug"
    assert fine.state == "delivered"


def test_a_webhook_delivery_failing_unexpectedly_is_saved_when_it_fails(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    # Outside any request or timer, as an answer's outcome is: nothing else would save it (--data-dir).
    register(fake, "open", "http://hooks.test/hook")

    def record_failing(delivery, at, outcome) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug")

    monkeypatch.setattr(fake.outbox.webhooks, "_record", record_failing)
    changes = fake.account.changes
    changes.enabled, changes.save = True, changes.rows.clear  # a store writes and forgets what it saved
    fake.emit(fake.send("broken@example.com"), "open")
    fake.advance(timedelta(0))
    [broken] = (record.webhook for record in fake.events.events(event="open"))
    assert broken.state == "failed" and changes.rows == set()


# ---------------------------------------------------------------- Segment forwarding


def connect(fake: Fake, **changes: Any) -> None:
    fake.account.update_app_connection({"writeKey": "wk-1", "sendEvents": True, **changes})


def segment_posts(fake: Fake) -> list[tuple[str, Any, dict[str, str]]]:
    return [post for post in fake.transport.posts if post[0].endswith("/v1/batch")]


def test_nothing_goes_to_segment_unless_switched_on_with_a_write_key(fake: Fake) -> None:
    fake.send()
    fake.advance()
    # What counts is App Connections at the moment of the event.
    fake.account.update_app_connection({"sendEvents": True})
    fake.send("bob@example.com")
    fake.advance()
    reasons = [record.to_json()["segment"] for record in fake.events.records]
    assert [(s["state"], s["reason"]) for s in reasons] == [
        ("not_forwarded", "sendEvents is off in App Connections → Segment"),
        ("not_forwarded", "no Segment write key in App Connections → Segment"),
    ]
    assert segment_posts(fake) == []


def test_events_are_batched_to_segment_as_track_calls(fake: Fake) -> None:
    connect(fake)
    fake.account.create_property({"Name": "segment_user_id", "Datatype": "str"})
    fake.account.ensure_contact("ada@example.com").properties["segment_user_id"] = "user-ada"
    first = fake.send()
    fake.send("bob@example.com")
    fake.advance()
    fake.emit(first, "open")
    blocked = fake.send("cy@example.com")
    fake.emit(blocked, "blocked")
    fake.advance(timedelta(0))
    (url, body, headers), (_, later, _) = segment_posts(fake)
    assert url == "http://segment.test/v1/batch" and body["writeKey"] == "wk-1" and headers["Authorization"].startswith("Basic ")
    assert [(call["event"], call.get("userId"), call.get("anonymousId")) for call in body["batch"]] == [
        ("Email Delivered", "user-ada", None),
        ("Email Delivered", None, "bob@example.com"),
    ]
    assert [call["event"] for call in later["batch"]] == ["Email Opened"]
    assert_contract("segment.batch", {**body, "batch": [{**call} for call in body["batch"]]})
    forwarded = fake.events.events(event="open")[0].to_json()["segment"]
    assert (forwarded["state"], forwarded["event"], forwarded["attempts"][0]["status"]) == ("delivered", "Email Opened", 200)
    assert forwarded["messageId"] == later["batch"][0]["messageId"]
    not_sent = fake.events.events(event="blocked")[0].to_json()["segment"]
    assert (not_sent["state"], not_sent["reason"]) == ("not_forwarded", "the Mailjet source has no Segment event for blocked")


def test_segment_batches_hold_at_most_100_calls_as_analytics_python_uploads(fake: Fake) -> None:
    connect(fake)
    for index in range(150):
        fake.send(f"user{index}@example.com")
    fake.advance()
    assert [len(body["batch"]) for _, body, _ in segment_posts(fake)] == [100, 50]


def test_segment_batches_stay_under_the_500_kb_segment_accepts(fake: Fake) -> None:
    # analytics-python also closes a batch at 475,000 bytes (consumer.py BATCH_SIZE_LIMIT: "Our
    # servers only accept batches less than 500KB"); 100 clicks on 30 KB links made one 3 MB POST,
    # which Segment refuses whole (400, final): every event in it was lost.
    connect(fake)
    long_link = "https://shop.example.com/?q=" + "x" * 30_000
    sent = [fake.send(f"user{index}@example.com", html=f'<a href="{long_link}">go</a>') for index in range(40)]
    fake.advance()
    for message_id in sent:
        fake.emit(message_id, "click")
    fake.advance(timedelta(0))
    posts = segment_posts(fake)
    sizes = [len(json.dumps(body, separators=(",", ":")).encode()) for _, body, _ in posts]
    assert all(size < 500 * 1024 for size in sizes), sizes
    clicks = [call for _, body, _ in posts for call in body["batch"] if call["event"] == "Email Link Clicked"]
    assert len(clicks) == 40 and len(posts) > 3
    assert all(record.segment.state == "delivered" for record in fake.events.records)


def test_a_track_call_over_32_kb_is_not_forwarded_and_the_others_still_are(fake: Fake) -> None:
    # analytics-python refuses a message over 32 KB when it is enqueued (MAX_MSG_SIZE), and Segment
    # answers 400 to a batch holding one: in a batch, it took every other event down with it.
    connect(fake)
    huge_link = "https://shop.example.com/?q=" + "x" * 33_000
    clicked = fake.send(html=f'<a href="{huge_link}">go</a>')
    opened = fake.send("bob@example.com")
    fake.advance()
    fake.emit(clicked, "click")
    fake.emit(opened, "open")
    fake.advance(timedelta(0))
    click = fake.events.events(event="click")[0].to_json()["segment"]
    assert click["state"] == "not_forwarded"
    assert re.fullmatch(r"its track call is \d+ bytes, over the 32768 Segment takes \(analytics-python drops it\)", click["reason"])
    forwarded = [call["event"] for _, body, _ in segment_posts(fake) for call in body["batch"]]
    assert forwarded == ["Email Delivered", "Email Delivered", "Email Opened"]
    assert fake.events.events(event="open")[0].to_json()["segment"]["state"] == "delivered"


def test_message_ids_count_from_2_to_the_59_in_the_accounts_range(fake: Fake) -> None:
    # The default account is the first: its range starts at 2**59 (README "Fidelity").
    first, second = fake.send(), fake.send("bob@example.com")
    assert 2**59 < first < second < 2**59 + 2**32


def test_segment_retries_follow_analytics_python(fake: Fake) -> None:
    connect(fake, segmentUrl="http://other-segment.test")
    fake.transport.statuses = [503, None, 429, 200]
    fake.send()
    fake.advance()
    forward = fake.events.records[0].segment
    assert forward.state == "retrying" and forward.to_json()["next_attempt_at"] is not None
    waits = []
    while forward.state == "retrying":
        due = forward.batch.due
        waits.append((due - fake.clock.now()).total_seconds())
        fake.advance(due - fake.clock.now())
    assert forward.state == "delivered" and [round(w) for w in waits] == [1, 2, 4]
    assert [a["status"] for a in forward.batch.attempts] == [503, None, 429, 200]
    assert segment_posts(fake)[0][0] == "http://other-segment.test/v1/batch"


def test_each_segment_attempt_carries_its_own_sent_at(fake: Fake) -> None:
    # Segment corrects timestamps by `sentAt` (timestamp = receivedAt - (sentAt - timestamp)): a
    # retry must say when it was sent, not when the first attempt was.
    connect(fake)
    fake.transport.statuses = [503, 200]
    fake.send()
    fake.advance()
    fake.advance(timedelta(seconds=1))
    attempts = fake.events.records[0].segment.batch.attempts
    assert [body["sentAt"] for _, body, _ in segment_posts(fake)] == [attempt["at"] for attempt in attempts]
    assert len(attempts) == 2 and attempts[0]["at"] != attempts[1]["at"]


def test_a_retried_batch_repeats_the_same_calls_with_the_same_message_ids(fake: Fake) -> None:
    # A batch Segment applied but answered too late is sent again: Segment's messageId dedupe can
    # drop the copies only if the retry repeats each call's messageId.
    connect(fake)
    fake.transport.statuses = [None, 503, 200]
    fake.send()
    fake.send("bob@example.com")
    fake.advance()
    fake.advance(timedelta(seconds=1))
    fake.advance(timedelta(seconds=2))
    bodies = [body for _, body, _ in segment_posts(fake)]
    assert len(bodies) == 3 and all(body["batch"] == bodies[0]["batch"] for body in bodies)
    assert [call["messageId"] for call in bodies[0]["batch"]] == [r.segment.call["messageId"] for r in fake.events.records]


def test_segment_4xx_is_final_and_10_retries_is_the_limit(fake: Fake) -> None:
    connect(fake)
    fake.transport.statuses = [400]
    fake.send()
    fake.advance()
    final = fake.events.records[0].segment.to_json()
    assert (final["state"], len(final["attempts"])) == ("failed", 1) and final["reason"] == "HTTP 400: scripted 400"
    fake.transport.statuses = [500]
    fake.send("bob@example.com")
    fake.advance()
    forward = fake.events.records[1].segment
    while forward.state == "retrying":
        fake.advance(timedelta(seconds=600))
    assert forward.state == "failed" and len(forward.batch.attempts) == 11 and "gave up after 10 retries" in forward.batch.reason
    fake.transport.statuses = [200]
    fake.send("cy@example.com")  # the queue moves on after a final failure
    fake.advance()
    assert fake.events.records[2].segment.state == "delivered"


def test_a_segment_refusal_that_is_not_json_is_shown_as_text(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy before Segment may answer a 4xx page: its text is the reason, as the JSON message is.
    async def refused(url: str, body: Any, headers: dict[str, str], timeout: float) -> Outcome:
        return Outcome(403, "Forbidden by the proxy")

    monkeypatch.setattr(fake.transport, "post_json", refused)
    connect(fake)
    fake.send()
    fake.advance()
    forward = fake.events.records[0].segment.to_json()
    assert (forward["state"], forward["reason"]) == ("failed", "HTTP 403: Forbidden by the proxy")


def test_a_batch_never_mixes_write_keys(fake: Fake) -> None:
    # Each event goes with the write key of the moment it happened: the queue behind a retrying
    # batch splits where the key changes, one POST per key.
    connect(fake)
    fake.transport.statuses = [500, 200]
    first = fake.send()
    fake.advance()
    fake.emit(first, "open")
    fake.account.update_app_connection({"writeKey": "wk-2"})
    fake.emit(first, "click", url=LINK)
    fake.advance(timedelta(0))
    assert len(segment_posts(fake)) == 1  # the delivered event waits for its retry; the others queue
    fake.advance(timedelta(seconds=1))
    fake.advance(timedelta(0))
    assert [(body["writeKey"], [call["event"] for call in body["batch"]]) for _, body, _ in segment_posts(fake)] == [
        ("wk-1", ["Email Delivered"]), ("wk-1", ["Email Delivered"]), ("wk-1", ["Email Opened"]),
        ("wk-2", ["Email Link Clicked"]),
    ]


def test_events_queue_behind_a_retrying_batch(fake: Fake) -> None:
    connect(fake)
    fake.transport.statuses = [500, 200]
    first = fake.send()
    fake.advance()
    fake.emit(first, "open")
    fake.advance(timedelta(0))
    assert len(segment_posts(fake)) == 1 and fake.events.records[1].segment.state == "queued"
    fake.advance(timedelta(seconds=1))
    assert [[call["event"] for call in body["batch"]] for _, body, _ in segment_posts(fake)] == [
        ["Email Delivered"], ["Email Delivered"], ["Email Opened"]
    ]
    assert all(record.segment.state == "delivered" for record in fake.events.records)


def test_many_waiting_webhook_deliveries_each_fire_once_in_order_at_their_own_time(fake: Fake) -> None:
    # `_fire_due` sorted every waiting delivery at each delivery's timer (quadratic with thousands
    # retrying); it now pops only the due ones. What it must keep: a delivery fires once at its due
    # time, not before; those due together go in id order; a re-scheduled retry fires at its new time.
    register(fake, "open", "http://hooks.test/down")
    fake.transport.statuses = [500]
    messages = [fake.send(f"u{n}@example.com") for n in range(300)]
    fake.advance()
    for n, message_id in enumerate(messages):
        fake.emit(message_id, "open")
        if n == 149:
            fake.advance(timedelta(0))  # the first half fails now
            fake.advance(timedelta(seconds=10))  # the second half fails 10 s later, so retries 10 s later
    fake.advance(timedelta(0))
    webhooks = [record.webhook for record in fake.events.events(event="open", limit=1000)]
    assert len(webhooks) == 300 and all(w.state == "retrying" and len(w.attempts) == 1 for w in webhooks)
    fake.transport.posts.clear()
    fake.advance(timedelta(seconds=25))  # the first half's retries (30 s after their failure) are due
    assert [len(w.attempts) for w in webhooks] == [2] * 150 + [1] * 150
    assert [body["MessageID"] for _, body, _ in fake.transport.posts] == messages[:150]
    fake.advance(timedelta(seconds=10))
    assert [len(w.attempts) for w in webhooks] == [2] * 300
    fake.transport.statuses = [200]
    fake.transport.posts.clear()
    fake.advance(timedelta(minutes=5))  # one jump past both halves' next retries: one attempt each, in id order
    assert [body["MessageID"] for _, body, _ in fake.transport.posts] == messages
    assert all(w.state == "delivered" and len(w.attempts) == 3 for w in webhooks)


def test_email_events_read_by_message_and_kind_answer_the_newest_in_order(fake: Fake) -> None:
    # Reads go through an index by MessageID and stop at `limit` from the newest back (they filtered
    # every record of the account's history at each poll); the answers must stay what they were.
    messages = [fake.send(f"u{n}@example.com") for n in range(40)]
    fake.advance()
    for _ in range(3):
        for message_id in messages[::2]:
            fake.emit(message_id, "open")
    ids = lambda records: [(r.message.message_id, r.event) for r in records]  # noqa: E731
    assert ids(fake.events.events(message_id=messages[2])) == [(messages[2], "sent")] + [(messages[2], "open")] * 3
    assert ids(fake.events.events(message_id=messages[2], limit=2)) == [(messages[2], "open")] * 2
    assert ids(fake.events.events(message_id=messages[3], event="open")) == []
    assert ids(fake.events.events(message_id=messages[3], event="sent")) == [(messages[3], "sent")]
    assert ids(fake.events.events(event="sent", limit=2)) == [(messages[38], "sent"), (messages[39], "sent")]
    assert [r.id for r in fake.events.events(limit=3)] == [98, 99, 100]
    assert fake.events.events(limit=0) == [] and fake.events.events(message_id=12345) == []
    assert len(fake.events.events(limit=10_000)) == 100


def test_a_2xx_other_than_200_from_segment_is_retried(fake: Fake) -> None:
    # analytics-python counts only a 200 (reference/segment.md §8.3).
    connect(fake)
    fake.transport.statuses = [202, 200]
    fake.send()
    fake.advance()
    forward = fake.events.records[0].segment
    assert (forward.state, forward.batch.reason) == ("retrying", "HTTP 202")
    fake.advance(timedelta(seconds=1))
    assert forward.state == "delivered" and [a["status"] for a in forward.batch.attempts] == [202, 200]


def test_a_webhook_waits_5_seconds_for_its_answer_and_a_segment_forward_15(fake: Fake) -> None:
    # README: webhooks time out after 5 s, forwards after analytics-python's 15 s.
    connect(fake)
    register(fake, "sent", "http://hooks.test/sent")
    fake.send()
    fake.advance()
    assert sorted(fake.transport.timeouts) == [("http://hooks.test/sent", 5.0), ("http://segment.test/v1/batch", 15.0)]
