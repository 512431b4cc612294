"""Persistence and snapshots of the fake Mailjet: one (de)serialization of its whole state, written
row by row to SQLite (`segjet up --data-dir DIR` → `DIR/mailjet.sqlite3`) and whole as JSON
(`GET|PUT /_emulator/snapshot`).

The state is a list of accounts; each account is its own row (counters, App Connections, the
simulation) plus one row per object: contact, list, recipient, property, callback, job, message
(with where its lifecycle stands), email event, campaign, webhook delivery, Segment batch. A JSON
snapshot holds exactly these rows, grouped by account and kind.

Writes: the models mark what they change (`Changes`); `MailjetStore.save` writes the marked rows in
one transaction. The persistence middleware calls it before a response starts, so a mutating request
answered 2xx is in the database first; timers call it after they run. Pending work (jobs, `sent`,
simulated events, webhook and Segment retries) is stored with its due time and armed again when the
state is loaded (`Tenant.resume_timers`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from destination.http_rules import basic_username_problem

from ..common.clock import parse_iso
from ..common.json_body import MAX_DEPTH, fits_depth
from ..common.snapshot import MAX_ID, gc_paused, read_stored_json, snapshot_document, snapshot_state
from ..common.sqlite import DatabaseFileError, open_database, transaction
from .events import STATUS_AFTER, Campaign, EmailEvent, EmailEventError, Life, Simulation, check_control_event
from .models import (
    ACTIONS,
    DATATYPES,
    EVENT_TYPES,
    MAX_STRING_LENGTH,
    NAMESPACES,
    AppConnection,
    Contact,
    ContactsList,
    EventCallback,
    Job,
    ListRecipient,
    MailjetError,
    PropertyDefinition,
    authentication_key_problem,
    check_email,
    job_error_file,
    segment_url_problem,
    write_key_problem,
)
from .outbound import DELIVERED, FAILED, PENDING, QUEUED, RETRYING, SegmentBatch, SegmentForward, WebhookDelivery
from .send import Message, message_href
from .service import MailjetService, Tenant

SNAPSHOT_VERSION = 1
SERVICE = "mailjet"
# The account's MessageIDs are built from its api_key_id (send.py): beyond this they outgrow int64,
# which JSON readers (orjson, JavaScript) no longer read back as integers.
MAX_API_KEY_ID = 2**30
FILE_NAME = "mailjet.sqlite3"
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    api_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    key INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (api_key, kind, key)
) WITHOUT ROWID;
"""
ACCOUNT_KIND = "account"
# Row kind → the account's collection in a snapshot, in load order (later kinds refer to earlier ones).
COLLECTIONS = {
    "property": "properties",
    "contact": "contacts",
    "list": "lists",
    "recipient": "recipients",
    "callback": "callbacks",
    "job": "jobs",
    "message": "messages",
    "event": "events",
    "campaign": "campaigns",
    "webhook": "webhooks",
    "segment_batch": "segment_batches",
}
# The values the APIs give these fields (models.py, send.py, events.py, outbound.py); a snapshot may
# hold no other, since the code that reads them knows no other (a job of another Status never runs,
# a property of another Datatype takes no value).
JOB_STATUSES = ("In Progress", "Completed", "Error")  # Account.run_job
CALLBACK_VERSIONS = (1, 2)  # Account._check_version
CALLBACK_STATUSES = ("alive", "dead")  # Account._check_status
RECIPIENT_TYPES = ("To", "Cc", "Bcc")  # send._accept
MESSAGE_STATUSES = ("queued", "sandbox", *STATUS_AFTER.values())  # send.new_message, then EmailEvents._emit
WEBHOOK_STATES = (PENDING, RETRYING, DELIVERED, FAILED)
SEGMENT_BATCH_STATES = (QUEUED, RETRYING, DELIVERED, FAILED)


class StateError(ValueError):
    """A snapshot or stored state that cannot be loaded; the message says where and why."""


# ---------------------------------------------------------------- dataclass fields ↔ JSON


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()  # full precision, so a round trip is exact
    if isinstance(value, set):
        return sorted(value)
    return value


def dump_fields(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {name: _encode(getattr(obj, name)) for name in _field_names(type(obj)) if name not in skip}


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    # dataclasses.fields() is slow enough to show in every save (one per changed row).
    return tuple(f.name for f in dataclasses.fields(cls))


_SCALARS: dict[str, Callable[[Any], bool]] = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "dict": lambda v: isinstance(v, dict),
    "list": lambda v: isinstance(v, list),
    "set": lambda v: isinstance(v, list),
    "datetime": lambda v: isinstance(v, str),
    "Any": lambda v: True,
}


