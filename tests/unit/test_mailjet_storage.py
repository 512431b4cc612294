"""Storage and snapshots of the fake Mailjet on the models (no sockets): every kind of state makes the
round trip through SQLite and through a snapshot, pending work resumes on the clock after a load, a
bad snapshot changes nothing, and a database of another schema version is refused."""

from __future__ import annotations

import asyncio
import copy
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from emulator.common.clock import Clock
from emulator.common.sqlite import SchemaVersionError
from emulator.config import BundleConfig
from emulator.mailjet.events import EmailEventError
from emulator.mailjet.models import MailjetError
from emulator.mailjet.outbound import HttpTransport, Outcome
from emulator.mailjet.send import send
from emulator.mailjet.service import MailjetService
from emulator.mailjet.storage import (
    SCHEMA_VERSION,
    MailjetStore,
    StateError,
    dump_state,
    export_snapshot,
    import_snapshot,
    read_snapshot,
)

HTML = '<p>Hi <a href="https://shop.example.com/offer">offer</a></p>'


@dataclass
class Transport(HttpTransport):
    """Answers every POST with `status` and remembers it."""

    status: int = 500
    posts: list[tuple[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    async def post_json(self, url: str, body: Any, headers: dict[str, str], timeout: float) -> Outcome:
        self.posts.append((url, body))
        return Outcome(self.status, {"message": f"scripted {self.status}"})


class World:
    """A clock, a transport and a private loop; services made here share them, as restarts in one bundle would."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.clock = Clock()
        self.transport = Transport()
        self.loop = asyncio.new_event_loop()
        self.stores: list[MailjetStore] = []

    def service(self, persistent: bool = True) -> MailjetService:
        service = MailjetService(BundleConfig(seed=3), self.clock, "http://mj.test", "http://segment.test", self.transport)
        if persistent:
            store = MailjetStore(self.data_dir)
            self.stores.append(store)
            store.load_into(service)
        return service

    def advance(self, delta: timedelta) -> None:
        self.clock.advance(delta)
        self.loop.run_until_complete(self._settle())

    async def _settle(self) -> None:
        """Fire what is due, then wait for the deliveries the timers started (they run as tasks, off the clock)."""
        await self.clock.run_due()
        while pending := asyncio.all_tasks() - {asyncio.current_task()}:
            await asyncio.gather(*pending)

    def stop(self, service: MailjetService) -> None:
        """What a stopped server leaves: its timers no longer fire (the store keeps the state)."""
        for tenant in service.tenants.values():
            tenant.close()

    def close(self) -> None:
        for store in self.stores:
            store.close()
        self.loop.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path)
    yield made
    made.close()


def populate(world: World, service: MailjetService) -> dict[str, int]:
    """Every kind of state: properties, contacts, lists, subscriptions, webhooks, jobs, App Connections,
    messages (sandbox too), email events, campaigns, simulated events to come, webhook and Segment
    deliveries waiting for a retry, and a second account."""
    tenant = service.default
    account, events = tenant.account, tenant.events
    account.create_property({"Name": "plan", "Datatype": "str"})
    account.create_property({"Name": "age", "Datatype": "int"})
    account.delete_property(str(account.create_property({"Name": "gone", "Datatype": "bool"}).id))
    account.manage_contact("1", {"Email": "Ada@Example.com", "Name": "Ada", "Action": "addnoforce", "Properties": {"plan": "pro", "age": 36}})
    account.manage_contact("1", {"Email": "bob@example.com", "Action": "addforce"})
    account.manage_contact("1", {"Email": "bob@example.com", "Action": "unsub"})
    vip = account.create_list({"Name": "VIP"})
    account.update_list(str(vip.id), {"Name": "VIP customers"})
    account.delete_list(str(account.create_list({"Name": "Temporary"}).id))
    carol = account.create_contact({"Email": "carol@example.com", "IsExcludedFromCampaigns": True})
    account.create_recipient({"ContactID": carol.id, "ListID": vip.id})
    account.create_callback({"EventType": "sent", "Url": "http://hooks.test/sent"})
    account.create_callback({"EventType": "open", "Url": "http://hooks.test/open", "Version": 2})
    account.start_list_job("1", {"Action": "addnoforce", "Contacts": [{"Email": "dan@example.com"}, {"Email": "bad"}]})
    world.advance(timedelta(seconds=2))  # the first job completes (with an error)
    account.update_app_connection({"writeKey": "wk", "sendEvents": True})
    status, body = send(account, {"Messages": [{"From": {"Email": "shop@example.com"}, "To": [{"Email": "ada@example.com"}],
                                                "Subject": "Hi", "HTMLPart": HTML, "CustomCampaign": "welcome"}]})
    assert status == 200
    message_id = body["Messages"][0]["To"][0]["MessageID"]
    send(account, {"SandboxMode": True, "Messages": [{"From": {"Email": "shop@example.com"}, "To": [{"Email": "x@example.com"}], "TextPart": "t"}]})
    world.advance(timedelta(seconds=1))  # sent → webhook and Segment fail → both retrying
    # After the last advance, so that it is still In Progress when the state is stored.
    pending_job = account.start_contacts_job({"Contacts": [{"Email": "erin@example.com"}]})
    events.apply(message_id, {"event": "open"})
    events.apply(message_id, {"event": "click"})
    events.send_campaign({"list_id": 1, "subject": "Spring", "html": HTML})
    events.configure_simulation({"open_rate": 1, "delay": "2h", "seed": 11})
    account.manage_contact("1", {"Email": "fay@example.com", "Action": "addnoforce"})
    send(account, {"Messages": [{"From": {"Email": "shop@example.com"}, "To": [{"Email": "fay@example.com"}], "Subject": "S", "TextPart": "t"}]})
    other = service.create_account("other-key", "other-secret").account
    other.manage_contact("1", {"Email": "ada@example.com", "Action": "addnoforce"})
    return {"pending_job": pending_job.id, "message_id": message_id}


def test_every_kind_of_state_survives_a_restart(world: World) -> None:
    first = world.service()
    populate(world, first)
    first.changes.save()
    before = dump_state(first)
    world.stop(first)

    second = world.service()
    assert dump_state(second) == before
    account = second.default.account
    assert account.find_contact("ADA@example.com").properties == {"plan": "pro", "age": "36"}
    assert account.find_recipient(account.find_contact("bob@example.com").id, 1).is_unsubscribed
    assert [l.name for l in account.lists.values()] == ["segjet", "VIP customers"]
    assert second.tenant("other-key").account.find_contact("ada@example.com") is not None
    assert second.backend.authenticate("other-key", "other-secret") is second.tenant("other-key").account
    sections = before["accounts"][0]
    for collection in ("properties", "contacts", "lists", "recipients", "callbacks", "jobs", "messages", "events", "campaigns",
                       "webhooks", "segment_batches"):
        assert sections[collection], f"populate() made no {collection}"


def test_later_changes_and_deletions_are_written_row_by_row(world: World) -> None:
    first = world.service()
    populate(world, first)
    first.changes.save()
    account = first.default.account
    account.delete_list(str(next(l.id for l in account.lists.values() if l.name == "VIP customers")))
    account.delete_callback("open|false")
    account.update_contact("ada@example.com", {"Name": "Ada L."})
    first.reset_account("other-key")
    first.changes.save()
    before = dump_state(first)
    world.stop(first)
    second = world.service()
    assert dump_state(second) == before
    assert second.tenant("other-key").account.contacts == {}


def test_a_full_reset_is_stored_too(world: World) -> None:
    # Without the wipe, the old rows stayed under the configured account's key, and came back at the restart.
    first = world.service()
    populate(world, first)
    first.changes.save()
    first.reset()
    first.changes.save()
    fresh = dump_state(first)
    world.stop(first)
    second = world.service()
    assert dump_state(second) == fresh
    assert second.default.account.contacts == {} and second.tenant("other-key") is None


def test_a_save_that_fails_keeps_its_rows_for_the_next(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    first = world.service()
    store = world.stores[-1]
    account = first.default.account
    account.create_contact({"Email": "kept@example.com"})

    def failing(*args: Any) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(store, "_upsert", failing)
    with pytest.raises(sqlite3.OperationalError):
        first.changes.save()
    monkeypatch.undo()
    first.changes.save()
    world.stop(first)
    assert world.service().default.account.find_contact("kept@example.com") is not None


def test_a_save_writes_the_rows_changed_not_the_whole_account(world: World) -> None:
    # `segjet up --data-dir` at scale: a save after one request must cost what that request
    # changed, whatever the account already holds (benchmarks/persistence_soak.py).
    service = world.service()
    store = world.stores[-1]
    account = service.default.account
    for n in range(300):
        account.manage_contact("1", {"Email": f"c{n}@example.com", "Action": "addforce", "Properties": {}})
    service.changes.save()
    statements: list[str] = []
    store.connection.set_trace_callback(statements.append)
    account.manage_contact("1", {"Email": "one-more@example.com", "Action": "addforce", "Properties": {}})
    service.changes.save()
    store.connection.set_trace_callback(None)
    written = [s for s in statements if s.startswith(("INSERT", "DELETE", "UPDATE"))]
    # The new contact, its subscription, the list, the account row: not the 300 others.
    assert 1 <= len(written) <= 6, written
    assert service.changes.rows == set()


def test_without_a_store_no_change_is_kept(world: World) -> None:
    # Nothing saves them: marks kept without --data-dir would grow with every request forever.
    service = world.service(persistent=False)
    account = service.default.account
    for n in range(200):
        account.manage_contact("1", {"Email": f"c{n}@example.com", "Action": "addforce", "Properties": {}})
    service.reset_account(account.api_key)
    service.reset()
    assert service.changes.rows == set() and service.changes.wiped == set()


@pytest.mark.parametrize(
    ("create", "refused", "kind"),
    [
        (lambda a: a.create_callback({"EventType": "open", "Url": "http://hooks.test/open"}),
         lambda a: a.create_callback({"EventType": "open", "Url": "http://hooks.test/other"}), "callback"),
        (lambda a: a.create_list({"Name": "VIP"}), lambda a: a.create_list({"Name": "Other", "IsDeleted": "maybe"}), "list"),
        (lambda a: a.create_recipient({"ContactID": a.create_contact({"Email": "r@example.com"}).id, "ListID": 1}),
         lambda a: a.create_recipient({"ContactID": a.create_contact({"Email": "s@example.com"}).id, "ListID": 1, "IsActive": "maybe"}),
         "recipient"),
    ],
    ids=["callback", "list", "recipient"],
)
def test_a_refused_post_leaves_the_stored_state_as_the_live_one(world: World, create: Any, refused: Any, kind: str) -> None:
    # Refused after taking an ID: nothing stored the used-up ID, so after a restart the counter was
    # behind the live server's and the IDs handed out differed.
    first = world.service()
    account = first.default.account
    create(account)
    with pytest.raises(MailjetError):
        refused(account)
    first.changes.save()
    before = dump_state(first)
    world.stop(first)
    assert dump_state(world.service()) == before
    assert account.next_ids[kind] == max(getattr(account, {"callback": "callbacks", "list": "lists", "recipient": "recipients"}[kind])) + 1


def test_pending_work_resumes_on_the_clock_after_a_load(world: World) -> None:
    first = world.service()
    ids = populate(world, first)
    first.changes.save()
    world.stop(first)
    second = world.service()
    tenant = second.default
    webhook = tenant.events.events(message_id=ids["message_id"], event="sent")[0].webhook
    assert webhook.state == "retrying" and len(webhook.attempts) == 1
    assert tenant.account.jobs[ids["pending_job"]].status == "In Progress"  # stored before it ran
    assert tenant.account.find_contact("erin@example.com") is None
    world.transport.status = 200
    world.advance(timedelta(hours=3))
    assert tenant.account.jobs[ids["pending_job"]].status == "Completed"
    assert tenant.account.find_contact("erin@example.com") is not None
    assert webhook.state == "delivered" and len(webhook.attempts) == 2
    assert all(batch.state == "delivered" for batch in tenant.outbox.segment.batches.values())
    fay = [m for m in tenant.account.messages if m.recipient["Email"] == "fay@example.com"][0]
    assert [event["event"] for event in fay.events] == ["sent", "open"]  # the simulated open planned before the stop
    # ...and what the timers did is stored too.
    world.stop(second)
    assert dump_state(world.service()) == dump_state(second)


def test_a_seeded_account_does_not_repeat_message_uuids_after_a_restart(world: World) -> None:
    first = world.service()
    message = {"From": {"Email": "shop@example.com"}, "To": [{"Email": "ada@example.com"}], "Subject": "S", "TextPart": "t"}
    send(first.default.account, {"Messages": [message]})
    first.changes.save()
    world.stop(first)
    second = world.service()
    send(second.default.account, {"Messages": [message]})
    uuids = [m.message_uuid for m in second.default.account.messages]
    ids = [m.message_id for m in second.default.account.messages]
    assert len(set(uuids)) == 2 and ids[1] == ids[0] + 1


def test_every_value_the_apis_give_loads_again(world: World) -> None:
    # The loader refuses values outside what the APIs give (Datatype, Version, Status, states...): each
    # value they do give must still come back, from a snapshot and from the database.
    first = world.service()
    tenant = first.default
    account, events = tenant.account, tenant.events
    for datatype in ("str", "int", "float", "bool", "datetime"):
        account.create_property({"Name": f"p_{datatype}", "Datatype": datatype, "NameSpace": "historic" if datatype == "int" else "static"})
    for event_type in ("click", "bounce", "spam", "blocked", "unsub", "open", "sent"):
        account.create_callback({"EventType": event_type, "Url": f"http://hooks.test/{event_type}", "Version": 2 if event_type in ("open", "click") else 1})
    account.create_callback({"EventType": "sent", "Url": "http://hooks.test/backup", "IsBackup": True, "Status": "dead"})
    account.update_app_connection({"writeKey": "wk", "sendEvents": True})
    news = account.create_list({"Name": "News"})
    account.start_contacts_job({"ContactsLists": [{"ListID": news.id, "Action": action} for action in ("addforce", "addnoforce", "unsub", "remove")],
                                "Contacts": [{"Email": "job@example.com"}]})
    account.start_list_job(str(news.id), {"Action": "addforce", "Contacts": [{"Email": "bad"}]})
    account.manage_contact(str(news.id), {"Email": "reader@example.com", "Action": "addnoforce"})
    to = {"Email": "ada@example.com", "Name": "Ada"}

    def one(**extra: Any) -> int:
        body = {"From": {"Email": "shop@example.com"}, "To": [to], "Subject": "S", "HTMLPart": HTML, **extra}
        return send(account, {"Messages": [body]})[1]["Messages"][0]["To"][0]["MessageID"]

    world.transport.status = 500
    status, _ = send(account, {"Messages": [{"From": {"Email": "shop@example.com"}, "To": [to], "Cc": [{"Email": "cc@example.com"}],
                                                "Bcc": [{"Email": "bcc@example.com"}], "Subject": "S", "HTMLPart": HTML}]})
    assert status == 200
    world.advance(timedelta(seconds=2))  # sent: the webhook and Segment fail...
    for _ in range(15):  # ...until they give up (the sent webhook is suspended); one retry per advance
        world.advance(timedelta(hours=2))
    world.transport.status = 200
    opened, clicked, bounced, spam, blocked = one(), one(), one(), one(), one()
    events.apply(blocked, {"event": "blocked"})
    world.advance(timedelta(seconds=2))
    events.apply(opened, {"event": "open"})
    events.apply(clicked, {"event": "click"})
    events.apply(bounced, {"event": "bounce"})
    events.apply(spam, {"event": "spam"})
    campaign = events.send_campaign({"list_id": news.id, "subject": "Spring", "html": HTML})
    world.advance(timedelta(seconds=2))
    events.apply(campaign.message_ids[0], {"event": "unsub"})
    world.advance(timedelta(seconds=2))  # delivered, to the webhooks and to Segment
    world.transport.status = 500
    events.apply(clicked, {"event": "click"})
    world.advance(timedelta(seconds=2))  # retrying
    events.apply(opened, {"event": "open"})  # pending, its Segment call queued behind the retry
    one()  # queued
    send(account, {"SandboxMode": True, "Messages": [{"From": {"Email": "shop@example.com"}, "To": [to], "TextPart": "t"}]})
    account.start_contacts_job({"Contacts": [{"Email": "later@example.com"}]})  # In Progress
    other = first.create_account("other-key", "other-secret").account
    other.delete_list(str(other.app_connection.list_id))  # App Connections' listId becomes 0
    first.changes.save()

    state = dump_state(first)
    sections = state["accounts"][0]
    assert {p["datatype"] for p in sections["properties"]} == {"str", "int", "float", "bool", "datetime"}
    assert {p["namespace"] for p in sections["properties"]} == {"static", "historic"}
    assert {(c["version"], c["status"]) for c in sections["callbacks"]} == {(1, "alive"), (2, "alive"), (1, "dead")}
    assert {j["status"] for j in sections["jobs"]} == {"In Progress", "Completed", "Error"}
    assert {m["status"] for m in sections["messages"]} == {"queued", "sandbox", "sent", "opened", "clicked", "bounced", "blocked", "spam", "unsub"}
    assert {m["recipient_type"] for m in sections["messages"]} == {"To", "Cc", "Bcc"}
    assert {e["event"] for e in sections["events"]} == {"sent", "open", "click", "bounce", "blocked", "spam", "unsub"}
    assert {(w["version"], w["state"]) for w in sections["webhooks"]} >= {(1, "failed"), (1, "delivered"), (2, "delivered"), (2, "retrying"), (2, "pending")}
    assert {b["state"] for b in sections["segment_batches"]} == {"failed", "delivered", "retrying"}
    assert state["accounts"][1]["account"]["app_connection"]["list_id"] == 0

    snapshot = json.loads(json.dumps(export_snapshot(first)))
    target = world.service(persistent=False)
    import_snapshot(target, snapshot, None)
    assert dump_state(target) == snapshot["state"]
    world.stop(target)
    world.stop(first)
    assert dump_state(world.service()) == state  # and from the database


def test_what_deletions_and_datatype_changes_leave_behind_loads_again(world: World) -> None:
    # The loader refuses values and references the API never holds; these it does hold: a value
    # written before its property's Datatype changed (update_property keeps it), and jobs, campaigns
    # and webhook deliveries naming a list or webhook deleted since.
    first = world.service(persistent=False)
    tenant = first.default
    account, events = tenant.account, tenant.events
    score = account.create_property({"Name": "score", "Datatype": "str"})
    account.manage_contact("1", {"Email": "ada@example.com", "Action": "addnoforce", "Properties": {"score": "high"}})
    account.update_property(str(score.id), {"Datatype": "int"})
    news = account.create_list({"Name": "News"})
    account.manage_contact(str(news.id), {"Email": "bob@example.com", "Action": "addnoforce"})
    account.start_list_job(str(news.id), {"Action": "addforce", "Contacts": [{"Email": "job@example.com"}]})
    account.start_contacts_job({"ContactsLists": [{"ListID": news.id, "Action": "addforce"}], "Contacts": [{"Email": "job2@example.com"}]})
    events.send_campaign({"list_id": news.id, "subject": "Spring", "html": HTML})
    hook = account.create_callback({"EventType": "sent", "Url": "http://hooks.test/sent"})
    world.transport.status = 500
    world.advance(timedelta(seconds=2))  # the jobs run, the campaign's message is sent: its webhook fails
    account.delete_callback(str(hook.id))
    account.delete_list(str(news.id))
    first.create_account(" ", "other-secret")  # POST accounts takes a blank API key
    state = dump_state(first)
    sections = state["accounts"][0]
    assert sections["contacts"][0]["properties"] == {"score": "high"}
    assert {job["list_id"] for job in sections["jobs"]} == {news.id, None} and sections["campaigns"][0]["list_id"] == news.id
    assert sections["webhooks"][0]["callback_ids"] == [hook.id]

    snapshot = json.loads(json.dumps(export_snapshot(first)))
    target = world.service(persistent=False)
    import_snapshot(target, snapshot, None)
    assert dump_state(target) == snapshot["state"]


def test_snapshot_round_trip_and_atomic_import(world: World) -> None:
    source = world.service(persistent=False)
    populate(world, source)
    snapshot = json.loads(json.dumps(export_snapshot(source)))  # as it travels over HTTP
    assert (snapshot["format"], snapshot["service"], snapshot["version"]) == ("segjet-snapshot", "mailjet", 1)

    target = world.service()
    import_snapshot(target, snapshot, world.stores[-1])
    assert dump_state(target) == snapshot["state"]
    world.stop(target)
    assert dump_state(world.service()) == snapshot["state"]  # stored as a whole

    current = dump_state(target)
    broken = copy.deepcopy(snapshot)
    broken["state"]["accounts"][0]["recipients"][0]["contact_id"] = 999_999
    for bad, words in [
        ({**snapshot, "format": "other"}, "format must be"),
        ({**snapshot, "service": "segment"}, "service must be"),
        ({**snapshot, "version": 2}, "version must be"),
        ({**snapshot, "version": True}, "version must be"),
        (broken, "refers to a missing contact"),
        ({**snapshot, "state": {"accounts": [{"account": {}}]}}, "fields must be"),
    ]:
        with pytest.raises(StateError, match=words):
            import_snapshot(target, bad, world.stores[-1])
        assert dump_state(target) == current


def test_snapshot_checks_every_field(world: World) -> None:
    service = world.service(persistent=False)
    populate(world, service)
    snapshot = export_snapshot(service)
    contact = snapshot["state"]["accounts"][0]["contacts"][0]
    for change, words in [({"created_at": "yesterday"}, "contacts\\[0\\].created_at"), ({"id": "7"}, "expected int"),
                          ({"colour": "red"}, "unknown field"), ({"properties": {"age": 3}}, "string values"),
                          ({"email": None}, "expected str")]:
        bad = copy.deepcopy(snapshot)
        bad["state"]["accounts"][0]["contacts"][0] = {**contact, **change}
        with pytest.raises(StateError, match=words):
            read_snapshot(service, bad)
    missing = copy.deepcopy(snapshot)
    del missing["state"]["accounts"][0]["contacts"][0]["email"]
    with pytest.raises(StateError, match=r"contacts\[0\]: missing field email"):
        read_snapshot(service, missing)
    twice = copy.deepcopy(snapshot)
    twice["state"]["accounts"][0]["lists"].append({**twice["state"]["accounts"][0]["lists"][0], "name": "again"})
    with pytest.raises(StateError, match="lists: duplicate id"):
        read_snapshot(service, twice)


def _delivered(account: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in account["messages"] if m["life"] is not None and m["life"]["plan"] == [] and m["events"])


def _planned(account: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in account["messages"] if m["life"] is not None and m["life"]["plan"])


@pytest.mark.parametrize(
    ("change", "words"),
    [
        # Each was loaded, then failed later: a 500 on GET email-events or on a control event, or a timer error.
        (lambda a: _delivered(a).update(recipient={}), r"recipient: expected .*Email"),
        (lambda a: _delivered(a).update(sender={"Name": "Shop"}), r"sender: expected .*Email"),
        (lambda a: _delivered(a).update(contact_id=0), "contact 0 is missing"),
        (lambda a: a["events"][0]["segment"]["call"].pop("messageId"), r"segment.call: expected .*messageId"),
        (lambda a: a["events"][0]["segment"].update(record_id=99), "record_id must be 1"),
        (lambda a: _planned(a)["life"]["plan"][0].__setitem__(1, "deliver"), r"plan\[0\]: .*open, click"),
        (lambda a: _planned(a)["life"]["plan"][0][2].update(ip=7), r"plan\[0\]: ip must be a non-empty string"),
        (lambda a: _planned(a)["life"].update(sent_timer=5), "unknown field"),
        # Loaded, but exported as nothing loads again (and a restart on the database fails the same way):
        # a sandbox message's events lost their message, and MessageIDs outgrew what JSON readers keep as integers.
        (lambda a: _delivered(a).update(sandbox=True), "a sandbox message is never delivered: its life must be null"),
        (lambda a: a["account"].update(api_key_id=2**63), "api_key_id: must be between 1 and 1073741824"),
        (lambda a: a["account"].update(api_key_id=0), "api_key_id: must be between 1 and 1073741824"),
        # GET of the job answered 500: its Error is the first error's.
        (lambda a: a["jobs"][0]["errors"].__setitem__(0, "bad"), r"jobs\[0\].errors: expected objects with an Error"),
        (lambda a: a["jobs"][0]["errors"][0].pop("Error"), r"jobs\[0\].errors: expected objects with an Error"),
        # A counter at or below an id in use gave the next object that id: it replaced the one there
        # (a campaign, a webhook delivery, a Segment batch), or an event was stored under another's row.
        (lambda a: a["account"].update(next_campaign_id=a["campaigns"][-1]["id"]), "next_campaign_id: must be above"),
        (lambda a: a["account"].update(next_webhook_id=a["webhooks"][-1]["id"]), "next_webhook_id: must be above"),
        (lambda a: a["account"].update(next_segment_batch_id=1), "next_segment_batch_id: must be above"),
        (lambda a: a["account"].update(next_event_id=2), r"next_event_id: must be \d+, one above"),
        (lambda a: a["account"].update(next_event_id=len(a["events"]) + 2), r"next_event_id: must be \d+, one above"),
        # Beyond what SQLite keys hold: the first id handed out could not be saved, nor anything after it.
        (lambda a: a["account"]["next_ids"].update(job=2**63), "next_ids.job: must be between 1 and 9007199254740992"),
        # The next contact (or list) would have replaced the one with the highest id.
        (lambda a: a["account"]["next_ids"].update(contact=max(c["id"] for c in a["contacts"])), "next_ids.contact: must be above"),
        (lambda a: a["account"]["next_ids"].update(list=max(l["id"] for l in a["lists"])), "next_ids.list: must be above"),
        # Two contacts of one address: /contact/{email} and managecontact could reach only one of them.
        (lambda a: a["contacts"][1].update(email=a["contacts"][0]["email"].upper()), "two contacts with one email"),
        (lambda a: a["account"].update(next_campaign_id=2**53 + 1), "next_campaign_id: must be between 1 and"),
        # The shape of an account, its rows and their links: each refused with where and why, not a 500.
        (lambda a: a.update(templates=[]), r"accounts\[0\]: unknown field\(s\) templates"),
        (lambda a: a.update(account=[]), r"accounts\[0\].account: expected an object"),
        (lambda a: a["account"]["next_ids"].pop("job"), "next_ids: expected integers for"),
        (lambda a: a["account"]["simulation"].update(open_rate=2), "simulation: open_rate must be a number from 0 to 1"),
        (lambda a: a.update(contacts={}), r"accounts\[0\].contacts: expected a list"),
        (lambda a: a["messages"][0].pop("life"), r"messages\[0\]: expected an object with a life"),
        (lambda a: _planned(a).update(life=[]), "life: expected an object"),
        (lambda a: _planned(a)["life"]["plan"][0].append({}), r"plan\[0\]: expected \[time, event, fields\]"),
        (lambda a: a["events"][0].update(extra=1), r"events\[0\]: fields must be at, event, id, message_id, payload, segment"),
        (lambda a: a["events"][0].update(id=5), r"events\[0\]: events must be numbered 1, 2, 3"),
        (lambda a: a["events"][0].update(message_id=12345), r"events\[0\]: no delivered message 12345"),
        (lambda a: a["events"][0].update(segment=None), r"segment_batches\[0\]: an event of the batch was not forwarded"),
        (lambda a: a["webhooks"].__setitem__(0, 5), r"webhooks\[0\]: expected an object"),
        (lambda a: a["webhooks"][0].pop("events"), r"webhooks\[0\]: missing field events"),
        (lambda a: a["webhooks"][0].update(events=["1"]), r"webhooks\[0\].events: expected a list of integers"),
        (lambda a: a["webhooks"][0].update(events=[999]), r"webhooks\[0\].events: unknown event id"),
        (lambda a: a["segment_batches"][0].update(events=[]), r"segment_batches\[0\].events: unknown event id"),
        # Kept as sent and shown in answers (a job's contacts): no deeper than any answer can render.
        (lambda a: a["jobs"][0].update(contacts=_nested(300)), r"jobs\[0\].contacts: nested more than 254 levels deep"),
        # Values outside the sets the REST API takes: loaded, each broke what came later.
        # Every write of a value to the property failed "Property type does not match definition".
        (lambda a: a["properties"][0].update(datatype="blob"), r"properties\[0\].datatype: must be one of str, int, float, bool, datetime, got \"blob\""),
        # ?Namespace= (lower-cased) never found it.
        (lambda a: a["properties"][0].update(namespace="Static"), r"properties\[0\].namespace: must be one of static, historic"),
        # /contactmetadata/{name} and every property value reached only the first of them.
        (lambda a: a["properties"][1].update(name=a["properties"][0]["name"].upper()), "two properties named 'plan' in any case"),
        # Delivered with the body of Version 2 (a list), routed with the timing of Version 1.
        (lambda a: a["callbacks"][0].update(version=3), r"callbacks\[0\].version: must be one of 1, 2, got 3"),
        # No event of any type reached it.
        (lambda a: a["callbacks"][0].update(event_type="delivered"), r"callbacks\[0\].event_type: must be one of click, bounce"),
        (lambda a: a["callbacks"][0].update(status="paused"), r"callbacks\[0\].status: must be one of alive, dead"),
        # EventType|IsBackup is the webhook's key (/eventcallbackurl/open|false): it reached one of them.
        (lambda a: a["callbacks"][1].update(event_type="sent"), "two webhooks for sent|false"),
        # Never run (only In Progress jobs are), never finished.
        (lambda a: a["jobs"][0].update(status="Weird"), r"jobs\[0\].status: must be one of In Progress, Completed, Error"),
        # Each contact of the job failed "contact could not be processed" (a KeyError in run_job).
        (lambda a: a["jobs"][0]["contacts_lists"][0].update(Action="delete"), r"jobs\[0\].contacts_lists: expected \[\{\"ListID\": id, \"Action\": "),
        (lambda a: a["jobs"][0]["contacts_lists"][0].pop("ListID"), r"jobs\[0\].contacts_lists: expected \[\{\"ListID\": id"),
        (lambda a: a["jobs"][0]["contacts_lists"].append(7), r"jobs\[0\].contacts_lists: expected \[\{\"ListID\": id"),
        # The second subscription of a pair hid the first; deleting the list then answered 500 (KeyError).
        (lambda a: a["recipients"][1].update(contact_id=a["recipients"][0]["contact_id"]), "two recipients of contact 1 on list 1"),
        # ListALT and the unique Name reached only one of them.
        (lambda a: a["lists"][1].update(name=a["lists"][0]["name"]), "two lists named 'segjet'"),
        # PUT app-connection could never set it: the list was deleted (listId goes to 0) or never existed.
        (lambda a: a["account"]["app_connection"].update(list_id=99), r"app_connection.list_id: 99 is not a contact list of this account"),
        # Every email event's forward failed: a 405 at the URL's root, unknown_write_key at the fake Segment.
        (lambda a: a["account"]["app_connection"].update(segment_url="http://127.0.0.1:9/?src=mj"), r"app_connection.segment_url: must carry no query"),
        (lambda a: a["account"]["app_connection"].update(write_key="abc:def"), r"app_connection.write_key: must not contain ':'"),
        # A bounce after a delivery is refused by the status word (ENGAGED_STATUSES).
        (lambda a: _delivered(a).update(status="Weird"), r"messages\[\d+\].status: must be one of queued, sandbox, sent"),
        (lambda a: _delivered(a).update(recipient_type="Reply-To"), r"messages\[\d+\].recipient_type: must be one of To, Cc, Bcc"),
        (lambda a: a["events"][0].update(event="delivered"), r"events\[0\].event: must be one of sent, open, click"),
        # Never attempted again (only pending and retrying deliveries are), nor shown as done.
        (lambda a: a["webhooks"][0].update(state="lost"), r"webhooks\[0\].state: must be one of pending, retrying, delivered, failed"),
        (lambda a: a["webhooks"][0].update(version=3), r"webhooks\[0\].version: must be one of 1, 2, got 3"),
        # A Version 1 POST carries one event: the others were lost.
        (lambda a: a["webhooks"][0].update(events=[1, 3]), r"webhooks\[0\]: a Version 1 delivery carries one event, got 2"),
        (lambda a: a["segment_batches"][0].update(state="Weird"), r"segment_batches\[0\].state: must be one of queued, retrying, delivered, failed"),
        # A batch POSTs each event's call: a null one made Segment refuse the whole batch (400), the others with it.
        (lambda a: a["events"][0]["segment"].update(call=None), r"segment_batches\[0\]: an event of the batch was not forwarded"),
        # Lives are found by MessageID: the first message's timers were never armed again (its `sent` never came).
        (lambda a: a["messages"][2].update(message_id=a["messages"][0]["message_id"]), r"messages: two messages with MessageID \d+"),
        # One batch is sent at a time: the other one waiting was never sent again.
        (lambda a: (a["segment_batches"].append({**a["segment_batches"][0], "id": 2, "state": "queued", "due": None, "events": [2]}),
                    a["account"].update(next_segment_batch_id=3)), r"segment_batches\[1\]: a second batch waiting to be sent \(batch 1 waits\)"),
        # Values are kept under the defined spelling of a property (Account.property_value): one under
        # another name was never read, nor removed with its property.
        (lambda a: a["contacts"][0]["properties"].update(nope="x"), r"contacts\[0\].properties: 'nope' is not the name of a property"),
        (lambda a: a["contacts"][0]["properties"].update(PLAN="pro"), r"contacts\[0\].properties: 'PLAN' is not the name of a property"),
        # No Datatype stores a longer value (coerce_property).
        (lambda a: a["contacts"][0]["properties"].update(plan="x" * 256), r"contacts\[0\].properties.plan: longer than 255 characters"),
        # Neither /contact/{email} nor managecontact could reach it (check_email).
        (lambda a: a["contacts"][0].update(email="not-an-address"), r"contacts\[0\].email: \"not-an-address\" is not an address"),
        (lambda a: a["contacts"][0].update(email=" ada@example.com"), r"contacts\[0\].email: \" ada@example.com\" is not an address"),
        (lambda a: a["contacts"][0].update(delivered_count=-1), r"contacts\[0\].delivered_count: must be 0 or more, got -1"),
        (lambda a: a["jobs"][0].update(count=-1), r"jobs\[0\].count: must be 0 or more, got -1"),
        (lambda a: a["segment_batches"][0].update(retries=-1), r"segment_batches\[0\].retries: must be 0 or more, got -1"),
        # POST accounts refuses them: Basic auth could not carry the key.
        (lambda a: a["account"].update(api_key="a:b"), r"accounts\[0\].account.api_key: must not contain ':'"),
        (lambda a: a["account"].update(api_key=""), r"accounts\[0\].account.api_key: must be a non-empty string"),
        (lambda a: a["account"].update(secret_key=""), r"accounts\[0\].account.secret_key: must be a non-empty string"),
        # An id never handed out: the next object created takes it, and the reference with it.
        (lambda a: a["jobs"][0].update(list_id=99), r"jobs\[0\].list_id: 99 is not the id of a list this account created"),
        (lambda a: a["jobs"][0]["contacts_lists"][0].update(ListID=99), r"jobs\[0\].contacts_lists: 99 is not the id of a list"),
        (lambda a: a["campaigns"][1].update(list_id=99), r"campaigns\[1\].list_id: 99 is not the id of a list"),
        (lambda a: a["webhooks"][0].update(callback_ids=[99]), r"webhooks\[0\].callback_ids: 99 is not the id of a webhook"),
        (lambda a: a["webhooks"][0].update(callback_ids=[]), r"webhooks\[0\].callback_ids: expected the webhooks it was routed to"),
        # Messages are never deleted: its events, its deduplication never reached the message.
        (lambda a: a["campaigns"][0].update(message_ids=[12345]), r"campaigns\[0\].message_ids: 12345 is not a message this account sent"),
        (lambda a: a["campaigns"][0].update(message_ids=[0]), r"campaigns\[0\].message_ids: 0 is not a message this account sent"),
    ],
)
def test_snapshot_refuses_what_would_break_later(world: World, change: Any, words: str) -> None:
    service = world.service(persistent=False)
    populate(world, service)
    snapshot = json.loads(json.dumps(export_snapshot(service)))
    read_snapshot(service, snapshot)  # the unchanged snapshot loads
    change(snapshot["state"]["accounts"][0])
    with pytest.raises(StateError, match=words):
        read_snapshot(service, snapshot)


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda accounts: accounts.__setitem__(0, []), r"state.accounts\[0\]: expected an object"),
        (lambda accounts: accounts.append(copy.deepcopy(accounts[0])), r"state.accounts\[2\]: a second account with API key 'segjet-api-key'"),
        (lambda accounts: accounts[1]["account"].update(api_key_id=accounts[0]["account"]["api_key_id"]), "two accounts with one api_key_id"),
        # Every account's App Connection is checked, not the first one's only.
        (lambda accounts: accounts[1]["account"]["app_connection"].update(write_key="a:b"),
         r"state.accounts\[1\].account.app_connection.write_key: must not contain ':'"),
    ],
)
def test_snapshot_refuses_accounts_that_are_no_object_or_clash(world: World, change: Any, words: str) -> None:
    service = world.service(persistent=False)
    populate(world, service)
    snapshot = json.loads(json.dumps(export_snapshot(service)))
    change(snapshot["state"]["accounts"])
    with pytest.raises(StateError, match=words):
        read_snapshot(service, snapshot)


def test_a_snapshot_without_the_configured_account_gets_a_fresh_one_without_a_data_dir(world: World) -> None:
    # A snapshot of another bundle (another --mailjet-api-key) imported into a server without
    # --data-dir: its accounts, and still the configured one, which every other part of the bundle calls.
    source = world.service(persistent=False)
    populate(world, source)
    snapshot = json.loads(json.dumps(export_snapshot(source)))
    snapshot["state"]["accounts"] = [a for a in snapshot["state"]["accounts"] if a["account"]["api_key"] == "other-key"]
    target = world.service(persistent=False)
    target.default.account.create_contact({"Email": "before@example.com"})
    import_snapshot(target, snapshot, None)
    assert sorted(target.tenants) == ["other-key", "segjet-api-key"]
    assert [c.email for c in target.tenants["other-key"].account.contacts.values()] == ["ada@example.com"]
    fresh = target.default.account
    assert fresh.contacts == {} and fresh.api_key_id not in (0, target.tenants["other-key"].account.api_key_id)
    assert target.backend.authenticate("segjet-api-key", fresh.secret_key) is fresh


def test_events_waiting_for_segment_follow_the_bundles_segment_of_the_run_that_loads_them(world: World) -> None:
    # A restart with --segment-port 0 gives Segment another URL: the batch waiting for its retry went
    # there, and so must the events queued behind it (they kept the old URL and failed for good).
    source = world.service(persistent=False)
    ids = populate(world, source)
    queued = [r for r in source.default.events.records if r.segment is not None and r.segment.call is not None and r.segment.batch is None]
    assert queued, "populate leaves events queued behind the batch being retried"
    snapshot = json.loads(json.dumps(export_snapshot(source)))
    world.stop(source)
    moved = MailjetService(BundleConfig(seed=3), world.clock, "http://mj.test", "http://segment-2.test", world.transport)
    import_snapshot(moved, snapshot, None)
    world.transport.status = 200
    posted_before = len(world.transport.posts)
    world.advance(timedelta(hours=1))
    batch_urls = {url for url, _ in world.transport.posts[posted_before:] if url.endswith("/v1/batch")}
    assert batch_urls == {"http://segment-2.test/v1/batch"}
    records = moved.default.events.records
    assert {r.segment.state for r in records if r.segment.call is not None} == {"delivered"}
    assert {r.segment.state for r in records if r.id in {q.id for q in queued}} == {"delivered"}
    assert ids["message_id"] in {r.message.message_id for r in records}


def test_a_database_holding_what_later_rules_refuse_still_loads(world: World) -> None:
    # PUT app-connections/segment took these until later rules refused them: checked at start-up,
    # they stopped `segjet up` on the user's data dir. A snapshot of it is still refused (below).
    first = world.service()
    account = first.default.account
    account.app_connection.write_key, account.app_connection.segment_url = "wk:colon", "http://127.0.0.1:9/?src=mj"
    account.app_connection.authentication_key, account.app_connection.segment_url_explicit = "auth:colon", True
    account.touch("account", 0)
    first.changes.save()
    snapshot = json.loads(json.dumps(export_snapshot(first)))
    world.stop(first)
    loaded = world.service().default.account.app_connection
    assert (loaded.write_key, loaded.segment_url, loaded.authentication_key) == ("wk:colon", "http://127.0.0.1:9/?src=mj", "auth:colon")
    with pytest.raises(StateError, match=r"state.accounts\[0\].account.app_connection.authentication_key: must not contain ':'"):
        read_snapshot(world.service(persistent=False), snapshot)


def test_a_database_of_another_schema_version_is_refused(world: World) -> None:
    world.service()  # creates the file at the current version
    connection = sqlite3.connect(world.data_dir / "mailjet.sqlite3")
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(SchemaVersionError, match="schema version"):
        world.service()


@pytest.mark.parametrize(
    ("where", "data", "words"),
    [
        ("kind = 'account'", "[1, 2]", r"the account row 0 of account segjet-api-key: expected an object"),
        ("kind = 'contact'", "{oops", r"the contact row \d+ of account segjet-api-key: not JSON"),
        ("kind = 'contact'", "7", r"accounts\[0\].contacts\[0\]: expected an object"),
        # Edited by hand: every value written to the property was refused after the start.
        ("kind = 'property'", '{"id": 1, "name": "plan", "datatype": "blob", "namespace": "static"}',
         r"accounts\[0\].properties\[0\].datatype: must be one of str, int"),
    ],
)
def test_a_damaged_row_is_refused_with_the_file_and_the_row(world: World, where: str, data: str, words: str) -> None:
    # A row that was no JSON, or an account row that was no object, crashed the start (JSONDecodeError
    # without the file's name, AttributeError).
    first = world.service()
    populate(world, first)
    first.changes.save()
    world.stop(first)
    connection = sqlite3.connect(world.data_dir / "mailjet.sqlite3")
    with connection:
        connection.execute(
            f"UPDATE rows SET data = ? WHERE api_key = 'segjet-api-key' AND {where} "
            f"AND key = (SELECT MIN(key) FROM rows WHERE api_key = 'segjet-api-key' AND {where})", (data,)
        )
    connection.close()
    with pytest.raises(StateError, match=rf"mailjet.sqlite3: .*{words}"):
        world.service()


def test_a_row_of_an_unknown_kind_is_refused(world: World) -> None:
    world.service()
    connection = sqlite3.connect(world.data_dir / "mailjet.sqlite3")
    with connection:
        connection.execute("INSERT INTO rows VALUES ('segjet-api-key', 'template', 1, '{}')")
    connection.close()
    with pytest.raises(StateError, match="the template row 1 of account segjet-api-key: unknown kind"):
        world.service()


def test_a_duplicate_in_campaign_pending_at_a_restart_is_still_blocked(world: World) -> None:
    # DeduplicateCampaign is decided at the send; what stays to do is the planned `blocked`, stored with the life.
    first = world.service()
    message = {"From": {"Email": "shop@example.com"}, "To": [{"Email": "ada@example.com"}], "TextPart": "t", "CustomCampaign": "welcome"}
    send(first.default.account, {"Messages": [message, {**message, "DeduplicateCampaign": True}]})
    first.changes.save()
    world.stop(first)
    second = world.service()
    world.advance(timedelta(seconds=1))
    kept, duplicate = second.default.account.messages
    assert (kept.status, duplicate.status, duplicate.deduplicate_campaign) == ("sent", "blocked", True)
    assert (duplicate.events[0]["error_related_to"], duplicate.events[0]["error"]) == ("mailjet", "duplicate in campaign")


def test_messages_stored_before_deduplicate_campaign_existed_still_load(world: World) -> None:
    service = world.service(persistent=False)
    populate(world, service)
    snapshot = json.loads(json.dumps(export_snapshot(service)))
    for message in snapshot["state"]["accounts"][0]["messages"]:
        del message["deduplicate_campaign"]
    loaded = read_snapshot(service, snapshot)
    assert not any(m.deduplicate_campaign for tenant in loaded.values() for m in tenant.account.messages)


def test_tracking_settings_of_a_message_survive_a_restart_and_a_snapshot(world: World) -> None:
    first = world.service()
    message = {"From": {"Email": "shop@example.com"}, "To": [{"Email": "ada@example.com"}], "HTMLPart": HTML,
               "TrackOpens": "disabled", "TrackClicks": "enabled"}
    send(first.default.account, {"Messages": [message, {**message, "TrackOpens": "enabled", "TrackClicks": "disabled"}]})
    first.changes.save()
    world.stop(first)
    second = world.service()
    assert [(m.track_opens, m.track_clicks) for m in second.default.account.messages] == [(False, True), (True, False)]
    # ...and the rules still read them: no open for the first message after the restart.
    no_opens = second.default.account.messages[0].message_id
    with pytest.raises(EmailEventError, match="TrackOpens"):
        second.default.events.apply(no_opens, {"event": "open"})
    snapshot = json.loads(json.dumps(export_snapshot(second)))
    loaded = read_snapshot(second, snapshot)
    assert [(m.track_opens, m.track_clicks) for m in loaded["segjet-api-key"].account.messages] == [(False, True), (True, False)]


def test_messages_stored_before_tracking_settings_existed_load_as_tracked(world: World) -> None:
    # Before TrackOpens/TrackClicks were kept, every message could be opened and clicked.
    first = world.service()
    message = {"From": {"Email": "shop@example.com"}, "To": [{"Email": "ada@example.com"}], "HTMLPart": HTML, "TrackOpens": "disabled"}
    send(first.default.account, {"Messages": [message]})
    first.changes.save()
    snapshot = json.loads(json.dumps(export_snapshot(first)))
    world.stop(first)
    for stored in snapshot["state"]["accounts"][0]["messages"]:
        del stored["track_opens"], stored["track_clicks"]
    loaded = read_snapshot(first, snapshot)
    assert [(m.track_opens, m.track_clicks) for m in loaded["segjet-api-key"].account.messages] == [(True, True)]
    connection = sqlite3.connect(world.data_dir / "mailjet.sqlite3")
    with connection:
        connection.execute("UPDATE rows SET data = json_remove(data, '$.track_opens', '$.track_clicks') WHERE kind = 'message'")
    connection.close()
    second = world.service()
    (restored,) = second.default.account.messages
    assert (restored.track_opens, restored.track_clicks) == (True, True)
    assert second.default.events.apply(restored.message_id, {"event": "open"}).event == "open"


@dataclass
class HangingTransport(Transport):
    """Answers `status` until told to hang; then sends each POST and never hears back, as when the
    receiver is slow and segjet stops meanwhile."""

    hang: bool = False

    async def post_json(self, url: str, body: Any, headers: dict[str, str], timeout: float) -> Outcome:
        if not self.hang:
            return await super().post_json(url, body, headers, timeout)
        self.posts.append((url, body))
        await asyncio.get_running_loop().create_future()
        raise AssertionError("unreachable")


@pytest.mark.parametrize("cut", ["first attempt", "last attempt"])
def test_a_call_in_flight_when_the_server_stops_is_recorded_as_unanswered_and_sent_again(world: World, cut: str) -> None:
    # Cut by the stop, a webhook POST the receiver had was recorded nowhere: after a restart it was
    # sent again as a first attempt, and the receiver had two POSTs for one attempt shown. Recorded
    # as an ordinary failure, a cut last attempt (24 h after the first failure; the 10th retry) ended
    # the delivery failed, and suspended the webhook, on an answer never heard.
    transport = world.transport = HangingTransport(status=500, hang=cut == "first attempt")
    first = world.service()
    account = first.default.account
    account.create_callback({"EventType": "sent", "Url": "http://hooks.test/sent"})
    account.update_app_connection({"writeKey": "wk", "sendEvents": True})
    send(account, {"Messages": [{"From": {"Email": "shop@example.com"}, "To": [{"Email": "ada@example.com"}], "TextPart": "t"}]})
    world.clock.advance(timedelta(seconds=1))
    if cut == "last attempt":
        world.loop.run_until_complete(world.clock.run_due())
        for _ in range(9):  # the webhook's retries every 30 s; the batch's 2nd to 10th retries
            world.advance(timedelta(hours=1))
        world.clock.advance(timedelta(hours=15))  # past the webhook's 24 h; the batch's 11th try
        transport.hang = True
    posted = len(transport.posts)

    async def sent_then_stopped() -> None:
        await world.clock.run_due()
        while len(transport.posts) < posted + 2:
            await asyncio.sleep(0)
        await first.aclose()

    world.loop.run_until_complete(sent_then_stopped())
    first.changes.save()  # as the lifespan does once the transport is closed
    world.stop(first)
    world.transport = Transport(status=200)
    restarted = world.service().default
    [webhook] = restarted.outbox.webhooks.deliveries.values()
    [batch] = restarted.outbox.segment.batches.values()
    tries = (len(webhook.attempts), len(batch.attempts))
    for record in (webhook, batch):
        assert record.state == "retrying"
        assert record.attempts[-1]["error"] == "no answer: segjet stopped while waiting for it"
    assert restarted.account.callbacks[1].status == "alive"
    world.advance(timedelta(seconds=30))
    assert (webhook.state, batch.state) == ("delivered", "delivered")
    assert (len(webhook.attempts), len(batch.attempts)) == (tries[0] + 1, tries[1] + 1)


def test_a_segment_batch_waiting_for_its_retry_at_a_restart_is_sent_at_its_time(world: World) -> None:
    # Its wake-up armed at the restart's "now" found it not yet due, and nothing woke it again.
    world.transport = Transport(status=500)
    first = world.service()
    account = first.default.account
    account.update_app_connection({"writeKey": "wk", "sendEvents": True})
    send(account, {"Messages": [{"From": {"Email": "shop@example.com"}, "To": [{"Email": "ada@example.com"}], "TextPart": "t"}]})
    world.advance(timedelta(seconds=1))
    for _ in range(5):  # retries 1..5 fail; the 6th waits 32 s
        world.advance(timedelta(seconds=20))
    [batch] = first.default.outbox.segment.batches.values()
    assert batch.state == "retrying" and batch.due > world.clock.now()
    first.changes.save()
    world.stop(first)
    world.transport.status = 200
    restarted = world.service().default
    world.advance(timedelta(0))  # a running server's clock ticks at once
    world.advance(timedelta(minutes=1))
    [batch] = restarted.outbox.segment.batches.values()
    assert batch.state == "delivered"


class PoisonTransport(Transport):
    async def post_json(self, url: str, body: Any, headers: dict[str, str], timeout: float) -> Outcome:
        self.posts.append((url, body))
        status = 500 if isinstance(body, dict) and body.get("email") == "poison@example.com" else 200
        return Outcome(status, {"message": f"scripted {status}"})


def test_a_200_answered_before_a_restart_still_keeps_a_webhook_alive(world: World) -> None:
    # README: a URL that answered 200 to other events stays alive when one event gives up.
    world.transport = PoisonTransport()
    first = world.service()
    account = first.default.account
    callback = account.create_callback({"EventType": "sent", "Url": "http://hooks.test/sent"})
    for email in ("poison@example.com", "fine@example.com"):
        send(account, {"Messages": [{"From": {"Email": "shop@example.com"}, "To": [{"Email": email}], "TextPart": "t"}]})
        world.advance(timedelta(minutes=1))
    first.changes.save()
    world.stop(first)
    restarted = world.service().default
    for _ in range(3):
        world.advance(timedelta(hours=9))
    poison, fine = (record.webhook for record in restarted.events.events(event="sent"))
    assert fine.state == "delivered" and poison.state == "failed", (fine.state, poison.state)
    assert "stays alive" in poison.reason
    assert restarted.account.callbacks[callback.id].status == "alive"


def test_a_200_of_a_later_time_restored_after_a_set_back_keeps_nothing_alive(world: World) -> None:
    # The restore-side twin of the live clock set-back case: a 200 "in the future" proves nothing.
    world.transport = PoisonTransport()
    first = world.service()
    account = first.default.account
    callback = account.create_callback({"EventType": "sent", "Url": "http://hooks.test/sent"})
    world.clock.set(datetime(2030, 1, 1, 12, tzinfo=timezone.utc))
    send(account, {"Messages": [{"From": {"Email": "shop@example.com"}, "To": [{"Email": "fine@example.com"}], "TextPart": "t"}]})
    world.advance(timedelta(minutes=1))
    world.clock.set(datetime(2030, 1, 1, tzinfo=timezone.utc))
    first.changes.save()
    world.stop(first)
    restarted = world.service().default
    send(restarted.account, {"Messages": [{"From": {"Email": "shop@example.com"}, "To": [{"Email": "poison@example.com"}], "TextPart": "t"}]})
    world.advance(timedelta(minutes=1))
    for _ in range(3):
        world.advance(timedelta(hours=9))
    poison = next(r.webhook for r in restarted.events.events(event="sent") if r.payload["email"] == "poison@example.com")
    assert poison.state == "failed" and "Status dead" in poison.reason, poison.reason
    assert restarted.account.callbacks[callback.id].status == "dead"
