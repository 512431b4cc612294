"""Email events of the fake Mailjet: the lifecycle of every sent message, and the rules of each event.

State and rules only, no HTTP. Each event becomes an `EmailEvent` record carrying the Event API
payload exactly as Mailjet POSTs it to webhooks (reference/mailjet.md §5); listeners (the webhook
outbox and the Segment forwarder in `outbound.py`) route it on and note their progress on it.

Where events come from:
- every non-sandbox message gets `sent` SENT_DELAY after the send (a clock timer), or `blocked`
  instead: "duplicate in campaign" when DeduplicateCampaign finds its campaign already mailed the
  contact, "error in template language" when its template language failed (`template.py`);
- the control API (`POST /_emulator/messages/{MessageID}/events`), checked for sense by `apply`
  (e.g. no open for a message sent with TrackOpens "disabled", no click with TrackClicks "disabled");
- the recipient simulation (`PUT /_emulator/simulation`): rates and a seed decide, per message, what
  its recipient does and when, scheduled on the virtual clock;
- campaign sends to a contact list (`send_campaign`) produce messages like Send v3.1 does.

A message's life: `queued` → `sent` (or `bounced`/`blocked` instead) → `opened`, `clicked`, `spam`,
`unsub` (the message `status` is the latest event's word). Engagement (open, click, spam, unsub) on
a message still queued delivers it first, as the recipient evidently got it; after engagement the
message can no longer bounce.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable

from ..common.clock import Clock, iso, parse_duration
from ..common.feeds import newest
from .models import Account, Contact, read_id
from .send import Message, link_urls, new_message, store_message

if TYPE_CHECKING:
    from faker import Faker

    from ..common.clock import Timer
    from .outbound import SegmentForward, WebhookDelivery

# The state of an event's Segment forward when it is not sent (set by outbound.SegmentForwarder).
NOT_FORWARDED = "not_forwarded"
# Guess: Mailjet hands a message to the receiving server within seconds; one second of virtual time
# keeps `sent` after the Send API answer while real-time use (demo, polling) sees it almost at once.
SENT_DELAY = timedelta(seconds=1)
CONTROL_EVENTS = ("open", "click", "bounce", "blocked", "spam", "unsub")
ENGAGEMENT_EVENTS = ("open", "click", "spam", "unsub")
# The message `status` after each event, in the words of Mailjet's /message resource (node
# `CurrentMessageStatus`), except `bounced`: ours, where /message says bounce, hardbounced or softbounced.
STATUS_AFTER = {
    "sent": "sent",
    "open": "opened",
    "click": "clicked",
    "bounce": "bounced",
    "blocked": "blocked",
    "spam": "spam",
    "unsub": "unsub",
}
ENGAGED_STATUSES = frozenset(STATUS_AFTER[event] for event in ENGAGEMENT_EVENTS)
# Documented error_related_to → error pairs (reference/mailjet.md §5).
ERROR_PAIRS: dict[str, tuple[str, ...]] = {
    "recipient": ("user unknown", "mailbox inactive", "quota exceeded", "blacklisted", "spam reporter"),
    "domain": ("invalid domain", "no mail host", "relay/access denied", "greylisted", "typofix"),
    "content": ("bad or empty template", "error in template language"),
    "spam": ("sender blocked", "content blocked", "policy issue"),
    "system": ("system issue", "protocol issue", "connection issue"),
    "mailjet": ("preblocked", "duplicate in campaign"),
}
# Guess: which documented errors are permanent; the simulation draws hard bounces from these.
HARD_BOUNCE_ERRORS = {"user unknown", "mailbox inactive", "invalid domain", "no mail host"}
DEFAULT_BOUNCE = {True: ("recipient", "user unknown"), False: ("recipient", "quota exceeded")}  # by hard_bounce
DEFAULT_BLOCKED = ("mailjet", "preblocked")
# What a DeduplicateCampaign send to a contact its campaign already mailed becomes (reference §5).
DUPLICATE_IN_CAMPAIGN = {"error_related_to": "mailjet", "error": "duplicate in campaign"}
# What a message whose template language failed becomes, unless TemplateErrorDeliver (reference §5).
TEMPLATE_LANGUAGE_ERROR = {"error_related_to": "content", "error": "error in template language"}
DEFAULT_SPAM_SOURCE = "JMRPP"  # the docs' sample
# Which body fields each control event takes besides "event".
CONTROL_FIELDS: dict[str, tuple[str, ...]] = {
    "open": ("ip", "geo", "agent"),
    "click": ("url", "ip", "geo", "agent"),
    "bounce": ("hard_bounce", "blocked", "error_related_to", "error", "comment"),
    "blocked": ("error_related_to", "error"),
    "spam": ("source",),
    "unsub": ("mj_list_id", "ip", "geo", "agent"),
}
SIMULATION_RATES = ("open_rate", "click_rate", "bounce_rate", "spam_rate", "unsub_rate")
DEFAULT_SIMULATION_DELAY = timedelta(minutes=10)
# A recipient's events chain up to two delays after `sent`; from the clock's last moment (year 9000)
# they must stay inside the calendar (year 9999), or every send would fail while planning them.
MAX_SIMULATION_DELAY = timedelta(days=365)
MAX_SUBJECT_LENGTH = 255
DEFAULT_CAMPAIGN_SENDER = {"Email": "campaigns@segjet.test", "Name": "segjet"}

# Mailjet's event → the Segment track event of the Mailjet source (DESIGN §4); blocked has none.
SEGMENT_EVENTS = {
    "sent": "Email Delivered",
    "open": "Email Opened",
    "click": "Email Link Clicked",
    "bounce": "Email Bounced",
    "spam": "Email Marked as Spam",
    "unsub": "Email Unsubscribed",
}
# The contact property where the Segment destination keeps the userId (destination/mapping.py).
USER_ID_PROPERTY = "segment_user_id"
# Partner streams must name themselves in context.integration (reference/segment.md §3).
INTEGRATION = {"name": "mailjet", "version": "1.0.0"}


class EmailEventError(Exception):
    """A control request that makes no sense for the message; answered `{"error": ...}` with `status`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class EmailEvent:
    """One email event. `webhook` and `segment` are set by the outbound listeners as they route it."""

    id: int
    event: str
    message: Message
    at: datetime
    payload: dict[str, Any]
    webhook: WebhookDelivery | None = None  # None when no webhook listens for the type
    segment: SegmentForward | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event": self.event,
            "at": iso(self.at),
            "MessageID": self.message.message_id,
            "email": self.message.recipient["Email"],
            "payload": self.payload,
            "webhook": self.webhook.to_json()
            if self.webhook is not None
            else {"state": "none", "reason": f"no live webhook for {self.event} events", "attempts": []},
            "segment": self.segment.to_json()
            if self.segment is not None
            else {"state": NOT_FORWARDED, "reason": "not routed", "attempts": []},
        }