@functools.cache
def _codec(annotation: str) -> tuple[bool, str, str, Callable[[Any], bool] | None]:
    """A field annotation taken apart once (a restore calls `_decode` for every field of every row):
    whether None is allowed, the annotation without " | None", its base name, and that base's check."""
    optional = annotation.endswith(" | None")
    if optional:
        annotation = annotation[: -len(" | None")]
    base = annotation.split("[", 1)[0]
    return optional, annotation, base, _SCALARS.get(base)


# Bases whose values `_decode` returns as they are once their check passes.
_PLAIN = frozenset({"int", "float", "str", "bool", "Any"})


def _decode(value: Any, annotation: str, where: str) -> Any:
    """Check `value` against a field annotation ("datetime | None", "dict[str, str]", ...) and convert it."""
    optional, annotation, base, check = _codec(annotation)
    if optional and value is None:
        return None
    if check is None:
        raise TypeError(f"no codec for {annotation}")  # a model field this module does not know yet
    if not check(value):
        raise StateError(f"{where}: expected {annotation}, got {json.dumps(value)[:80]}")
    if base in _PLAIN:
        return value
    if base == "datetime":
        try:
            return parse_iso(value)
        except ValueError as exc:
            raise StateError(f"{where}: {exc}") from None
    if base in ("list", "dict") and not fits_depth(value):
        # Any JSON a client sent that is kept as is (a job's contacts): an answer showing it must render.
        raise StateError(f"{where}: nested more than {MAX_DEPTH} levels deep")
    if annotation == "dict[str, str]" and not all(isinstance(v, str) for v in value.values()):
        raise StateError(f"{where}: expected string values")
    if annotation in ("list[int]", "set[int]") and not all(_SCALARS["int"](v) for v in value):
        raise StateError(f"{where}: expected a list of integers")
    if base == "set":
        return set(value)
    return value


