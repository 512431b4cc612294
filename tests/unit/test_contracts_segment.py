"""The Segment contracts (contracts/schemas/segment.*.json) against passing and failing payloads.

Passing payloads include the verbatim examples of the Segment docs (reference/segment.md §1.9,
§2.1, §4.3, §6), the Email spec example adapted to the modern wire format (§3), and messages as
analytics-python builds them. Failing payloads assert every violation as (JSON path, rule).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from contracts import names, schema, validate

# ---------------------------------------------------------------------------------------------
# helpers


def changed(payload: dict, **changes: Any) -> dict:
    """A deep copy of `payload` with dotted paths (given with `__` for `.`) set to new values."""
    result = copy.deepcopy(payload)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = result
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = value
    return result


def without(payload: dict, *dotted_paths: str) -> dict:
    """A deep copy of `payload` without the given dotted paths (`context.traits.email`)."""
    result = copy.deepcopy(payload)
    for dotted in dotted_paths:
        *parents, last = dotted.split(".")
        target = result
        for key in parents:
            target = target[key]
        del target[last]
    return result


# ---------------------------------------------------------------------------------------------
# verbatim examples of the Segment docs

DOC_IDENTIFY = {  # §1.9, http-api/index.md
    "userId": "019mr8mf4r",
    "traits": {"email": "pgibbons@example.com", "name": "Peter Gibbons", "industry": "Technology"},
    "context": {"ip": "24.5.68.47"},
    "timestamp": "2012-12-02T00:30:08.276Z",
    "writeKey": "YOUR_WRITE_KEY",
}
DOC_TRACK = {  # §1.9
    "userId": "019mr8mf4r",
    "event": "Item Purchased",
    "properties": {"name": "Leap to Conclusions Mat", "revenue": 14.99},
    "context": {"ip": "24.5.68.47"},
    "timestamp": "2012-12-02T00:30:12.984Z",
    "writeKey": "YOUR_WRITE_KEY",
}
DOC_ALIAS = {  # §1.9
    "previousId": "39239-239239-239239-23923",
    "userId": "019mr8mf4r",
    "timestamp": "2012-12-02T00:31:29.738Z",
    "writeKey": "YOUR_WRITE_KEY",
}
DOC_BATCH = {  # §1.9
    "batch": [
        {
            "type": "identify",
            "userId": "019mr8mf4r",
            "traits": {"email": "jake@yahoo.com", "name": "Jake Peterson", "age": 26},
            "timestamp": "2012-12-02T00:30:08.276Z",
        },
        {
            "type": "track",
            "userId": "019mr8mf4r",
            "event": "Song Played",
            "properties": {"name": "Fallin for You", "artist": "Dierks Bentley"},
            "timestamp": "2012-12-02T00:30:12.984Z",
        },
    ],
    "writeKey": "YOUR_WRITE_KEY",
    "context": {"device": {"type": "phone", "name": "Apple iPhone 6"}},
}
DOC_COMMON_TRACK = {  # §2.1, spec/common.md (ids abridged by the reference, as in the docs)
    "anonymousId": "507f191e810c19729de860ea",
    "context": {
        "active": True,
        "app": {"name": "InitechGlobal", "version": "545", "build": "3.0.1.545", "namespace": "com.production.segment"},
        "campaign": {
            "name": "TPS Innovation Newsletter",
            "source": "Newsletter",
            "medium": "email",
            "term": "tps reports",
            "content": "image link",
        },
        "device": {
            "id": "B5372DB0-C21E-11E4-8DFC-AA07A5B093DB",
            "advertisingId": "7A3CBEA0-BDF5-11E4-8DFC-AA07A5B093DB",
            "adTrackingEnabled": True,
            "manufacturer": "Apple",
            "model": "iPhone7,2",
            "name": "maguro",
            "type": "ios",
            "token": "ff15bc0c20c4aa6cd50854ff165fd265c838e5405bfeb9571066395b8c9da449",
        },
        "ip": "8.8.8.8",
        "library": {"name": "analytics.js", "version": "2.11.1"},
        "locale": "en-US",
        "network": {"bluetooth": False, "carrier": "T-Mobile US", "cellular": True, "wifi": False},
        "os": {"name": "iPhone OS", "version": "8.1.3"},
        "page": {
            "path": "/academy/",
            "referrer": "",
            "search": "",
            "title": "Analytics Academy",
            "url": "https://segment.com/academy/",
        },
        "referrer": {"id": "ABCD582CDEFFFF01919", "type": "dataxu"},
        "screen": {"width": 320, "height": 568, "density": 2},
        "groupId": "12345",
        "timezone": "Europe/Amsterdam",
        "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 9_1 like Mac OS X) AppleWebKit/601.1.46",
        "userAgentData": {
            "brands": [{"brand": "Google Chrome", "version": "113"}],
            "mobile": False,
            "platform": "macOS",
        },
    },
    "integrations": {"All": True, "Mixpanel": False, "Salesforce": False},
    "event": "Report Submitted",
    "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
    "receivedAt": "2015-12-10T04:08:31.909Z",
    "sentAt": "2015-12-10T04:08:31.581Z",
    "timestamp": "2015-12-10T04:08:31.905Z",
    "type": "track",
    "userId": "97980cfea0067",
    "version": 2,
}
DOC_VIOLATION_GENERATED = {  # §6, protocols/validate/forward-violations.md: Segment's own track
    "context": {"app": None, "library": {"name": "analytics-node", "version": "2.1.0"}},
    "event": "Violation Generated",
    "integrations": {},
    "messageId": "sch-Vir1JNrorwlBmCHrHWuPJekMx5c59T7c",
    "properties": {
        "appVersion": "",
        "eventMessageID": "node-YhqA1DK9mgV55INDzOSd542fCFbIkc1o",
        "eventName": "Order Completed",
        "eventSentAt": "2018-08-23T21:35:02.85860964Z",
        "eventTimestamp": "0001-01-01T00:00:00Z",
        "eventType": "track",
        "sourceID": "dInN1HJ4bi",
        "sourceName": "Acme Store",
        "sourceSlug": "acme_store_test",
        "trackingPlanID": "rs_16KrwVbouFLrYbDkGh4LNslkrNp",
        "trackingPlanName": "Acme Ecommerce TP",
        "violationDescription": "properties.products is required",
        "violationField": "properties.products",
        "violationType": "Required",
    },
    "receivedAt": "2018-09-05T23:05:25.862826965Z",
    "timestamp": "2018-09-05T23:05:25.862826855Z",
    "type": "track",
    "userId": "schema-violations",
    "forwardedFromProject": "dInN1HJ4bi",
}
DOC_AUDIENCE_IDENTIFY = {  # §4.3, engage/using-engage-data.md
    "context": {
        "personas": {
            "computation_class": "audience",
            "computation_id": "aud_###",
            "computation_key": "aud_###",
            "namespace": "spa_###",
            "space_id": "spa_###",
        }
    },
    "type": "identify",
    "userId": "u123",
    "traits": {"first_time_shopper": True},
}
DOC_TRAIT_IDENTIFY = {  # §4.3: the audience example with the computed-trait fields the docs give
    "context": {
        "personas": {
            "computation_class": "trait",
            "computation_id": "tra_###",
            "computation_key": "total_revenue_180_days",
            "namespace": "spa_###",
            "space_id": "spa_###",
        }
    },
    "type": "identify",
    "userId": "u123",
    "traits": {"total_revenue_180_days": 450.00},
}
DOC_EMAIL_LINK_CLICKED_LEGACY = {  # §3, spec/email.md, verbatim: legacy wire format
    "user_id": "019mr8mf4r",
    "action": "track",
    "event": "Email Link Clicked",
    "context": {
        "ip": "67.207.109.102",
        "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_2) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/41.0.2272.118 Safari/537.36",
        "traits": {"email": "joanna@chotchkies.com"},
    },
    "properties": {
        "email_id": "18vzF7u3z",
        "email_subject": "First shirt on us!",
        "campaign_id": "123",
        "campaign_name": "New Customer Discount",
        "link_id": "101",
        "link_url": "https://www.buymyshirts.com?promo=NEWCUSTOMER",
    },
}

# ---------------------------------------------------------------------------------------------
# analytics-python 2.3.4 messages, as client.py builds them (None kept, ids stringified,
# groupId/previousId passed through, isoformat timestamps with +00:00)

PY_CONTEXT = {"library": {"name": "analytics-python", "version": "2.3.4"}}
PY_COMMON = {
    "integrations": {},
    "anonymousId": None,
    "timestamp": "2025-01-01T12:00:00.123+00:00",
    "context": PY_CONTEXT,
    "userId": "user-42",
    "messageId": "5f2b7b8e-2b1c-4a57-9a7e-2f0d6c0c4b9e",
}
PY_IDENTIFY = {
    **PY_COMMON,
    "type": "identify",
    "traits": {
        "email": "ada@example.com",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "age": 36,
        "birthday": "1815-12-10",
        "createdAt": "2024-06-01T08:00:00+00:00",
        "address": {"city": "London", "country": "UK", "postalCode": "W1", "street": "12 St James's Square"},
        "company": {"name": "Analytical Engines", "id": 7, "industry": "Computing", "employee_count": 3},
        "phone": None,
        "plan": "pro",
    },
}
PY_TRACK = {
    **PY_COMMON,
    "type": "track",
    "event": "Order Completed",
    "properties": {"revenue": 49.9, "currency": "EUR", "value": None, "order_id": "o-1"},
}
PY_PAGE = {
    **PY_COMMON,
    "userId": None,
    "anonymousId": "anon-7",
    "type": "page",
    "name": None,
    "category": None,
    "properties": {},
}
PY_SCREEN = {**PY_COMMON, "type": "screen", "name": "Checkout", "category": None, "properties": {"step": 2}}
PY_GROUP = {**PY_COMMON, "type": "group", "groupId": 42, "traits": {"name": "Initech", "employees": 120}}
PY_ALIAS = {
    "integrations": {},
    "previousId": 7,
    "timestamp": "2025-01-01T12:00:00.123+00:00",
    "context": PY_CONTEXT,
    "userId": "user-42",
    "type": "alias",
    "messageId": "0a3c2e61-6f0c-4f0e-8d9a-0c5a1a0d9e11",
    "anonymousId": None,
}
PY_BATCH = {
    "batch": [PY_IDENTIFY, PY_TRACK, PY_PAGE, PY_SCREEN, PY_GROUP, PY_ALIAS],
    "sentAt": "2025-01-01T12:00:00.456789+00:00",
    "writeKey": "test-write-key",
}

# ---------------------------------------------------------------------------------------------
# Engage as the fake (and real Engage, per action-destinations fixtures) sends it

ENGAGE_PERSONAS = {
    "computation_class": "audience",
    "computation_id": "aud_2zJkeVoLkrirhXup2uAPEsDLq4N",
    "computation_key": "order_completed_last_30days",
    "namespace": "spa_9vACn44CYGDZNPNWDUXtMJ",
    "space_id": "spa_9vACn44CYGDZNPNWDUXtMJ",
}
ENGAGE_AUDIENCE_IDENTIFY = {
    "type": "identify",
    "userId": "user-42",
    "messageId": "personas_2zKJ24JMRhVvIFJj4ukGOBKPeNo",
    "timestamp": "2025-07-02T16:26:57.511Z",
    "integrations": {"All": False, "Mailjet": True},
    "context": {"personas": ENGAGE_PERSONAS, "library": {"name": "unknown", "version": "unknown"}},
    "traits": {"order_completed_last_30days": True, "email": "ada@example.com"},
}
ENGAGE_TRAIT_IDENTIFY = changed(
    ENGAGE_AUDIENCE_IDENTIFY,
    context__personas__computation_class="trait",
    context__personas__computation_id="tra_2zJkeVoLkrirhXup2uAPEsDLq4N",
    context__personas__computation_key="total_revenue_180_days",
    traits={"total_revenue_180_days": 450.0, "email": "ada@example.com"},
)

# ---------------------------------------------------------------------------------------------
# the six email events Mailjet sends: the §3 example in the modern wire format


def email_event(event: str, **extra_properties: str) -> dict:
    return {
        "type": "track",
        "userId": "019mr8mf4r",
        "event": event,
        "messageId": "mailjet-1152921512345678-open",
        "timestamp": "2025-03-04T10:11:12Z",
        "context": {
            "ip": "67.207.109.102",
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_2) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/41.0.2272.118 Safari/537.36",
            "traits": {"email": "joanna@chotchkies.com"},
            "integration": {"name": "mailjet", "version": "1.0.0"},
        },
        "properties": {
            "email_id": "18vzF7u3z",
            "email_subject": "First shirt on us!",
            "campaign_id": "123",
            "campaign_name": "New Customer Discount",
            **extra_properties,
        },
    }


EMAIL_CONTRACTS = {
    "segment.email_delivered": email_event("Email Delivered"),
    "segment.email_opened": email_event("Email Opened"),
    "segment.email_link_clicked": email_event(
        "Email Link Clicked", link_id="101", link_url="https://www.buymyshirts.com?promo=NEWCUSTOMER"
    ),
    "segment.email_bounced": email_event("Email Bounced"),
    "segment.email_marked_as_spam": email_event("Email Marked as Spam"),
    "segment.email_unsubscribed": email_event("Email Unsubscribed", list_id="1425", list_name="New customers"),
}


def anonymous(payload: dict) -> dict:
    """Mailjet without a userId for the contact: the email goes in anonymousId (reference §7.2)."""
    result = without(payload, "userId")
    result["anonymousId"] = result["context"]["traits"]["email"]
    return result


# ---------------------------------------------------------------------------------------------
# the examples: one case per line, so each table reads as a table

VALID: list[tuple[str, str, Any]] = [
    ("segment.identify", "docs identify", DOC_IDENTIFY),
    ("segment.identify", "analytics-python identify", PY_IDENTIFY),
    ("segment.identify", "anonymous only, userId null", changed(PY_IDENTIFY, userId=None, anonymousId="anon-1")),
    ("segment.identify", "reserved traits null", changed(PY_IDENTIFY, traits={"age": None, "birthday": None})),
    ("segment.identify", "snake_case reserved traits", changed(PY_IDENTIFY, traits={"first_name": "Ada", "created_at": "2024-06-01"})),
    ("segment.identify", "email not validated as an address", changed(PY_IDENTIFY, traits={"email": "not-an-email"})),
    # A Date without an offset: to the minute, or with a fraction; February 29 of a leap year.
    *[("segment.identify", f"createdAt {value!r}", changed(PY_IDENTIFY, traits__createdAt=value))
      for value in ("2025-01-01T10:00", "2024-02-29T10:00:00.123456")],
    ("segment.identify", "extra top-level field", changed(DOC_IDENTIFY, channel="server", _metadata={"bundled": []})),
    ("segment.track", "docs track", DOC_TRACK),
    ("segment.track", "docs common.md track", DOC_COMMON_TRACK),
    ("segment.track", "docs Violation Generated", DOC_VIOLATION_GENERATED),
    ("segment.track", "analytics-python track", PY_TRACK),
    ("segment.track", "messageId of 100 characters", changed(PY_TRACK, messageId="m" * 100)),
    (
        "segment.track",
        "protocols violations recorded",
        changed(
            PY_TRACK,
            context__protocols={
                "violations": [{"type": "Invalid Type", "field": "properties.revenue", "description": "Invalid type."}]
            },
        ),
    ),
    ("segment.page", "analytics-python page with null name and category", PY_PAGE),
    ("segment.page", "named page", changed(PY_PAGE, name="Pricing", category="Docs", properties={"url": "https://x.test/p"})),
    ("segment.screen", "analytics-python screen", PY_SCREEN),
    ("segment.group", "analytics-python group, numeric groupId", PY_GROUP),
    ("segment.group", "string groupId", changed(PY_GROUP, groupId="initech")),
    ("segment.alias", "docs alias", DOC_ALIAS),
    ("segment.alias", "analytics-python alias, numeric previousId", PY_ALIAS),
    ("segment.batch", "docs batch", DOC_BATCH),
    ("segment.batch", "analytics-python batch of all six types", PY_BATCH),
    ("segment.batch", "analytics.js /v1/b batch", {"batch": [changed(DOC_TRACK, type="track")], "writeKey": "k", "sentAt": "2025-01-01T00:00:00Z"}),
    ("segment.batch", "batch-level integrations", changed(DOC_BATCH, integrations={"All": False, "Mailjet": True})),
    ("segment.engage_audience_identify", "docs audience identify", DOC_AUDIENCE_IDENTIFY),
    ("segment.engage_audience_identify", "fake Engage: entered", ENGAGE_AUDIENCE_IDENTIFY),
    ("segment.engage_audience_identify", "fake Engage: exited", changed(ENGAGE_AUDIENCE_IDENTIFY, traits__order_completed_last_30days=False)),
    ("segment.engage_audience_identify", "anonymous profile", changed(without(ENGAGE_AUDIENCE_IDENTIFY, "userId"), anonymousId="anon-9")),
    ("segment.identify", "docs audience identify is an identify", DOC_AUDIENCE_IDENTIFY),
    ("segment.identify", "Engage audience identify is an identify", ENGAGE_AUDIENCE_IDENTIFY),
    ("segment.engage_trait_identify", "docs computed-trait identify", DOC_TRAIT_IDENTIFY),
    ("segment.engage_trait_identify", "fake Engage: computed trait", ENGAGE_TRAIT_IDENTIFY),
    ("segment.engage_trait_identify", "string computed trait", changed(ENGAGE_TRAIT_IDENTIFY, traits={"favorite_color": "blue"})),
    *[(name, "docs example, modern wire format", payload) for name, payload in EMAIL_CONTRACTS.items()],
    *[(name, "contact without userId: anonymousId = email", anonymous(p)) for name, p in EMAIL_CONTRACTS.items()],
    ("segment.email_link_clicked", "without optional link_id", without(EMAIL_CONTRACTS["segment.email_link_clicked"], "properties.link_id")),
    ("segment.email_unsubscribed", "without optional list_name", without(EMAIL_CONTRACTS["segment.email_unsubscribed"], "properties.list_name")),
    # spec/email.md, Unsubscribed: list_id "An optional id used to identify a list" (the unsubscription
    # "can either happen for a particular list, or globally from all marketing emails, depending on the tool").
    ("segment.email_unsubscribed", "without optional list_id and list_name", without(EMAIL_CONTRACTS["segment.email_unsubscribed"], "properties.list_id", "properties.list_name")),
    ("segment.email_delivered", "without optional ip and userAgent", without(EMAIL_CONTRACTS["segment.email_delivered"], "context.ip", "context.userAgent")),
    ("segment.email_opened", "integration without version", without(EMAIL_CONTRACTS["segment.email_opened"], "context.integration.version")),
    ("segment.track", "an email event is a track", EMAIL_CONTRACTS["segment.email_opened"]),
]

CLICKED = EMAIL_CONTRACTS["segment.email_link_clicked"]
UNSUBSCRIBED = EMAIL_CONTRACTS["segment.email_unsubscribed"]

INVALID: list[tuple[str, str, Any, list[tuple[str, str]]]] = [
    # identify
    ("segment.identify", "age as a string", changed(PY_IDENTIFY, traits__age="26"), [("$.traits.age", "type")]),
    ("segment.identify", "no userId nor anonymousId", changed(PY_IDENTIFY, userId=None), [("$", "anyOf")]),
    ("segment.identify", "ids missing altogether", without(DOC_IDENTIFY, "userId"), [("$", "anyOf")]),
    ("segment.identify", "empty userId", changed(PY_IDENTIFY, userId=""), [("$.userId", "minLength")]),
    ("segment.identify", "numeric userId", changed(PY_IDENTIFY, userId=42), [("$", "anyOf"), ("$.userId", "type")]),
    ("segment.identify", "wrong type", changed(PY_IDENTIFY, type="track"), [("$.type", "const")]),
    ("segment.identify", "messageId over 100", changed(PY_IDENTIFY, messageId="m" * 101), [("$.messageId", "maxLength")]),
    ("segment.identify", "naive timestamp", changed(PY_IDENTIFY, timestamp="2025-01-01T12:00:00"), [("$.timestamp", "format")]),
    ("segment.identify", "timestamp with a final newline", changed(PY_IDENTIFY, timestamp="2025-01-01T12:00:00Z\n"),
     [("$.timestamp", "format")]),
    ("segment.identify", "numeric timestamp", changed(PY_IDENTIFY, timestamp=1735732800), [("$.timestamp", "type")]),
    ("segment.identify", "traits not an object", changed(PY_IDENTIFY, traits=["a"]), [("$.traits", "type")]),
    ("segment.identify", "email not a string", changed(PY_IDENTIFY, traits__email=42), [("$.traits.email", "type")]),
    ("segment.identify", "address as a string", changed(PY_IDENTIFY, traits__address="1 Main St"), [("$.traits.address", "type")]),
    ("segment.identify", "birthday not a date", changed(PY_IDENTIFY, traits__birthday="10/12/1815"), [("$.traits.birthday", "anyOf")]),
    ("segment.identify", "createdAt without seconds' digits", changed(PY_IDENTIFY, traits__createdAt="2020-01-01T12:00:6"),
     [("$.traits.createdAt", "anyOf")]),
    # Without an offset as with one, the calendar holds: no February 30, no month 13.
    ("segment.identify", "createdAt on February 30", changed(PY_IDENTIFY, traits__createdAt="2025-02-30T10:00:00"),
     [("$.traits.createdAt", "anyOf")]),
    ("segment.identify", "createdAt in month 13", changed(PY_IDENTIFY, traits__createdAt="2025-13-01T10:00"),
     [("$.traits.createdAt", "anyOf")]),
    *[("segment.identify", f"createdAt {value!r}", changed(PY_IDENTIFY, traits__createdAt=value), [("$.traits.createdAt", "anyOf")])
      for value in ("2025-02-29T10:00:00", "2025-01-01T10:00:00\n", "2025-01-01T24:00")],
    ("segment.identify", "createdAt as epoch", changed(PY_IDENTIFY, traits__createdAt=1717228800), [("$.traits.createdAt", "anyOf")]),
    ("segment.identify", "company employee_count string", changed(PY_IDENTIFY, traits__company__employee_count="3"), [("$.traits.company.employee_count", "type")]),
    ("segment.identify", "context not an object", changed(PY_IDENTIFY, context="web"), [("$.context", "type")]),
    ("segment.identify", "library as a string", changed(PY_IDENTIFY, context__library="analytics-python"), [("$.context.library", "type")]),
    ("segment.identify", "integrations value a string", changed(PY_IDENTIFY, integrations__Mailjet="yes"), [("$.integrations.Mailjet", "type")]),
    ("segment.identify", "sentAt not RFC 3339", changed(PY_IDENTIFY, sentAt="yesterday"), [("$.sentAt", "format")]),
    # track
    ("segment.track", "no event", without(DOC_TRACK, "event"), [("$.event", "required")]),
    ("segment.track", "empty event", changed(DOC_TRACK, event=""), [("$.event", "minLength")]),
    ("segment.track", "event not a string", changed(DOC_TRACK, event=42), [("$.event", "type")]),
    ("segment.track", "revenue as a string", changed(DOC_TRACK, properties__revenue="14.99"), [("$.properties.revenue", "type")]),
    ("segment.track", "currency as a number", changed(PY_TRACK, properties__currency=978), [("$.properties.currency", "type")]),
    ("segment.track", "value as a string", changed(PY_TRACK, properties__value="high"), [("$.properties.value", "type")]),
    ("segment.track", "properties not an object", changed(PY_TRACK, properties="x"), [("$.properties", "type")]),
    ("segment.track", "both ids null", changed(PY_TRACK, userId=None), [("$", "anyOf")]),
    ("segment.track", "no ids and no event", {"type": "track"}, [("$", "anyOf"), ("$.event", "required")]),
    ("segment.track", "device adTrackingEnabled as a string", changed(PY_TRACK, context__device__adTrackingEnabled="yes"), [("$.context.device.adTrackingEnabled", "type")]),
    ("segment.track", "payload not an object", ["track"], [("$", "type")]),
    # page / screen
    ("segment.page", "empty name", changed(PY_PAGE, name=""), [("$.name", "minLength")]),
    ("segment.page", "category a number", changed(PY_PAGE, category=3), [("$.category", "type")]),
    ("segment.page", "url a number", changed(PY_PAGE, properties__url=5), [("$.properties.url", "type")]),
    ("segment.page", "no ids", changed(PY_PAGE, anonymousId=None), [("$", "anyOf")]),
    ("segment.page", "wrong type", changed(PY_PAGE, type="screen"), [("$.type", "const")]),
    ("segment.screen", "name a number", changed(PY_SCREEN, name=5), [("$.name", "type")]),
    ("segment.screen", "properties a list", changed(PY_SCREEN, properties=[]), [("$.properties", "type")]),
    # group
    ("segment.group", "no groupId", without(PY_GROUP, "groupId"), [("$.groupId", "required")]),
    ("segment.group", "groupId null", changed(PY_GROUP, groupId=None), [("$.groupId", "type")]),
    ("segment.group", "groupId empty", changed(PY_GROUP, groupId=""), [("$.groupId", "minLength")]),
    ("segment.group", "traits a list", changed(PY_GROUP, traits=[]), [("$.traits", "type")]),
    # alias
    ("segment.alias", "no previousId", without(DOC_ALIAS, "previousId"), [("$.previousId", "required")]),
    ("segment.alias", "no userId", without(DOC_ALIAS, "userId"), [("$.userId", "required")]),
    ("segment.alias", "userId null", changed(PY_ALIAS, userId=None), [("$.userId", "type")]),
    ("segment.alias", "previousId null", changed(PY_ALIAS, previousId=None), [("$.previousId", "type")]),
    # batch
    (
        "segment.batch",
        "docs batch timestamp 2015-2-02 (not RFC 3339, flagged on purpose)",
        changed(DOC_BATCH, batch=[changed(DOC_BATCH["batch"][0], timestamp="2015-2-02T00:30:08.276Z"), DOC_BATCH["batch"][1]]),
        [("$.batch[0].timestamp", "format")],
    ),
    ("segment.batch", "no batch", {"writeKey": "k"}, [("$.batch", "required")]),
    ("segment.batch", "empty batch", {"batch": []}, [("$.batch", "minItems")]),
    ("segment.batch", "batch not a list", {"batch": DOC_TRACK}, [("$.batch", "type")]),
    ("segment.batch", "over 2,500 items", {"batch": [PY_TRACK] * 2501}, [("$.batch", "maxItems")]),
    ("segment.batch", "item without type", {"batch": [DOC_TRACK]}, [("$.batch[0].type", "required")]),
    ("segment.batch", "item of unknown type", {"batch": [changed(DOC_TRACK, type="purchase")]}, [("$.batch[0].type", "enum")]),
    ("segment.batch", "track item without event", changed(DOC_BATCH, batch=[DOC_BATCH["batch"][0], without(DOC_BATCH["batch"][1], "event")]), [("$.batch[1].event", "required")]),
    ("segment.batch", "identify item with age string", changed(PY_BATCH, batch=[changed(PY_IDENTIFY, traits__age="36")]), [("$.batch[0].traits.age", "type")]),
    ("segment.batch", "alias item without previousId", {"batch": [without(PY_ALIAS, "previousId")]}, [("$.batch[0].previousId", "required")]),
    ("segment.batch", "group item with ids null", {"batch": [changed(PY_GROUP, userId=None)]}, [("$.batch[0]", "anyOf")]),
    ("segment.batch", "batch sentAt not RFC 3339", changed(PY_BATCH, sentAt="2025-01-01 12:00"), [("$.sentAt", "format")]),
    ("segment.batch", "batch context device type a number", changed(DOC_BATCH, context__device__type=1), [("$.context.device.type", "type")]),
    ("segment.batch", "violations in item order", {"batch": [changed(PY_TRACK, event="")] * 3 + [PY_TRACK] * 8 + [{}]}, [("$.batch[0].event", "minLength"), ("$.batch[1].event", "minLength"), ("$.batch[2].event", "minLength"), ("$.batch[11].type", "required")]),
    # Engage audience
    ("segment.engage_audience_identify", "membership not a boolean", changed(DOC_AUDIENCE_IDENTIFY, traits={"first_time_shopper": "yes"}), [("$.traits", "not")]),
    ("segment.engage_audience_identify", "empty traits", changed(DOC_AUDIENCE_IDENTIFY, traits={}), [("$.traits", "minProperties"), ("$.traits", "not")]),
    ("segment.engage_audience_identify", "no traits", without(DOC_AUDIENCE_IDENTIFY, "traits"), [("$.traits", "required")]),
    ("segment.engage_audience_identify", "computed-trait class", changed(ENGAGE_AUDIENCE_IDENTIFY, context__personas__computation_class="trait"), [("$.context.personas.computation_class", "const")]),
    ("segment.engage_audience_identify", "trait id", changed(ENGAGE_AUDIENCE_IDENTIFY, context__personas__computation_id="tra_1"), [("$.context.personas.computation_id", "pattern")]),
    ("segment.engage_audience_identify", "no computation_key", without(ENGAGE_AUDIENCE_IDENTIFY, "context.personas.computation_key"), [("$.context.personas.computation_key", "required")]),
    ("segment.engage_audience_identify", "empty computation_key", changed(ENGAGE_AUDIENCE_IDENTIFY, context__personas__computation_key=""), [("$.context.personas.computation_key", "minLength")]),
    ("segment.engage_audience_identify", "namespace not a space id", changed(ENGAGE_AUDIENCE_IDENTIFY, context__personas__namespace="space-1"), [("$.context.personas.namespace", "pattern")]),
    ("segment.engage_audience_identify", "space_id not a space id", changed(ENGAGE_AUDIENCE_IDENTIFY, context__personas__space_id="1"), [("$.context.personas.space_id", "pattern")]),
    ("segment.engage_audience_identify", "no personas", without(ENGAGE_AUDIENCE_IDENTIFY, "context.personas"), [("$.context.personas", "required")]),
    ("segment.engage_audience_identify", "no context", without(DOC_AUDIENCE_IDENTIFY, "context"), [("$.context", "required")]),
    ("segment.engage_audience_identify", "messageId not personas_", changed(ENGAGE_AUDIENCE_IDENTIFY, messageId="ajs-1"), [("$.messageId", "pattern")]),
    ("segment.engage_audience_identify", "integrations All true", changed(ENGAGE_AUDIENCE_IDENTIFY, integrations__All=True), [("$.integrations.All", "const")]),
    ("segment.engage_audience_identify", "integrations without All", changed(ENGAGE_AUDIENCE_IDENTIFY, integrations={"Mailjet": True}), [("$.integrations.All", "required")]),
    ("segment.engage_audience_identify", "email not a string", changed(ENGAGE_AUDIENCE_IDENTIFY, traits__email=None), [("$.traits.email", "type")]),
    ("segment.engage_audience_identify", "sent as a track", changed(ENGAGE_AUDIENCE_IDENTIFY, type="track"), [("$.type", "const")]),
    ("segment.engage_audience_identify", "no type", without(DOC_AUDIENCE_IDENTIFY, "type"), [("$.type", "required")]),
    ("segment.engage_audience_identify", "no ids", without(DOC_AUDIENCE_IDENTIFY, "userId"), [("$", "anyOf")]),
    # Engage computed trait
    ("segment.engage_trait_identify", "audience class", changed(DOC_TRAIT_IDENTIFY, context__personas__computation_class="audience"), [("$.context.personas.computation_class", "const")]),
    ("segment.engage_trait_identify", "computed_trait class", changed(DOC_TRAIT_IDENTIFY, context__personas__computation_class="computed_trait"), [("$.context.personas.computation_class", "const")]),
    ("segment.engage_trait_identify", "audience id", changed(DOC_TRAIT_IDENTIFY, context__personas__computation_id="aud_1"), [("$.context.personas.computation_id", "pattern")]),
    ("segment.engage_trait_identify", "empty traits", changed(DOC_TRAIT_IDENTIFY, traits={}), [("$.traits", "minProperties")]),
    ("segment.engage_trait_identify", "messageId not personas_", changed(ENGAGE_TRAIT_IDENTIFY, messageId="x"), [("$.messageId", "pattern")]),
    ("segment.engage_trait_identify", "docs audience identify", DOC_AUDIENCE_IDENTIFY, [("$.context.personas.computation_class", "const"), ("$.context.personas.computation_id", "pattern")]),
    # email events: the verbatim legacy example, then each rule
    ("segment.email_link_clicked", "docs legacy wire format (user_id, no context.integration)", DOC_EMAIL_LINK_CLICKED_LEGACY, [("$", "anyOf"), ("$.context.integration", "required")]),
    ("segment.email_link_clicked", "no link_url", without(CLICKED, "properties.link_url"), [("$.properties.link_url", "required")]),
    ("segment.email_link_clicked", "link_id a number", changed(CLICKED, properties__link_id=101), [("$.properties.link_id", "type")]),
    ("segment.email_unsubscribed", "list_id a number", changed(UNSUBSCRIBED, properties__list_id=1425), [("$.properties.list_id", "type")]),
    ("segment.email_unsubscribed", "list_name null", changed(UNSUBSCRIBED, properties__list_name=None), [("$.properties.list_name", "type")]),
    ("segment.email_unsubscribed", "the Email spec's name Unsubscribed", changed(UNSUBSCRIBED, event="Unsubscribed"), [("$.event", "const")]),
    ("segment.email_opened", "another event's name", EMAIL_CONTRACTS["segment.email_delivered"], [("$.event", "const")]),
    ("segment.email_marked_as_spam", "event name casing", changed(EMAIL_CONTRACTS["segment.email_marked_as_spam"], event="Email Marked As Spam"), [("$.event", "const")]),
    ("segment.email_bounced", "no event", without(EMAIL_CONTRACTS["segment.email_bounced"], "event"), [("$.event", "required")]),
    *[
        case
        for name, good in EMAIL_CONTRACTS.items()
        for case in [
            (name, "no context.traits.email", without(good, "context.traits.email"), [("$.context.traits.email", "required")]),
            (name, "email not an address", changed(good, context__traits__email="contact-17"), [("$.context.traits.email", "format")]),
            (name, "integration not mailjet", changed(good, context__integration__name="Mailjet"), [("$.context.integration.name", "const")]),
            (name, "no context.integration", without(good, "context.integration"), [("$.context.integration", "required")]),
            (name, "campaign_id a number", changed(good, properties__campaign_id=123), [("$.properties.campaign_id", "type")]),
            (name, "no email_id", without(good, "properties.email_id"), [("$.properties.email_id", "required")]),
            (name, "extra property not a string", changed(good, properties__message_id=1152921512345678), [("$.properties.message_id", "type")]),
            (name, "no properties", without(good, "properties"), [("$.properties", "required")]),
            (name, "no context", without(good, "context"), [("$.context", "required")]),
            (name, "no ids", without(good, "userId"), [("$", "anyOf")]),
            (name, "userAgent not a string", changed(good, context__userAgent=["Mozilla"]), [("$.context.userAgent", "type")]),
            (name, "sent as an identify", changed(good, type="identify"), [("$.type", "const")]),
        ]
    ],
]


def _param(case: tuple) -> Any:
    return pytest.param(*case, id=f"{case[0]}: {case[1]}")


@pytest.mark.parametrize("contract, label, payload", [_param(case) for case in VALID])
def test_valid_payload(contract: str, label: str, payload: Any) -> None:
    assert validate(contract, payload) == []


@pytest.mark.parametrize("contract, label, payload, expected", [_param(case) for case in INVALID])
def test_invalid_payload(contract: str, label: str, payload: Any, expected: list[tuple[str, str]]) -> None:
    assert [(violation.path, violation.rule) for violation in validate(contract, payload)] == expected


SEGMENT_CONTRACTS = [name for name in names() if name.startswith("segment.")]


@pytest.mark.parametrize("contract", SEGMENT_CONTRACTS)
def test_every_segment_contract_has_passing_and_failing_examples(contract: str) -> None:
    assert any(case[0] == contract for case in VALID)
    assert any(case[0] == contract for case in INVALID)


def test_the_expected_segment_contracts_exist() -> None:
    assert set(SEGMENT_CONTRACTS) == {
        "segment.identify",
        "segment.track",
        "segment.page",
        "segment.screen",
        "segment.group",
        "segment.alias",
        "segment.batch",
        "segment.engage_audience_identify",
        "segment.engage_trait_identify",
        *EMAIL_CONTRACTS,
    }


def test_messages_built_by_the_installed_analytics_python_pass() -> None:
    """Whatever version is installed: its messages and its batch envelope meet the contracts."""
    from datetime import date, datetime, timezone

    from segment.analytics import Client
    from segment.analytics.request import DatetimeSerializer

    client = Client("test-write-key", send=False)
    # A naive datetime trait is written without an offset ("2020-01-01T12:00:00"): ISO 8601, and a
    # violation (a discarded call under --strict) before the Date type took it.
    traits = {"email": "ada@example.com", "age": 36, "phone": None, "createdAt": datetime(2020, 1, 1, 12), "birthday": date(1990, 5, 17)}
    messages = [
        client.identify("user-42", traits),
        client.track("user-42", "Order Completed", {"revenue": 12.5, "currency": "EUR"}),
        client.page(anonymous_id="anon-1"),
        client.screen("user-42", name="Home"),
        client.group("user-42", 42, {"name": "Initech"}),
        client.alias(7, "user-42"),
    ]
    assert all(ok for ok, _ in messages)
    # As they travel: the client encodes its dates when it posts a batch.
    sent = [json.loads(json.dumps(message, cls=DatetimeSerializer)) for _, message in messages]
    for message in sent:
        assert validate(f"segment.{message['type']}", message) == [], message
    envelope = {
        "batch": sent,
        "sentAt": datetime.now(tz=timezone.utc).isoformat(),
        "writeKey": "test-write-key",
    }
    assert validate("segment.batch", envelope) == []


def test_readable_messages() -> None:
    """The messages that go into context.protocols.violations say what was expected."""
    payload = changed(DOC_AUDIENCE_IDENTIFY, userId=None, traits={"x": 1})
    by_path = {v.path: v.message for v in validate("segment.engage_audience_identify", payload)}
    assert by_path["$"] == "A userId or an anonymousId is required: a non-empty string (null does not count)."
    assert "at least one boolean" in by_path["$.traits"]
    [missing] = validate("segment.track", without(DOC_TRACK, "event"))
    assert str(missing) == '$.event: "event" is required (required)'


# ---------------------------------------------------------------------------------------------
# the destination's hop: what Segment delivers to it (destination.request) and its 200 answer


DELIVERED_IDENTIFY = {
    "type": "identify",
    "messageId": "ajs-next-1714557600000-7f4c",
    "userId": "user-42",
    "traits": {"email": "ada@example.com", "plan": "pro", "location": {"city": "Paris"}},
    "timestamp": "2024-05-01T10:00:00.000Z",
    "receivedAt": "2024-05-01T10:00:00.100Z",
}
DESTINATION_ANSWER = {
    "message": "contact ada@example.com upserted in Mailjet list 1",
    "email": "ada@example.com",
    "listId": 1,
    "contactId": 12338756133,
    "action": "addnoforce",
    "name": None,
    "properties": [{"name": "location_city", "trait": "location.city", "datatype": "str", "value": "Paris"}],
    "createdProperties": [{"name": "location_city", "datatype": "str"}],
    "skipped": [],
    "renamed": [],
}
DESTINATION_VALID = [
    ("destination.request", DELIVERED_IDENTIFY),
    ("destination.response", DESTINATION_ANSWER),
    ("destination.response", changed(DESTINATION_ANSWER, contactId=None, name="Ada Lovelace")),
]
DESTINATION_INVALID = [
    # Segment sets type and messageId on every message it delivers (reference/segment.md §5.2).
    ("destination.request", without(DELIVERED_IDENTIFY, "messageId"), [("$.messageId", "required")]),
    ("destination.request", changed(DELIVERED_IDENTIFY, messageId=""), [("$.messageId", "minLength")]),
    ("destination.request", without(DELIVERED_IDENTIFY, "type"), [("$.type", "required")]),
    # The Mailjet tile takes identify only (§7.1): Segment sends it nothing else.
    ("destination.request", changed(DELIVERED_IDENTIFY, type="track", event="Signed Up"), [("$.type", "const")]),
    ("destination.response", changed(DESTINATION_ANSWER, action="addforce"), [("$.action", "const")]),
    ("destination.response", changed(DESTINATION_ANSWER, listId=0), [("$.listId", "minimum")]),
    # ContactID as Mailjet's docs show it ("10") is turned into an integer before it is answered.
    ("destination.response", changed(DESTINATION_ANSWER, contactId="10"), [("$.contactId", "type")]),
    ("destination.response", changed(DESTINATION_ANSWER, renamed=[{"trait": "2fa", "property": "2fa"}]), [("$.renamed[0].property", "pattern")]),
    ("destination.response", without(DESTINATION_ANSWER, "skipped"), [("$.skipped", "required")]),
]


@pytest.mark.parametrize(("contract", "payload"), DESTINATION_VALID)
def test_valid_destination_payload(contract: str, payload: Any) -> None:
    assert validate(contract, payload) == []


@pytest.mark.parametrize(("contract", "payload", "expected"), DESTINATION_INVALID)
def test_invalid_destination_payload(contract: str, payload: Any, expected: list[tuple[str, str]]) -> None:
    assert [(violation.path, violation.rule) for violation in validate(contract, payload)] == expected


DESTINATION_EXAMPLES = {"destination.request": DELIVERED_IDENTIFY, "destination.response": DESTINATION_ANSWER}
# Written out, not read from the schemas: a field fallen out of a `required` list by mistake must
# fail a test (the harness relies on these contracts to catch a payload that drops one).
DESTINATION_REQUIRED = {
    "destination.request": ["type", "messageId"],
    "destination.response": ["message", "email", "listId", "contactId", "action", "name", "properties",
                             "createdProperties", "skipped", "renamed"],
}


def test_the_destination_required_fields_are_the_schemas() -> None:
    for contract, keys in DESTINATION_REQUIRED.items():
        assert sorted(schema(contract)["required"]) == sorted(keys), contract


@pytest.mark.parametrize(("contract", "key"), [(contract, key) for contract, keys in DESTINATION_REQUIRED.items() for key in keys])
def test_a_destination_payload_without_a_required_field_is_refused_there(contract: str, key: str) -> None:
    violations = validate(contract, without(DESTINATION_EXAMPLES[contract], key))
    assert (f"$.{key}", "required") in [(violation.path, violation.rule) for violation in violations]


def test_every_destination_contract_has_passing_and_failing_examples() -> None:
    destination_contracts = {name for name in names() if name.startswith("destination.")}
    assert destination_contracts == {"destination.request", "destination.response"}
    assert {name for name, _ in DESTINATION_VALID} == {name for name, *_ in DESTINATION_INVALID} == destination_contracts