@dataclass
class Campaign:
    """A newsletter sent to a contact list, or the group of transactional emails of one CustomCampaign."""

    id: int
    name: str
    list_id: int = 0
    subject: str = ""
    message_ids: list[int] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "list_id": self.list_id,
            "subject": self.subject,
            "messages": self.message_ids,
            "skipped": self.skipped,
        }


@dataclass(frozen=True)
class Simulation:
    """How simulated recipients behave. `open_rate` and `bounce_rate` are shares of sent messages;
    `click_rate`, `spam_rate` and `unsub_rate` are shares of opened ones (one must open to act).
    Each simulated event happens a random time within `delay` after the one it follows.

    A message sent with TrackOpens / TrackClicks "disabled" gets no simulated open / click: its
    recipient still opens (unseen) and acts at these rates, so a click-tracked message whose opens
    are not tracked can be clicked, and spam and unsub do not depend on tracking."""

    open_rate: float = 0.0
    click_rate: float = 0.0
    bounce_rate: float = 0.0
    spam_rate: float = 0.0
    unsub_rate: float = 0.0
    delay: timedelta = DEFAULT_SIMULATION_DELAY
    delay_text: str = "10m"
    seed: int = 0

    @property
    def active(self) -> bool:
        return any(getattr(self, name) > 0 for name in SIMULATION_RATES)

    def merged(self, changes: dict[str, Any]) -> Simulation:
        """A copy with `changes` applied (PUT merges); ValueError with a readable message otherwise."""
        known = set(SIMULATION_RATES) | {"delay", "seed"}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        updated: dict[str, Any] = {}
        for name in SIMULATION_RATES:
            if name in changes:
                rate = changes[name]
                if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
                    raise ValueError(f"{name} must be a number from 0 to 1, got {rate!r}")
                updated[name] = float(rate)
        if "delay" in changes:
            updated["delay"] = parse_duration(changes["delay"])  # ValueError names the expected form
            if updated["delay"] > MAX_SIMULATION_DELAY:
                raise ValueError(f"delay must be at most {MAX_SIMULATION_DELAY.days}d, got {changes['delay']!r}")
            updated["delay_text"] = changes["delay"]
        if "seed" in changes:
            seed = changes["seed"]
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise ValueError(f"seed must be an integer, got {seed!r}")
            updated["seed"] = seed
        return replace(self, **updated)

    def to_json(self) -> dict[str, Any]:
        rates = {name: getattr(self, name) for name in SIMULATION_RATES}
        return {**rates, "delay": self.delay_text, "seed": self.seed, "active": self.active}