@functools.cache
def _init_fields(cls: type) -> tuple[tuple[tuple[str, str, bool], ...], frozenset[str]]:
    """`cls`'s init fields as (name, annotation, required), and their names: dataclasses.fields()
    and str(f.type) cost more than the checks in a restore (a call per row)."""
    fields = tuple(
        (f.name, str(f.type), f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        for f in dataclasses.fields(cls)
        if f.init
    )
    return fields, frozenset(name for name, _, _ in fields)


def load_fields(cls: type, data: Any, where: str, **given: Any) -> Any:
    """An instance of dataclass `cls` from `data`, every field type-checked; `given` fields are not read."""
    if not isinstance(data, dict):
        raise StateError(f"{where}: expected an object")
    fields, names = _init_fields(cls)
    unknown = sorted(set(data) - (names - given.keys() if given else names))
    if unknown:
        raise StateError(f"{where}: unknown field(s) {', '.join(unknown)}")
    values = dict(given)
    for name, annotation, required in fields:
        if name in given:
            continue
        if name in data:
            values[name] = _decode(data[name], annotation, f"{where}.{name}")
        elif required:
            raise StateError(f"{where}: missing field {name}")
    return cls(**values)


def _one_of(value: Any, allowed: tuple[Any, ...], where: str) -> None:
    """Refuse a value (already type-checked) that the APIs never give this field."""
    if value not in allowed:
        raise StateError(f"{where}: must be one of {', '.join(map(str, allowed))}, got {json.dumps(value)[:80]}")


def _unique(keys: list[Any], where: str, what: Callable[[Any], str]) -> None:
    """Refuse two objects under one key the API keeps unique: lookups by that key reached only one of them."""
    seen: set[Any] = set()
    for key in keys:
        if key in seen:
            raise StateError(f"{where}: two {what(key)}")
        seen.add(key)


def _not_negative(count: int, where: str) -> None:
    """Refuse a count below 0: the APIs only ever add to one."""
    if count < 0:
        raise StateError(f"{where}: must be 0 or more, got {count}")


def _given_id(object_id: int, next_id: int, what: str, where: str) -> None:
    """Refuse a reference to an id the account never handed out. One it did may name an object
    deleted since (a job's list, a delivery's webhook), but the next object created takes an id
    never handed out, and the reference with it."""
    if not 1 <= object_id < next_id:
        raise StateError(f"{where}: {object_id} is not the id of {what} this account created")


def _require(data: dict[str, Any], name: str, check: str, where: str) -> Any:
    if name not in data:
        raise StateError(f"{where}: missing field {name}")
    return _decode(data[name], check, f"{where}.{name}")


# ---------------------------------------------------------------- one account ↔ rows


def account_row(tenant: Tenant) -> dict[str, Any]:
    account, events, outbox = tenant.account, tenant.events, tenant.outbox
    simulation = events.simulation.to_json()
    del simulation["active"]
    return {
        "api_key": account.api_key,
        "secret_key": account.secret_key,
        "api_key_id": account.api_key_id,
        "next_ids": dict(account.next_ids),
        "app_connection": dump_fields(account.app_connection),
        "simulation": simulation,
        "next_event_id": events.next_record_id,
        "next_campaign_id": events.next_campaign_id,
        "next_webhook_id": outbox.webhooks.next_id,
        "next_segment_batch_id": outbox.segment.next_batch_id,
    }


def dump_row(tenant: Tenant, kind: str, key: int) -> dict[str, Any] | None:
    """The stored form of one object, or None when it no longer exists (the row is deleted)."""
    account, events = tenant.account, tenant.events
    if kind == "contact":
        return _dump_optional(account.contacts.get(key))
    if kind == "list":
        return _dump_optional(account.lists.get(key))
    if kind == "recipient":
        return _dump_optional(account.recipients.get(key))
    if kind == "property":
        return _dump_optional(account.properties.get(key))
    if kind == "callback":
        return _dump_optional(account.callbacks.get(key))
    if kind == "job":
        return _dump_optional(account.jobs.get(key))
    if kind == "campaign":
        return _dump_optional(events.campaigns.get(key))
    if kind == "message":
        return _dump_message(tenant, account.messages[key]) if key < len(account.messages) else None
    if kind == "event":
        return _dump_event(events.records[key - 1]) if 0 < key <= len(events.records) else None
    if kind == "webhook":
        delivery = tenant.outbox.webhooks.deliveries.get(key)
        if delivery is None:
            return None
        return {**dump_fields(delivery, skip=("events", "generation")), "events": [record.id for record in delivery.events]}
    if kind == "segment_batch":
        batch = tenant.outbox.segment.batches.get(key)
        if batch is None:
            return None
        return {**dump_fields(batch, skip=("forwards", "generation")), "events": [f.record_id for f in batch.forwards]}
    raise ValueError(f"unknown row kind {kind!r}")


def _dump_optional(obj: Any) -> dict[str, Any] | None:
    return dump_fields(obj) if obj is not None else None


def _dump_message(tenant: Tenant, message: Message) -> dict[str, Any]:
    life = tenant.events.life_of(message)
    life_json = None
    if life is not None:
        life_json = {
            **dump_fields(life, skip=("message", "position", "plan", "sent_timer")),
            "plan": [[_encode(at), event, fields] for at, event, fields in life.plan],
        }
    return {**dump_fields(message), "life": life_json}


def _dump_event(record: EmailEvent) -> dict[str, Any]:
    segment = record.segment
    return {
        "id": record.id,
        "event": record.event,
        "message_id": record.message.message_id,
        "at": _encode(record.at),
        "payload": record.payload,
        "segment": dump_fields(segment, skip=("batch",)) if segment is not None else None,
    }


def dump_account(tenant: Tenant) -> dict[str, Any]:
    """The whole account as a snapshot holds it: its row and every object row by collection."""
    account, events, outbox = tenant.account, tenant.events, tenant.outbox
    keys: dict[str, list[int]] = {
        "property": list(account.properties),
        "contact": list(account.contacts),
        "list": list(account.lists),
        "recipient": list(account.recipients),
        "callback": list(account.callbacks),
        "job": list(account.jobs),
        "message": list(range(len(account.messages))),
        "event": [record.id for record in events.records],
        "campaign": list(events.campaigns),
        "webhook": list(outbox.webhooks.deliveries),
        "segment_batch": list(outbox.segment.batches),
    }
    dumped: dict[str, Any] = {"account": account_row(tenant)}
    for kind, collection in COLLECTIONS.items():
        dumped[collection] = [dump_row(tenant, kind, key) for key in sorted(keys[kind])]
    return dumped


def dump_state(service: MailjetService) -> dict[str, Any]:
    tenants = sorted(service.tenants.values(), key=lambda tenant: tenant.account.api_key_id)
    return {"accounts": [dump_account(tenant) for tenant in tenants]}


def load_account(service: MailjetService, data: Any, where: str) -> Tenant:
    """A tenant from its snapshot form, fully checked; its timers are not armed (see `install`)."""
    if not isinstance(data, dict):
        raise StateError(f"{where}: expected an object")
    unknown = sorted(set(data) - {"account", *COLLECTIONS.values()})
    if unknown:
        raise StateError(f"{where}: unknown field(s) {', '.join(unknown)}")
    row = data.get("account")
    if not isinstance(row, dict):
        raise StateError(f"{where}.account: expected an object")
    at = f"{where}.account"
    known = {"api_key", "secret_key", "api_key_id", "next_ids", "app_connection", "simulation", "next_event_id",
             "next_campaign_id", "next_webhook_id", "next_segment_batch_id"}
    if set(row) != known:
        raise StateError(f"{at}: fields must be {', '.join(sorted(known))}")
    api_key = _require(row, "api_key", "str", at)
    secret_key = _require(row, "secret_key", "str", at)
    # As POST accounts refuses them (MailjetService.create_account): no client could authenticate.
    for name, key in (("api_key", api_key), ("secret_key", secret_key)):
        if not key:
            raise StateError(f"{at}.{name}: must be a non-empty string")
    if (problem := basic_username_problem(api_key)) is not None:
        raise StateError(f"{at}.api_key: {problem}")
    connection: AppConnection = load_fields(AppConnection, row["app_connection"], f"{at}.app_connection")
    api_key_id = _require(row, "api_key_id", "int", at)
    if not 1 <= api_key_id <= MAX_API_KEY_ID:
        raise StateError(f"{at}.api_key_id: must be between 1 and {MAX_API_KEY_ID}, got {api_key_id}")
    tenant = service.new_tenant(api_key, secret_key, api_key_id, connection.authentication_key)
    account, events, outbox = tenant.account, tenant.events, tenant.outbox
    next_ids = _require(row, "next_ids", "dict", at)
    if set(next_ids) != set(account.next_ids) or not all(_SCALARS["int"](v) for v in next_ids.values()):
        raise StateError(f"{at}.next_ids: expected integers for {', '.join(sorted(account.next_ids))}")
    for kind, value in next_ids.items():
        _check_counter(value, f"{at}.next_ids.{kind}")
    try:
        simulation = Simulation().merged(_require(row, "simulation", "dict", at))
    except ValueError as exc:
        raise StateError(f"{at}.simulation: {exc}") from None

    def rows(collection: str) -> list[Any]:
        found = data.get(collection, [])
        if not isinstance(found, list):
            raise StateError(f"{where}.{collection}: expected a list")
        return found

    def build(cls: type, collection: str) -> list[Any]:
        built = [load_fields(cls, item, f"{where}.{collection}[{i}]") for i, item in enumerate(rows(collection))]
        ids = [obj.id for obj in built]
        if len(set(ids)) != len(ids):
            raise StateError(f"{where}.{collection}: duplicate id")
        return built

    properties = build(PropertyDefinition, "properties")
    for index, definition in enumerate(properties):
        # coerce_property knows only these: a value for another Datatype was always refused.
        _one_of(definition.datatype, DATATYPES, f"{where}.properties[{index}].datatype")
        _one_of(definition.namespace, NAMESPACES, f"{where}.properties[{index}].namespace")
    # Names are matched case-insensitively (find_property): values reached the first of two.
    _unique([p.name.lower() for p in properties], f"{where}.properties", lambda name: f"properties named {name!r} in any case")
    contacts = build(Contact, "contacts")
    names = {p.name for p in properties}
    for index, contact in enumerate(contacts):
        place = f"{where}.contacts[{index}]"
        try:
            stored = check_email(contact.email)  # the address as REST stores it (Send takes no other)
        except MailjetError:
            stored = None
        if stored != contact.email:
            raise StateError(f"{place}.email: {json.dumps(contact.email)[:80]} is not an address the API stores")
        _not_negative(contact.delivered_count, f"{place}.delivered_count")
        for name, value in contact.properties.items():
            # Values are written under the defined name (coerce_properties) and renamed and deleted
            # with it: one under another name was never read.
            if name not in names:
                raise StateError(f"{place}.properties: {name!r} is not the name of a property of this account")
            # A value stays when its property's Datatype changes (update_property): what any Datatype
            # stores (coerce_property) is text of at most MAX_STRING_LENGTH characters.
            if len(value) > MAX_STRING_LENGTH:
                raise StateError(f"{place}.properties.{name}: longer than {MAX_STRING_LENGTH} characters, which no Datatype stores")
    lists = build(ContactsList, "lists")
    _unique([l.name for l in lists], f"{where}.lists", lambda name: f"lists named {name!r}")
    recipients = build(ListRecipient, "recipients")
    # One subscription per contact and list (indexed by the pair): deleting the list of a second one
    # failed with a KeyError.
    _unique([(r.contact_id, r.list_id) for r in recipients], f"{where}.recipients",
            lambda pair: f"recipients of contact {pair[0]} on list {pair[1]}")
    callbacks = build(EventCallback, "callbacks")
    for index, callback in enumerate(callbacks):
        place = f"{where}.callbacks[{index}]"
        _one_of(callback.event_type, tuple(EVENT_TYPES), f"{place}.event_type")  # no event of another type reaches it
        _one_of(callback.version, CALLBACK_VERSIONS, f"{place}.version")
        _one_of(callback.status, CALLBACK_STATUSES, f"{place}.status")  # callbacks_for: alive, else nothing
    # EventType|IsBackup is a webhook's key (/eventcallbackurl/open|false, callbacks_for).
    _unique([(c.event_type, c.is_backup) for c in callbacks], f"{where}.callbacks",
            lambda key: f"webhooks for {key[0]}|{str(key[1]).lower()}")
    jobs = build(Job, "jobs")
    for index, job in enumerate(jobs):
        place = f"{where}.jobs[{index}]"
        # Only an In Progress job runs (resume_timers, run_job); it ends Completed or Error.
        _one_of(job.status, JOB_STATUSES, f"{place}.status")
        # run_job reads each item's ListID and Action (as _check_contacts_lists made them): without them
        # every contact of the job failed.
        if not all(isinstance(item, dict) and set(item) == {"ListID", "Action"} and _SCALARS["int"](item["ListID"])
                   and item["Action"] in ACTIONS for item in job.contacts_lists):
            raise StateError(f'{place}.contacts_lists: expected [{{"ListID": id, "Action": {"|".join(ACTIONS)}}}, ...]')
        for item in job.contacts_lists:
            _given_id(item["ListID"], next_ids["list"], "a list", f"{place}.contacts_lists")
        if job.list_id is not None:
            _given_id(job.list_id, next_ids["list"], "a list", f"{place}.list_id")
        _not_negative(job.count, f"{place}.count")
        # A job shows its first error's text (Job.to_json).
        if not all(isinstance(error, dict) and "Error" in error for error in job.errors):
            raise StateError(f"{place}.errors: expected objects with an Error")
        if job.error_file:
            # The URLs this server handed out name this run's port (--mailjet-port 0 changes it), not
            # the one of the run that stored them, as App Connections' segmentUrl follows the bundle.
            job.error_file = job_error_file(account.base_url, job.id)
    contact_ids, list_ids = {c.id for c in contacts}, {l.id for l in lists}
    if connection.list_id and connection.list_id not in list_ids:
        # PUT app-connection takes only a list of the account, and deleting that list sets 0.
        raise StateError(f"{at}.app_connection.list_id: {connection.list_id} is not a contact list of this account")
    emails = [c.email.lower() for c in contacts]
    if len(set(emails)) != len(emails):
        raise StateError(f"{where}.contacts: two contacts with one email")
    for recipient in recipients:
        if recipient.contact_id not in contact_ids or recipient.list_id not in list_ids:
            raise StateError(f"{where}.recipients: recipient {recipient.id} refers to a missing contact or list")
    for kind, objects in (("property", properties), ("contact", contacts), ("list", lists), ("recipient", recipients),
                          ("callback", callbacks), ("job", jobs)):
        if objects and max(obj.id for obj in objects) >= next_ids[kind]:
            raise StateError(f"{at}.next_ids.{kind}: must be above every {kind} id")

    messages, lives = [], []
    for position, item in enumerate(rows("messages")):
        place = f"{where}.messages[{position}]"
        if not isinstance(item, dict) or "life" not in item:
            raise StateError(f"{place}: expected an object with a life")
        message: Message = load_fields(Message, {k: v for k, v in item.items() if k != "life"}, place)
        message.message_href = message_href(account.base_url, message.message_id)  # this run's port, as a job's ErrorFile
        # The bounce rule reads the status word (ENGAGED_STATUSES).
        _one_of(message.status, MESSAGE_STATUSES, f"{place}.status")
        _one_of(message.recipient_type, RECIPIENT_TYPES, f"{place}.recipient_type")
        for name in ("sender", "recipient"):
            if set(getattr(message, name)) != {"Email", "Name"}:
                raise StateError(f'{place}.{name}: expected {{"Email": ..., "Name": ...}}')
        # A delivered message's events change its contact (counts, exclusion, unsubscription).
        if (message.contact_id or item["life"] is not None) and message.contact_id not in contact_ids:
            raise StateError(f"{place}: contact {message.contact_id} is missing")
        if message.sandbox and item["life"] is not None:
            # It would be exported without its life (EmailEvents.life_of), and its events with no message.
            raise StateError(f"{place}: a sandbox message is never delivered: its life must be null")
        messages.append(message)
        if item["life"] is not None:
            lives.append(_load_life(item["life"], message, position, f"{place}.life"))
    # Lives are kept by MessageID (EmailEvents._lives): of two, one was never armed again nor found.
    _unique([m.message_id for m in messages if not m.sandbox], f"{where}.messages",
            lambda message_id: f"messages with MessageID {message_id}")
    by_message_id = {life.message.message_id: life.message for life in lives}

    records: list[EmailEvent] = []
    for index, item in enumerate(rows("events")):
        place = f"{where}.events[{index}]"
        if not isinstance(item, dict) or set(item) != {"id", "event", "message_id", "at", "payload", "segment"}:
            raise StateError(f"{place}: fields must be at, event, id, message_id, payload, segment")
        if _require(item, "id", "int", place) != index + 1:
            raise StateError(f"{place}: events must be numbered 1, 2, 3... in order")
        message = by_message_id.get(_require(item, "message_id", "int", place))
        if message is None:
            raise StateError(f"{place}: no delivered message {item['message_id']}")
        event = _require(item, "event", "str", place)
        _one_of(event, tuple(STATUS_AFTER), f"{place}.event")
        record = EmailEvent(index + 1, event, message, _require(item, "at", "datetime", place), _require(item, "payload", "dict", place))
        if item["segment"] is not None:
            record.segment = load_fields(SegmentForward, item["segment"], f"{place}.segment", batch=None)
            call = record.segment.call
            if call is not None:  # forwarded: it names its event, and its record shows the messageId
                if record.segment.record_id != record.id:
                    raise StateError(f"{place}.segment.record_id must be {record.id}, the event's id")
                if not isinstance(call.get("messageId"), str):
                    raise StateError(f"{place}.segment.call: expected a track call with a string messageId")
        records.append(record)
    campaigns = build(Campaign, "campaigns")
    sent_ids = {m.message_id for m in messages if not m.sandbox}
    for index, campaign in enumerate(campaigns):
        place = f"{where}.campaigns[{index}]"
        if campaign.list_id:  # 0: the group of one CustomCampaign
            _given_id(campaign.list_id, next_ids["list"], "a list", f"{place}.list_id")
        # Messages are never deleted; sandbox ones never join a campaign.
        unsent = next((message_id for message_id in campaign.message_ids if message_id not in sent_ids), None)
        if unsent is not None:
            raise StateError(f"{place}.message_ids: {unsent} is not a message this account sent")

    deliveries = []
    for index, item in enumerate(rows("webhooks")):
        place = f"{where}.webhooks[{index}]"
        event_ids = _require(item, "events", "list[int]", place) if isinstance(item, dict) else None
        linked = _records(records, event_ids, place)
        delivery = load_fields(WebhookDelivery, {k: v for k, v in item.items() if k != "events"}, place, events=linked, generation=0)
        # Only pending and retrying deliveries are attempted (Webhooks.restore).
        _one_of(delivery.state, WEBHOOK_STATES, f"{place}.state")
        _one_of(delivery.version, CALLBACK_VERSIONS, f"{place}.version")
        # Webhooks.route creates a delivery for a webhook and adds each webhook it routes there.
        if not delivery.callback_ids:
            raise StateError(f"{place}.callback_ids: expected the webhooks it was routed to")
        for callback_id in delivery.callback_ids:
            _given_id(callback_id, next_ids["callback"], "a webhook", f"{place}.callback_ids")
        if delivery.version == 1 and len(linked) != 1:
            # Its POST is the first event's payload (WebhookDelivery.body): the others were never sent.
            raise StateError(f"{place}: a Version 1 delivery carries one event, got {len(linked)}")
        for record in linked:
            record.webhook = delivery
        deliveries.append(delivery)
    batches = []
    for index, item in enumerate(rows("segment_batches")):
        place = f"{where}.segment_batches[{index}]"
        event_ids = _require(item, "events", "list[int]", place) if isinstance(item, dict) else None
        linked = _records(records, event_ids, place)
        # Its POST carries each event's call: a null one made Segment refuse the whole batch.
        if any(record.segment is None or record.segment.call is None for record in linked):
            raise StateError(f"{place}: an event of the batch was not forwarded")
        forwards = [record.segment for record in linked]
        batch = load_fields(SegmentBatch, {k: v for k, v in item.items() if k != "events"}, place, forwards=forwards, generation=0)
        _one_of(batch.state, SEGMENT_BATCH_STATES, f"{place}.state")
        _not_negative(batch.retries, f"{place}.retries")
        waiting = next((b for b in batches if b.state in (QUEUED, RETRYING)), None)
        if waiting is not None and batch.state in (QUEUED, RETRYING):
            # The forwarder sends one batch at a time (SegmentForwarder.restore keeps one): the other was never sent.
            raise StateError(f"{place}: a second batch waiting to be sent (batch {waiting.id} waits)")
        for forward in forwards:
            forward.batch = batch
        batches.append(batch)
    queued = [r.segment for r in records if r.segment is not None and r.segment.call is not None and r.segment.batch is None]

    # Events are stored by their number, which is their place in the list: the next one must be the next place.
    next_event_id = _require(row, "next_event_id", "int", at)
    if next_event_id != len(records) + 1:
        raise StateError(f"{at}.next_event_id: must be {len(records) + 1}, one above the last event's id")
    # An id handed out twice replaced the object that had it.
    next_campaign_id = _next_id(row, "next_campaign_id", at, campaigns)
    next_webhook_id = _next_id(row, "next_webhook_id", at, deliveries)
    next_segment_batch_id = _next_id(row, "next_segment_batch_id", at, batches)

    account.restore(contacts=contacts, lists=lists, recipients=recipients, properties=properties, callbacks=callbacks,
                    jobs=jobs, messages=messages, next_ids=next_ids, app_connection=connection)
    events.restore(records, lives, campaigns, simulation, next_event_id, next_campaign_id)
    outbox.webhooks.restore(deliveries, next_webhook_id)
    outbox.segment.restore(batches, queued, next_segment_batch_id)
    return tenant


def _check_counter(value: int, where: str) -> None:
    if not 1 <= value <= MAX_ID:
        raise StateError(f"{where}: must be between 1 and {MAX_ID}, got {value}")


def _next_id(row: dict[str, Any], name: str, where: str, objects: list[Any]) -> int:
    """The counter `name` of the account row, checked to hand out ids that are new and storable."""
    value = _require(row, name, "int", where)
    _check_counter(value, f"{where}.{name}")
    highest = max((obj.id for obj in objects), default=0)
    if highest >= value:
        raise StateError(f"{where}.{name}: must be above every id it gave ({highest})")
    return value


def _records(records: list[EmailEvent], event_ids: list[int] | None, where: str) -> list[EmailEvent]:
    if event_ids is None:
        raise StateError(f"{where}: expected an object")
    if not event_ids or not all(0 < event_id <= len(records) for event_id in event_ids):
        raise StateError(f"{where}.events: unknown event id")
    return [records[event_id - 1] for event_id in event_ids]


def _load_life(data: Any, message: Message, position: int, where: str) -> Life:
    if not isinstance(data, dict):
        raise StateError(f"{where}: expected an object")
    plan = []
    for index, step in enumerate(_require(data, "plan", "list", where)):
        if not (isinstance(step, list) and len(step) == 3 and isinstance(step[1], str) and isinstance(step[2], dict)):
            raise StateError(f"{where}.plan[{index}]: expected [time, event, fields]")
        try:
            # A step fires through the rules of a control event: what they could not take would fail in its timer.
            check_control_event(step[1], step[2])
        except EmailEventError as exc:
            raise StateError(f"{where}.plan[{index}]: {exc.message}") from None
        plan.append((_decode(step[0], "datetime", f"{where}.plan[{index}]"), step[1], step[2]))
    # sent_timer is armed by `resume_timers`, never stored.
    fields = {k: v for k, v in data.items() if k != "plan"}
    return load_fields(Life, fields, where, message=message, position=position, plan=plan, sent_timer=None)


def load_state(service: MailjetService, state: Any) -> dict[str, Tenant]:
    """Every account of a state, checked as a whole before anything is replaced."""
    if not isinstance(state, dict) or set(state) != {"accounts"} or not isinstance(state["accounts"], list):
        raise StateError('state: expected {"accounts": [...]}')
    tenants: dict[str, Tenant] = {}
    for index, data in enumerate(state["accounts"]):
        tenant = load_account(service, data, f"state.accounts[{index}]")
        if tenant.account.api_key in tenants:
            raise StateError(f"state.accounts[{index}]: a second account with API key {tenant.account.api_key!r}")
        tenants[tenant.account.api_key] = tenant
    key_ids = [tenant.account.api_key_id for tenant in tenants.values()]
    if len(set(key_ids)) != len(key_ids):
        raise StateError("state.accounts: two accounts with one api_key_id")
    # It says which account the destination writes to (MailjetService.tenant_with_authentication_key).
    auth_keys = [tenant.account.app_connection.authentication_key for tenant in tenants.values()]
    if len(set(auth_keys)) != len(auth_keys):
        raise StateError("state.accounts: two accounts with one app_connection.authentication_key")
    return tenants


def check_importable(tenants: dict[str, Tenant]) -> None:
    """StateError naming what a snapshot holds that PUT app-connections/segment refuses: every call
    signed or forwarded with it failed. A snapshot import's only: a database an older segjet wrote
    may hold what later rules refuse (a key with ':', a segmentUrl with a query), and it still loads."""
    for index, tenant in enumerate(tenants.values()):
        connection = tenant.account.app_connection
        problems = {
            "authentication_key": authentication_key_problem(connection.authentication_key),
            "write_key": write_key_problem(connection.write_key),
            "segment_url": segment_url_problem(connection.segment_url),
        }
        for name, problem in problems.items():
            if problem is not None:
                raise StateError(f"state.accounts[{index}].account.app_connection.{name}: {problem}")


# ---------------------------------------------------------------- snapshots


def export_snapshot(service: MailjetService) -> dict[str, Any]:
    return snapshot_document(SERVICE, SNAPSHOT_VERSION, service.clock.now(), dump_state(service))


def read_snapshot(service: MailjetService, snapshot: Any) -> dict[str, Tenant]:
    """The accounts of a snapshot document; StateError for another format, service or version, or bad state."""
    tenants = load_state(service, snapshot_state(snapshot, SERVICE, SNAPSHOT_VERSION, StateError))
    check_importable(tenants)
    return tenants


@gc_paused()
def import_snapshot(service: MailjetService, snapshot: Any, store: MailjetStore | None) -> None:
    """Replace the whole state by the snapshot's, all or nothing (checked first, then stored, then swapped)."""
    tenants = read_snapshot(service, snapshot)
    service.changes.rows.clear()  # building the tenants marked their rows; the store is rewritten whole
    if store is not None:
        store.replace([dump_account(tenant) for tenant in tenants.values()])
    service.install(tenants)
    if store is not None:
        store.save(service)  # a default account added by `install`


# ---------------------------------------------------------------- SQLite


def _sort_key(api_key_id: Any) -> int:
    # Accounts load in api_key_id order; a damaged one is refused by load_account, not by sorted().
    return api_key_id if isinstance(api_key_id, int) else 0


class MailjetStore:
    """`DIR/mailjet.sqlite3`: one row per object, written by `save` in one transaction per request or timer."""

    def __init__(self, data_dir: Path | str) -> None:
        self.path = Path(data_dir) / FILE_NAME
        self.connection = open_database(self.path, SCHEMA, SCHEMA_VERSION)

    @gc_paused()
    def load_into(self, service: MailjetService) -> None:
        """Restore the stored accounts (if any), arm their timers, and start saving changes."""
        changes = service.changes
        try:
            accounts = self._read_accounts()
            tenants = load_state(service, {"accounts": accounts}) if accounts else None
        except sqlite3.DatabaseError as exc:  # damaged pages past the header: "database disk image is malformed"
            raise DatabaseFileError(f"{self.path}: {exc}; use another --data-dir or delete the file") from None
        except StateError as exc:
            raise StateError(f"{self.path}: {exc}") from None
        if tenants is not None:
            changes.enabled = True  # from here on, so that a default account added by `install` is marked
            service.install(tenants)
        else:
            # A new data dir starts with the fresh configured account.
            self.replace([dump_account(tenant) for tenant in service.tenants.values()])
            changes.enabled = True
        changes.save = lambda: self.save(service)
        self.save(service)

    def _read_accounts(self) -> list[dict[str, Any]]:
        accounts: dict[str, dict[str, Any]] = {}
        cursor = self.connection.execute("SELECT api_key, kind, key, data FROM rows ORDER BY api_key, kind, key")
        for api_key, kind, key, data in cursor:
            where = f"the {kind} row {key} of account {api_key}"
            if kind != ACCOUNT_KIND and kind not in COLLECTIONS:
                raise StateError(f"{where}: unknown kind")
            try:
                value = read_stored_json(data)
            except (TypeError, ValueError) as exc:  # a row damaged by hand: refused, not a crash at start
                raise StateError(f"{where}: not JSON ({exc})") from None
            account = accounts.setdefault(api_key, {collection: [] for collection in COLLECTIONS.values()})
            if kind == ACCOUNT_KIND:
                if not isinstance(value, dict):
                    raise StateError(f"{where}: expected an object")
                account["account"] = value
            else:
                account[COLLECTIONS[kind]].append(value)
        return sorted(accounts.values(), key=lambda account: _sort_key(account.get("account", {}).get("api_key_id")))

    def save(self, service: MailjetService) -> None:
        changes = service.changes
        if not changes.rows and not changes.wiped:
            return
        rows, wiped = changes.rows, changes.wiped
        changes.rows, changes.wiped = set(), set()
        try:
            with transaction(self.connection) as db:
                for api_key in wiped:
                    db.execute("DELETE FROM rows WHERE api_key = ?", (api_key,))
                touched: set[str] = set()
                for api_key, kind, key in rows:
                    tenant = service.tenant(api_key)
                    if tenant is None:
                        continue  # a late change of an account replaced since
                    touched.add(api_key)
                    if kind == ACCOUNT_KIND:
                        continue
                    data = dump_row(tenant, kind, key)
                    if data is None:
                        db.execute("DELETE FROM rows WHERE api_key = ? AND kind = ? AND key = ?", (api_key, kind, key))
                    else:
                        self._upsert(db, api_key, kind, key, data)
                for api_key in touched:
                    self._upsert(db, api_key, ACCOUNT_KIND, 0, account_row(service.tenants[api_key]))
        except BaseException:
            # Not written: keep the marks so the next save tries again.
            changes.rows |= rows
            changes.wiped |= wiped
            raise

    def replace(self, accounts: list[dict[str, Any]]) -> None:
        """Rewrite the whole database with these accounts (snapshot form), in one transaction."""
        with transaction(self.connection) as db:
            db.execute("DELETE FROM rows")
            for account in accounts:
                api_key = account["account"]["api_key"]
                self._upsert(db, api_key, ACCOUNT_KIND, 0, account["account"])
                for kind, collection in COLLECTIONS.items():
                    for position, data in enumerate(account[collection]):
                        key = position if kind == "message" else data["id"]
                        self._upsert(db, api_key, kind, key, data)

    @staticmethod
    def _upsert(db: sqlite3.Connection, api_key: str, kind: str, key: int, data: dict[str, Any]) -> None:
        db.execute(
            "INSERT INTO rows (api_key, kind, key, data) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (api_key, kind, key) DO UPDATE SET data = excluded.data",
            (api_key, kind, key, json.dumps(data, separators=(",", ":"))),
        )

    def close(self) -> None:
        self.connection.close()