@dataclass
class Life:
    """Where one message stands; the rules read this, not the `status` word.

    `sent_due` and `plan` (the simulated recipient's events still to come) are what the timers
    will do, kept so that a restored state can arm them again.
    """

    message: Message
    position: int  # the message's index in `Account.messages`, its stored key
    sent_due: datetime | None = None
    plan: list[tuple[datetime, str, dict[str, Any]]] = field(default_factory=list)
    delivered: bool = False
    hard_bounced: bool = False
    blocked: bool = False
    spam_reported: bool = False
    sent_timer: Timer | None = None


def links_of(message: Message) -> list[str]:
    """The http(s) links of the message's HTML part, in order, without repeats (what click tracking sees)."""
    return list(dict.fromkeys(link_urls(message.html_part or "")))


def _new_faker() -> Faker:
    # Imported here: faker's import took a tenth of a second of every start-up, and most runs never
    # make up a recipient.
    from faker import Faker

    return Faker()


_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def unix_time(moment: datetime) -> int:
    """The Unix second `moment` falls in, in whole numbers: int() of a float timestamp rounded a time
    before 1970 up, and far from 1970 a float's step passes a microsecond (8999-12-31T23:59:59.999999
    was the next second)."""
    return (moment - _UNIX_EPOCH) // timedelta(seconds=1)


class EmailEvents:
    """The email-events lifecycle of one account (a reset of the account makes a new one)."""

    def __init__(self, account: Account, clock: Clock, seed: int | None = None) -> None:
        self.account = account
        self.clock = clock
        self.seed = seed
        self.listeners: list[Callable[[EmailEvent], None]] = []
        self.records: list[EmailEvent] = []  # record `id` n is at index n - 1
        # The records of each message, oldest first: `GET email-events?MessageID=` (what the harness
        # polls) filtered the account's whole history at each call.
        self._by_message: dict[int, list[EmailEvent]] = {}
        self._lives: dict[int, Life] = {}
        self.campaigns: dict[int, Campaign] = {}
        self._custom_campaigns: dict[str, Campaign] = {}
        self.next_record_id = 1
        self.next_campaign_id = 1
        # Without a bundle seed the simulation still needs one to report, so runs can be repeated.
        self.simulation = Simulation(seed=self.seed if self.seed is not None else random.SystemRandom().randrange(2**31))
        self.account.on_message_sent.append(self._on_sent)

    @functools.cached_property
    def _faker(self) -> Faker:
        """Makes up ip/geo/agent where control events leave them out (seeded with the bundle).

        Built on first use: a Faker costs milliseconds, and every reset makes a new EmailEvents.
        """
        fake = _new_faker()
        fake.seed_instance(self.seed)
        return fake

    @functools.cached_property
    def _simulation_faker(self) -> Faker:
        # Reseeded per message, so a simulated recipient depends only on the seed and the MessageID.
        return _new_faker()

    # -- storage

    def life_of(self, message: Message) -> Life | None:
        """Where a delivered (non-sandbox) message stands; None for sandbox messages."""
        return None if message.sandbox else self._lives.get(message.message_id)

    def restore(
        self,
        records: list[EmailEvent],
        lives: list[Life],
        campaigns: list[Campaign],
        simulation: Simulation,
        next_record_id: int,
        next_campaign_id: int,
    ) -> None:
        """Replace the whole state (storage and snapshots); no timer is armed until `resume_timers`."""
        self.records = records
        self._by_message = {}
        for record in records:
            self._by_message.setdefault(record.message.message_id, []).append(record)
        self._lives = {life.message.message_id: life for life in lives}
        self.campaigns = {campaign.id: campaign for campaign in campaigns}
        # Campaigns without a list are the groups of one CustomCampaign value.
        self._custom_campaigns = {c.name: c for c in campaigns if not c.list_id}
        self.simulation = simulation
        self.next_record_id = next_record_id
        self.next_campaign_id = next_campaign_id

    def resume_timers(self) -> None:
        for life in self._lives.values():
            self._arm(life)

    def _arm(self, life: Life) -> None:
        """Timers for the `sent` and the simulated events still due for this message."""
        if life.sent_due is not None:
            sent_at = life.sent_due
            life.sent_timer = self.account.timers.call_at(sent_at, lambda: self._deliver(life, sent_at))
        for step in life.plan:
            self.account.timers.call_at(step[0], self._simulated(life, step))

    def _touch(self, life: Life) -> None:
        self.account.touch("message", life.position)
        # Every rule that changes a contact (counts, exclusion, spam) ends in an event of its message.
        self.account.touch("contact", life.message.contact_id)

    # -- reading

    def find_message(self, ref: str | int) -> Message:
        """The message a control request names; 404 when unknown, 400 for a sandbox message."""
        message_id = ref if isinstance(ref, int) else read_id(ref)
        if message_id is None:
            raise EmailEventError(f"no message with MessageID {ref!r}", 404)
        life = self._lives.get(message_id)
        if life is not None:
            return life.message
        if message_id == 0 and any(message.sandbox for message in self.account.messages):
            raise EmailEventError("MessageID 0 is a SandboxMode send: nothing was delivered, so it gets no events")
        raise EmailEventError(f"no message with MessageID {message_id}", 404)

    def events(self, message_id: int | None = None, event: str | None = None, limit: int = 100) -> list[EmailEvent]:
        """The newest `limit` records matching the filters given, newest last."""
        pool = self.records if message_id is None else self._by_message.get(message_id, [])
        return newest(reversed(pool), limit, None if event is None else lambda record: record.event == event)

    # -- sending

    def _on_sent(self, message: Message) -> None:
        """Hook of every non-sandbox send: plan its delivery (and its simulated recipient)."""
        duplicate = False
        if message.custom_campaign and not message.campaign_id:
            campaign = self._custom_campaign(message.custom_campaign)
            duplicate = message.deduplicate_campaign and self._mailed_in(campaign, message.contact_id)
            message.campaign_id, message.campaign_name = campaign.id, campaign.name
            campaign.message_ids.append(message.message_id)
            self.account.touch("campaign", campaign.id)
        # store_message appended the message just before telling us.
        life = Life(message, len(self.account.messages) - 1)
        self._lives[message.message_id] = life
        sent_at = message.created_at + SENT_DELAY
        if duplicate:
            # DevGuide: DeduplicateCampaign stops contacts "from being emailed several times in the same
            # campaign". GUESS: Send v3.1 still answers success with a MessageID (the check comes after
            # acceptance) and the message's life is a `blocked` event where `sent` would have come.
            life.plan = [(sent_at, "blocked", dict(DUPLICATE_IN_CAMPAIGN))]
        elif message.template_error and not message.template_error_deliver:
            # "By default the delivery is deactivated and the message will be blocked"
            # (dev.mailjet.com/template-language/SMTP, X-MJ-TemplateErrorDeliver).
            life.plan = [(sent_at, "blocked", dict(TEMPLATE_LANGUAGE_ERROR))]
        else:
            life.plan = self._plan(message, sent_at) if self.simulation.active else []
        # When the simulated recipient's server refuses the mail (or Mailjet blocks it), that event
        # takes the place of `sent`.
        if not (life.plan and life.plan[0][1] in ("bounce", "blocked")):
            life.sent_due = sent_at
        self._arm(life)
        self._touch(life)

    def _mailed_in(self, campaign: Campaign, contact_id: int) -> bool:
        """Whether an earlier message of `campaign` went to the contact (sandbox sends never join one)."""
        lives = (self._lives.get(message_id) for message_id in campaign.message_ids)
        return any(life is not None and life.message.contact_id == contact_id for life in lives)

    def _custom_campaign(self, name: str) -> Campaign:
        # Guess: Mailjet groups transactional emails of one CustomCampaign value into one campaign
        # (mj_campaign_id); emails without one have mj_campaign_id 0, as in the docs' bounce sample.
        campaign = self._custom_campaigns.get(name)
        if campaign is None:
            campaign = Campaign(self._new_campaign_id(), name)
            self.campaigns[campaign.id] = campaign
            self._custom_campaigns[name] = campaign
        return campaign

    def send_campaign(self, body: dict[str, Any]) -> Campaign:
        """`{"list_id", "subject", "html", "from"?, "name"?, "text"?}`: one message per subscribed contact.

        Skipped (and listed): unsubscribed or inactive subscriptions, contacts excluded from
        campaigns and (guess: Mailjet stops mailing them) contacts who complained of spam.
        """
        known = {"list_id", "subject", "html", "text", "from", "name"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise EmailEventError(f"unknown field(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        list_id = body.get("list_id")
        if isinstance(list_id, bool) or not isinstance(list_id, int):
            raise EmailEventError("list_id must be the integer ID of a contact list")
        contacts_list = self.account.lists.get(list_id)
        if contacts_list is None:
            raise EmailEventError(f"list_id {list_id} is not a contact list of this account")
        subject = body.get("subject")
        if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT_LENGTH:
            raise EmailEventError(f"subject must be a non-empty string of at most {MAX_SUBJECT_LENGTH} characters")
        html_part = body.get("html")
        if not isinstance(html_part, str) or not html_part:
            raise EmailEventError("html must be a non-empty string")
        text_part = body.get("text")
        if text_part is not None and not isinstance(text_part, str):
            raise EmailEventError("text must be a string")
        name = body.get("name", subject)
        if not isinstance(name, str) or not name:
            raise EmailEventError("name must be a non-empty string")
        sender = self._campaign_sender(body.get("from"))

        campaign = Campaign(self._new_campaign_id(), name, list_id, subject)
        self.campaigns[campaign.id] = campaign
        self.account.touch("campaign", campaign.id)
        for recipient in list(self.account.list_members(list_id)):
            contact = self.account.contacts[recipient.contact_id]
            reason = _campaign_skip_reason(contact, recipient.is_unsubscribed, recipient.is_active)
            if reason:
                campaign.skipped.append({"email": contact.email, "reason": reason})
                continue
            message = new_message(
                self.account,
                sender=sender,
                recipient={"Email": contact.email, "Name": contact.name},
                recipient_type="To",
                subject=subject,
                text_part=text_part,
                html_part=html_part,
            )
            message.campaign_id, message.campaign_name, message.list_id = campaign.id, name, list_id
            campaign.message_ids.append(message.message_id)
            store_message(self.account, message)
        return campaign

    def _new_campaign_id(self) -> int:
        self.next_campaign_id += 1
        return self.next_campaign_id - 1

    @staticmethod
    def _campaign_sender(raw: Any) -> dict[str, str]:
        if raw is None:
            return dict(DEFAULT_CAMPAIGN_SENDER)
        if isinstance(raw, str):
            raw = {"Email": raw}
        if (
            not isinstance(raw, dict)
            or not isinstance(raw.get("Email"), str)
            or "@" not in raw["Email"]
            or not isinstance(raw.get("Name", ""), (str, type(None)))
        ):
            raise EmailEventError('from must be an email address or {"Email": ..., "Name": ...}')
        return {"Email": raw["Email"], "Name": raw.get("Name") or ""}

    # -- control events

    def apply(self, message_ref: str | int, body: dict[str, Any]) -> EmailEvent:
        """A control event `{"event": ..., fields}` for a message, checked for sense; answers its record."""
        message = self.find_message(message_ref)
        event = body.get("event")
        fields = {name: value for name, value in body.items() if name != "event"}
        check_control_event(event, fields)
        return self._apply(self._lives[message.message_id], event, fields, self.clock.now())

    def _apply(self, life: Life, event: str, fields: dict[str, Any], at: datetime) -> EmailEvent:
        """Check `event` against the message's life, apply its side effects, and record it."""
        message = life.message
        if life.blocked:
            raise EmailEventError(f"message {message.message_id} was blocked: it was never delivered, so no {event}")
        if event in ENGAGEMENT_EVENTS and life.hard_bounced:
            raise EmailEventError(f"message {message.message_id} hard-bounced: the recipient never got it, so no {event}")
        handler = getattr(self, f"_{event}")
        extra = handler(life, fields, at)
        return self._emit(life, event, extra, at)

    def _deliver_first(self, life: Life, at: datetime) -> None:
        """Engagement proves delivery: a message still queued gets its `sent` now."""
        if not life.delivered:
            self._deliver(life, at)

    def _deliver(self, life: Life, at: datetime) -> None:
        if life.delivered or life.blocked or life.hard_bounced:
            return
        self._cancel_sent(life)
        life.delivered = True
        contact = self._contact(life)
        # Guess: DeliveredCount counts `sent` events.
        contact.delivered_count += 1
        message = life.message
        reply = f"sent (250 2.0.0 OK {unix_time(at)} {message.message_uuid[:8]}.{message.message_id % 1000} - gsmtp)"
        self._emit(life, "sent", {"mj_message_id": str(message.message_id), "smtp_reply": reply}, at)

    def _open(self, life: Life, fields: dict[str, Any], at: datetime) -> dict[str, Any]:
        if not life.message.track_opens:
            # Mailjet tracks opens with a pixel it adds only when open tracking is on (Send v3.1
            # TrackOpens); the Segment Mailjet source: "You need to enable Open Tracking" for Email Opened.
            raise EmailEventError(
                f'message {life.message.message_id} was sent with TrackOpens "disabled": it has no open-tracking pixel, so no open'
            )
        self._deliver_first(life, at)
        self._contact(life).last_activity_at = at
        return self._client_fields(fields)

    def _click(self, life: Life, fields: dict[str, Any], at: datetime) -> dict[str, Any]:
        if not life.message.track_clicks:
            # Clicks are seen through the links Mailjet rewrites, only when click tracking is on
            # (TrackClicks); the Segment source: "You need to enable Click Tracking" for Email Link Clicked.
            raise EmailEventError(
                f'message {life.message.message_id} was sent with TrackClicks "disabled": its links are not tracked, so no click'
            )
        links = links_of(life.message)
        if not links:
            raise EmailEventError(f"message {life.message.message_id} has no http(s) link in its HTMLPart to click")
        url = fields.get("url", links[0])
        if url not in links:
            # Click tracking only knows the links it rewrote, so the url must be one of them.
            raise EmailEventError(f"url {url!r} is not a link of message {life.message.message_id}; its links: {', '.join(links)}")
        self._deliver_first(life, at)
        self._contact(life).last_activity_at = at
        return {"url": url, **self._client_fields(fields)}

    def _bounce(self, life: Life, fields: dict[str, Any], at: datetime) -> dict[str, Any]:
        if life.hard_bounced:
            raise EmailEventError(f"message {life.message.message_id} already hard-bounced")
        if life.message.status in ENGAGED_STATUSES:
            # A bounce says the mail never reached the mailbox; an open, click, spam report or unsub
            # says it did (and a simulated bounce due after a control open must not undo that). Only
            # engagement can follow engagement (no bounce, and no blocked after delivery), so the
            # status keeps saying so.
            message_id = life.message.message_id
            raise EmailEventError(f"message {message_id} is {life.message.status!r}: it reached the recipient, so it cannot bounce")
        hard = fields.get("hard_bounce", True)
        related, error = _error_pair(fields, DEFAULT_BOUNCE[hard], hard)
        if not life.delivered:
            # The receiving server refused it: the bounce replaces `sent`. After `sent`, a bounce is an
            # asynchronous one (guess: Mailjet reports those too).
            self._cancel_sent(life)
        if hard:
            life.hard_bounced = True
            contact = self._contact(life)
            if not contact.is_excluded_from_campaigns:
                # Mailjet excludes hard-bounced addresses from later campaigns.
                contact.is_excluded_from_campaigns = True
                contact.exclusion_updated_at = at
        code = "550 5.1.1" if hard else "452 4.2.2"
        return {
            # Guess: the docs' hard-bounce sample has blocked false; true only when asked for.
            "blocked": fields.get("blocked", False),
            "hard_bounce": hard,
            "error_related_to": related,
            "error": error,
            "comment": fields.get("comment", f"{code} <{life.message.recipient['Email']}>: {error}"),
        }

    def _blocked(self, life: Life, fields: dict[str, Any], at: datetime) -> dict[str, Any]:
        message = life.message
        if life.delivered:
            raise EmailEventError(f"message {message.message_id} was already sent; Mailjet blocks a message instead of sending it")
        if life.hard_bounced:
            raise EmailEventError(f"message {message.message_id} already hard-bounced")
        related, error = _error_pair(fields, DEFAULT_BLOCKED)
        self._cancel_sent(life)
        life.blocked = True
        return {"error_related_to": related, "error": error}

    def _spam(self, life: Life, fields: dict[str, Any], at: datetime) -> dict[str, Any]:
        if life.spam_reported:
            raise EmailEventError(f"message {life.message.message_id} was already reported as spam")
        self._deliver_first(life, at)
        life.spam_reported = True
        contact = self._contact(life)
        contact.is_spam_complaining = True
        contact.last_update_at = at
        return {"source": fields.get("source", DEFAULT_SPAM_SOURCE)}

    def _unsub(self, life: Life, fields: dict[str, Any], at: datetime) -> dict[str, Any]:
        message = life.message
        list_id = fields.get("mj_list_id", message.list_id or None)
        if list_id is None:
            list_id = self._only_subscribed_list(life)
        if isinstance(list_id, bool) or not isinstance(list_id, int) or list_id not in self.account.lists:
            raise EmailEventError(f"mj_list_id {list_id!r} is not a contact list of this account")
        contact = self._contact(life)
        recipient = self.account.find_recipient(contact.id, list_id)
        if recipient is None:
            raise EmailEventError(f"{contact.email} is not on contact list {list_id}, so cannot unsubscribe from it")
        if recipient.is_unsubscribed:
            raise EmailEventError(f"{contact.email} is already unsubscribed from contact list {list_id}")
        client = self._client_fields(fields)
        self._deliver_first(life, at)
        # Not apply_action's unsub: managecontact adds "with active=true" (Go doc), but a recipient's
        # click on an unsubscribe link leaves IsActive alone; and UnsubscribedAt is the event's time
        # (a simulated unsub fires after a clock jump at its own, earlier, time).
        recipient.is_unsubscribed = True
        recipient.unsubscribed_at = at
        self.account.touch("recipient", recipient.id)
        contact.last_activity_at = at
        return {"mj_list_id": list_id, **client}

    def _only_subscribed_list(self, life: Life) -> int:
        """The list an unsubscribe without `mj_list_id` from a message sent to no list (Send API) is
        from. GUESS (Mailjet does not say): the recipient's one subscribed list, so the dashboard's
        Unsubscribe button works on the contacts the destination subscribes; with none or several,
        the list must be named."""
        contact = self._contact(life)
        subscribed = [r.list_id for r in self.account.subscriptions_of(contact.id) if not r.is_unsubscribed]
        if len(subscribed) != 1:
            raise EmailEventError(
                f"unsub needs mj_list_id: message {life.message.message_id} was not sent to a contact list (not a"
                f" campaign), and {contact.email} is subscribed to {len(subscribed)} lists, not one"
            )
        return subscribed[0]

    def _cancel_sent(self, life: Life) -> None:
        if life.sent_timer is not None:
            self.account.timers.cancel(life.sent_timer)
            life.sent_timer = None
        life.sent_due = None

    def _client_fields(self, fields: dict[str, Any]) -> dict[str, str]:
        """Where the recipient acted from: given, or made up by faker."""
        return {
            "ip": fields.get("ip") or self._faker.ipv4_public(),
            "geo": fields.get("geo") or self._faker.country_code(),
            "agent": fields.get("agent") or self._faker.user_agent(),
        }

    def _contact(self, life: Life) -> Contact:
        # Contacts are never deleted by the REST API, and a reset drops the messages with them.
        return self.account.contacts[life.message.contact_id]

    def _emit(self, life: Life, event: str, extra: dict[str, Any], at: datetime) -> EmailEvent:
        message = life.message
        record = EmailEvent(self.next_record_id, event, message, at, event_payload(message, event, at, extra))
        self.next_record_id += 1
        message.status = STATUS_AFTER[event]
        message.events.append(record.payload)
        self.records.append(record)
        self._by_message.setdefault(message.message_id, []).append(record)
        for listener in self.listeners:
            listener(record)
        self._touch(life)
        self.account.touch("event", record.id)
        return record

    # -- simulation

    def configure_simulation(self, changes: dict[str, Any]) -> Simulation:
        """Merge `changes` into the simulation; applies to messages sent from now on."""
        self.simulation = self.simulation.merged(changes)
        self.account.touch("account", 0)
        return self.simulation

    def _plan(self, message: Message, sent_at: datetime) -> list[tuple[datetime, str, dict[str, Any]]]:
        """What the simulated recipient of `message` does, and when; the same for the same seed and MessageID."""
        sim = self.simulation
        rng = random.Random(f"{sim.seed}:{message.message_id}")
        fake = self._simulation_faker
        fake.seed_instance(f"{sim.seed}:{message.message_id}")

        def later(start: datetime) -> datetime:
            return start + sim.delay * rng.random()

        if rng.random() < sim.bounce_rate:
            related = rng.choice(("recipient", "domain"))
            error = rng.choice(ERROR_PAIRS[related])
            fields = {"hard_bounce": error in HARD_BOUNCE_ERRORS, "error_related_to": related, "error": error}
            return [(sent_at, "bounce", fields)]
        if rng.random() >= sim.open_rate:
            return []
        # One recipient, one device: all their events come from the same place.
        client = {"ip": fake.ipv4_public(), "geo": fake.country_code(), "agent": fake.user_agent()}
        # The recipient reads the email whether or not Mailjet can see it: without open tracking the
        # read is not recorded, but what follows it still happens. Every draw is made either way, so
        # a seed gives the same recipients whatever the tracking, less what tracking could not see.
        opened_at = later(sent_at)
        plan: list[tuple[datetime, str, dict[str, Any]]] = [(opened_at, "open", client)] if message.track_opens else []
        links = links_of(message)
        if links and rng.random() < sim.click_rate:
            click_at, url = later(opened_at), rng.choice(links)
            # A click is seen through the rewritten link, so it is recorded without a tracked open.
            if message.track_clicks:
                plan.append((click_at, "click", {**client, "url": url}))
        if rng.random() < sim.spam_rate:
            plan.append((later(opened_at), "spam", {}))
        if rng.random() < sim.unsub_rate:
            # From the campaign's list; a message sent to no list (Send API) unsubscribes its recipient
            # from their one subscribed list when the step fires, as the control API's unsub does, and
            # from none when they have none or several (`_only_subscribed_list`).
            plan.append((later(opened_at), "unsub", client))
        return plan

    def _simulated(self, life: Life, step: tuple[datetime, str, dict[str, Any]]) -> Callable[[], None]:
        def fire() -> None:
            life.plan.remove(step)
            self._touch(life)
            at, event, fields = step
            try:
                self._apply(life, event, fields, at)
            except EmailEventError:
                # The control API got there first (e.g. a hard bounce): the recipient cannot act.
                pass

        return fire


def check_control_event(event: Any, fields: dict[str, Any]) -> None:
    """The shape of a control event and its fields (also of a simulated one restored from storage);
    EmailEventError when the rules could not take it. Whether it makes sense for the message is `_apply`'s."""
    if event == "sent":
        raise EmailEventError("sent happens by itself after a send; post open, click, bounce, blocked, spam or unsub")
    if event not in CONTROL_EVENTS:
        raise EmailEventError(f"event must be one of {', '.join(CONTROL_EVENTS)}, got {event!r}")
    unknown = sorted(set(fields) - set(CONTROL_FIELDS[event]))
    if unknown:
        raise EmailEventError(
            f"unknown field(s) for {event}: {', '.join(unknown)}; {event} takes {', '.join(CONTROL_FIELDS[event]) or 'nothing'}"
        )
    for name in ("ip", "geo", "agent", "url", "comment", "source", "error_related_to", "error"):
        if name in fields and (not isinstance(fields[name], str) or not fields[name]):
            raise EmailEventError(f"{name} must be a non-empty string")
    for name in ("hard_bounce", "blocked"):
        if name in fields and not isinstance(fields[name], bool):
            raise EmailEventError(f"{name} must be true or false")


def _error_pair(fields: dict[str, Any], default: tuple[str, str], hard: bool | None = None) -> tuple[str, str]:
    """The (error_related_to, error) of a bounce or blocked event: as given, the half left out
    following the half given (an error belongs to one group; a group's default error is its first
    one of the bounce's kind, hard or soft), the default pair when neither is given."""
    related, error = fields.get("error_related_to"), fields.get("error")
    if related is None and error is None:
        return default
    if related is None:
        related = next((group for group, errors in ERROR_PAIRS.items() if error in errors), None)
        if related is None:
            known = ", ".join(e for errors in ERROR_PAIRS.values() for e in errors)
            raise EmailEventError(f"error must be one of {known}, got {error!r}")
    if related not in ERROR_PAIRS:
        raise EmailEventError(f"error_related_to must be one of {', '.join(ERROR_PAIRS)}, got {related!r}")
    if error is None:
        errors = ERROR_PAIRS[related]
        return related, next((e for e in errors if hard is None or (e in HARD_BOUNCE_ERRORS) == hard), errors[0])
    if error not in ERROR_PAIRS[related]:
        raise EmailEventError(f"error {error!r} does not go with error_related_to {related!r}; use one of {', '.join(ERROR_PAIRS[related])}")
    return related, error


def _campaign_skip_reason(contact: Contact, unsubscribed: bool, active: bool) -> str | None:
    if unsubscribed:
        return "unsubscribed"
    if not active:
        return "subscription inactive"
    if contact.is_excluded_from_campaigns:
        return "excluded from campaigns"
    if contact.is_spam_complaining:
        return "spam complaint"
    return None


def event_payload(message: Message, event: str, at: datetime, extra: dict[str, Any]) -> dict[str, Any]:
    """The Event API payload, fields and order as in the docs' samples (reference/mailjet.md §5)."""
    payload: dict[str, Any] = {
        "event": event,
        "time": unix_time(at),
        "MessageID": message.message_id,
        "Message_GUID": message.message_uuid,
        "email": message.recipient["Email"],
        "mj_campaign_id": message.campaign_id,
        "mj_contact_id": message.contact_id,
        "customcampaign": message.custom_campaign,
    }
    if event == "sent":
        payload["mj_message_id"] = extra["mj_message_id"]
        payload["smtp_reply"] = extra["smtp_reply"]
        return {**payload, "CustomID": message.custom_id, "Payload": message.event_payload}
    return {**payload, "CustomID": message.custom_id, "Payload": message.event_payload, **extra}


def track_call(record: EmailEvent, account: Account, message_id: str) -> dict[str, Any] | None:
    """The Segment track call Mailjet's source sends for an event, or None (blocked has no event).

    Identity as the Mailjet source documents: the contact's userId (kept by the destination in
    `segment_user_id`) as userId, else the email as anonymousId. Properties per the Email spec,
    all strings (reference/segment.md §3); campaign_id "" for emails outside any campaign (guess).
    """
    name = SEGMENT_EVENTS.get(record.event)
    if name is None:
        return None
    message, payload = record.message, record.payload
    email = message.recipient["Email"]
    properties = {
        "email_id": str(message.message_id),
        "email_subject": message.subject,
        "campaign_id": str(message.campaign_id) if message.campaign_id else "",
        "campaign_name": message.campaign_name,
    }
    if record.event == "click":
        properties["link_url"] = payload["url"]
    if record.event == "unsub":
        properties["list_id"] = str(payload["mj_list_id"])
        contacts_list = account.lists.get(payload["mj_list_id"])
        if contacts_list is not None:
            properties["list_name"] = contacts_list.name
    context: dict[str, Any] = {"traits": {"email": email}, "integration": dict(INTEGRATION)}
    if "ip" in payload:
        context["ip"] = payload["ip"]
    if "agent" in payload:
        context["userAgent"] = payload["agent"]
    call: dict[str, Any] = {
        "type": "track",
        "event": name,
        "properties": properties,
        "context": context,
        "timestamp": iso(record.at),
        "messageId": message_id,
    }
    contact = account.contacts.get(message.contact_id)
    user_id = account.property_value(contact, USER_ID_PROPERTY) if contact is not None else None
    if user_id:
        call["userId"] = user_id
    else:
        call["anonymousId"] = email
    return call
