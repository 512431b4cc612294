"""Send API v3.1 validation against the DevGuide's "Send API errors" table (reference/mailjet.md §6).

Each rule is checked both ways: the valid edge is sent, the invalid one answers its documented
ErrorCode, StatusCode and ErrorRelatedTo in the per-message error shape, or, for a structure that
cannot be read (mj-0004: an address that is no object, a list that is no array), refuses the whole
request.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from emulator.common.clock import Clock
from emulator.config import BundleConfig
from emulator.mailjet import send as send_module
from emulator.mailjet.models import EMAIL_PATTERN, MAX_STRING_LENGTH, Account, MailjetBackend
from emulator.mailjet.send import FORBIDDEN_HEADERS, SendError, read_send_body, send

DROP = object()  # a `message()` change that removes the key
ATTACHMENT = {"ContentType": "text/plain", "Filename": "a.txt", "Base64Content": "aGk="}
# The DevGuide's forbidden headers, as it prints them.
DOCUMENTED_FORBIDDEN = [
    "From", "Sender", "Subject", "To", "Cc", "Bcc", "Return-Path", "Delivered-To", "DKIM-Signature", "DomainKey-Status",
    "Received-SPF", "Authentication-Results", "Received", "X-Mailjet-Prio", "X-Mailjet-Debug", "User-Agent", "X-Mailer",
    "X-MJ-CustomID", "X-MJ-EventPayload", "X-MJ-Vars", "X-MJ-TemplateErrorDeliver", "X-MJ-TemplateErrorReporting",
    "X-MJ-TemplateLanguage", "X-Mailjet-TrackOpen", "X-Mailjet-TrackClick", "X-MJ-TemplateID", "X-MJ-WorkflowID",
    "X-Feedback-Id", "X-Mailjet-Segmentation", "List-Id", "X-MJ-MID", "X-MJ-ErrorMessage", "Date", "X-CSA-Complaints",
    "Message-Id", "X-Mailjet-Campaign", "X-MJ-StatisticsContactsListID",
]


@pytest.fixture
def account() -> Account:
    return MailjetBackend(BundleConfig(seed=7), Clock(), "http://mj.test", "http://segment.test").default_account


def message(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"From": {"Email": "f@example.com"}, "To": [{"Email": "t@example.com"}], "TextPart": "x"}
    base.update(changes)
    return {key: value for key, value in base.items() if value is not DROP}


def answer(account: Account, sent: dict[str, Any]) -> dict[str, Any]:
    status, body = send(account, {"Messages": [sent]})
    result = body["Messages"][0]
    assert status == (200 if result["Status"] == "success" else 400)
    return result


def errors(account: Account, sent: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(ErrorCode, ErrorRelatedTo) of each error; every error has the documented shape and status 400."""
    result = answer(account, sent)
    assert result["Status"] == "error", result
    for error in result["Errors"]:
        assert set(error) == {"ErrorIdentifier", "ErrorCode", "StatusCode", "ErrorMessage", "ErrorRelatedTo"}
        assert error["StatusCode"] == 400
    return [(error["ErrorCode"], error["ErrorRelatedTo"]) for error in result["Errors"]]


def mismatch(account: Account, sent: dict[str, Any]) -> list[str]:
    """ErrorRelatedTo of the request-level mj-0004 that refuses a batch holding `sent` after a valid
    message: neither is sent."""
    before = len(account.messages)
    with pytest.raises(SendError) as raised:
        send(account, {"Messages": [message(), sent]})
    assert (raised.value.code, raised.value.status) == ("mj-0004", 400)
    assert len(account.messages) == before
    assert raised.value.related is not None
    return raised.value.related


def accepted(account: Account, sent: dict[str, Any]) -> bool:
    return answer(account, sent)["Status"] == "success"


# ---------------------------------------------------------------- mj-0005 value not allowed


@pytest.mark.parametrize("priority", [0, 1, 2, 3])
def test_priority_takes_the_four_documented_levels(account: Account, priority: int) -> None:
    assert accepted(account, message(Priority=priority))


@pytest.mark.parametrize("priority", [4, -1, 100])
def test_priority_outside_the_levels_is_not_allowed(account: Account, priority: int) -> None:
    assert errors(account, message(Priority=priority)) == [("mj-0005", ["Priority"])]


@pytest.mark.parametrize("priority", ["2", 2.5, True, "high"])
def test_priority_that_is_not_an_integer_is_a_type_mismatch(account: Account, priority: Any) -> None:
    assert errors(account, message(Priority=priority)) == [("mj-0004", ["Priority"])]


def test_tracking_values_stay_checked(account: Account) -> None:
    assert accepted(account, message(TrackOpens="enabled", TrackClicks="disabled"))
    assert errors(account, message(TrackOpens="yes", TrackClicks=1)) == [("mj-0005", ["TrackOpens"]), ("mj-0005", ["TrackClicks"])]


def test_tracking_is_kept_on_each_stored_message(account: Account) -> None:
    # The email-events lifecycle reads it: no open without the open pixel, no click without rewritten
    # links. "account_default" (and no value) is the fake account's default, tracking enabled.
    status, _ = send(account, {"Globals": {"TrackOpens": "disabled"}, "Messages": [
        message(Cc=[{"Email": "c@example.com"}]),
        message(To=[{"Email": "own@example.com"}], TrackOpens="enabled", TrackClicks="disabled"),
        message(To=[{"Email": "default@example.com"}], TrackOpens="account_default", TrackClicks="account_default"),
    ]})
    assert status == 200
    assert [(m.recipient["Email"], m.track_opens, m.track_clicks) for m in account.messages] == [
        ("t@example.com", False, True), ("c@example.com", False, True),
        ("own@example.com", True, False), ("default@example.com", True, True),
    ]
    assert {key: account.messages[2].to_json()[key] for key in ("track_opens", "track_clicks")} == {
        "track_opens": True, "track_clicks": False
    }
    send(account, {"Messages": [message(To=[{"Email": "plain@example.com"}])]})
    assert (account.messages[-1].track_opens, account.messages[-1].track_clicks) == (True, True)


# ---------------------------------------------------------------- mj-0006 too long


def test_urltags_up_to_256_characters(account: Account) -> None:
    assert accepted(account, message(URLTags="a" * 256))
    assert errors(account, message(URLTags="a" * 257)) == [("mj-0006", ["URLTags"])]
    assert errors(account, message(URLTags=["utm_source=x"])) == [("mj-0004", ["URLTags"])]


def test_subject_up_to_255_characters(account: Account) -> None:
    assert accepted(account, message(Subject="s" * 255))
    assert errors(account, message(Subject="s" * 256)) == [("mj-0006", ["Subject"])]


# ---------------------------------------------------------------- mj-0007 empty array, To mandatory


def test_an_empty_to_is_an_empty_array(account: Account) -> None:
    assert errors(account, message(To=[], Cc=[{"Email": "c@example.com"}])) == [("mj-0007", ["To"])]


@pytest.mark.parametrize("to", [DROP, None])
def test_to_is_mandatory_even_with_cc_or_bcc(account: Account, to: Any) -> None:
    result = answer(account, message(To=to, Bcc=[{"Email": "b@example.com"}]))
    assert [(e["ErrorCode"], e["ErrorRelatedTo"]) for e in result["Errors"]] == [("mj-0003", ["To"])]
    assert result["Errors"][0]["ErrorMessage"] == "The To is mandatory but missing from the input"  # documented text
    assert account.messages == []


def test_cc_and_bcc_may_be_empty(account: Account) -> None:
    assert accepted(account, message(Cc=[], Bcc=[]))


def test_an_empty_messages_array_too_many_messages_and_missing_messages(account: Account) -> None:
    # The DevGuide's error table relates mj-0007 and mj-0008 to "Messages"; an observed mj-0003
    # about Messages carried "ErrorRelatedTo": ["Messages"] (mailjet-apiv3-java#103).
    too_many = {"Messages": [message()] * 51}
    for body, code in [({"Messages": []}, "mj-0007"), (too_many, "mj-0008"), ({}, "mj-0003")]:
        with pytest.raises(SendError) as raised:
            send(account, body)
        assert raised.value.code == code
        assert raised.value.to_json("id")["ErrorRelatedTo"] == ["Messages"]
    assert raised.value.message == "The Messages is mandatory but missing from the input"


# ---------------------------------------------------------------- mj-0008 too many items


@pytest.mark.parametrize("name", ["Attachments", "InlinedAttachments"])
def test_attachment_lists_hold_at_most_50(account: Account, name: str) -> None:
    assert accepted(account, message(**{name: [ATTACHMENT] * 50}))
    result = answer(account, message(**{name: [ATTACHMENT] * 51}))
    assert [(e["ErrorCode"], e["ErrorRelatedTo"]) for e in result["Errors"]] == [("mj-0008", [name])]
    assert result["Errors"][0]["ErrorMessage"].endswith("Max Allowed item limit is 50.")  # documented words


@pytest.mark.parametrize("name", ["Headers", "Variables"])
def test_headers_and_variables_hold_at_most_50_entries(account: Account, name: str) -> None:
    assert accepted(account, message(**{name: {f"X-Key-{i}": "v" for i in range(50)}}))
    assert errors(account, message(**{name: {f"X-Key-{i}": "v" for i in range(51)}})) == [("mj-0008", [name])]
    assert mismatch(account, message(**{name: ["X-Key: v"]})) == [f"Messages.{name}"]


def test_a_null_variable_is_refused(account: Account) -> None:
    # "mailjet denies null variables: Property value cannot be null." (mailjet-apiv3-php#210; a
    # Mailjet developer in php#80: "You can NOT do: 'Property' => null"); it was sent with a template error.
    result = answer(account, message(TemplateLanguage=True, TextPart="Hi {{var:x}}", Variables={"x": None, "y": "Ada"}))
    assert [(e["ErrorCode"], e["ErrorRelatedTo"], e["ErrorMessage"]) for e in result["Errors"]] == [
        ("mj-0004", ["Variables.x"], "Property value cannot be null.")
    ]
    twice = answer(account, message(TemplateLanguage=True, TextPart="Hi", Variables={"a": None, "b": None}))
    assert [e["ErrorRelatedTo"] for e in twice["Errors"]] == [["Variables.a"], ["Variables.b"]]
    status, body = send(account, {"Globals": {"Variables": {"x": None}}, "Messages": [message()]})
    assert status == 400 and body["Messages"][0]["Errors"][0]["ErrorRelatedTo"] == ["Variables.x"]
    assert accepted(account, message(TemplateLanguage=True, TextPart="Hi {{var:x}}", Variables={"x": ""}))


def test_a_message_printed_past_the_recipient_limit_is_refused_whole(account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    # A variable printed many times once held 50 MB for each recipient of a 100 KB send.
    monkeypatch.setattr(send_module, "MAX_PRINTED_PER_RECIPIENT", 100)
    monkeypatch.setattr(send_module, "MAX_PRINTED_PER_SEND", 10_000)
    to_two = [{"Email": "a@example.com"}, {"Email": "b@example.com"}]
    # A part with nothing to print is kept as sent, one object for all, and counts for nothing.
    at_limit = message(To=to_two, TemplateLanguage=True, Subject="{{var:x}}", TextPart="{{var:x}}" * 9, HTMLPart="H" * 500,
                       Variables={"x": "x" * 10})
    assert accepted(account, at_limit)
    assert [m.text_part for m in account.messages[-2:]] == ["x" * 90] * 2
    before = len(account.messages)
    over = {**at_limit, "TextPart": "{{var:x}}" * 9 + "!"}
    status, body = send(account, {"Messages": [over, message(TextPart="plain")]})
    refused, sent = body["Messages"]
    assert status == 400 and sent["Status"] == "success"
    assert [(e["ErrorCode"], e["ErrorRelatedTo"]) for e in refused["Errors"]] == [("mj-0006", ["TextPart"])]
    assert "may print at most 100 characters for one recipient" in refused["Errors"][0]["ErrorMessage"]
    assert [m.text_part for m in account.messages[before:]] == ["plain"]  # neither recipient of the refused one
    contact_data = message(TemplateLanguage=True, HTMLPart="{{data:city}}" * 21)
    account.create_property({"Name": "city", "DataType": "str"})
    account.set_contact_data(str(account.ensure_contact("t@example.com").id), {"Data": [{"Name": "city", "Value": "Lyon!"}]})
    assert errors(account, contact_data) == [("mj-0006", ["HTMLPart"])]


def test_a_send_printed_past_its_limit_refuses_the_messages_that_pass_it(account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(send_module, "MAX_PRINTED_PER_SEND", 250)
    printed_100 = message(TemplateLanguage=True, TextPart="{{var:x}}" * 10, Variables={"x": "x" * 10})
    before = len(account.messages)
    status, body = send(account, {"Messages": [printed_100, printed_100, printed_100, message(TemplateLanguage=True, TextPart="{{var:x}}", Variables={"x": "y" * 50})]})
    assert status == 400 and [m["Status"] for m in body["Messages"]] == ["success", "success", "error", "success"]
    assert "may print at most 250 characters in one send" in body["Messages"][2]["Errors"][0]["ErrorMessage"]
    assert len(account.messages) == before + 3
    # Without the template language nothing is printed: the parts are kept as sent.
    assert accepted(account, message(TextPart="{{var:x}}" * 100))


def test_a_refused_message_gives_back_what_it_printed_and_unprinted_parts_cost_nothing(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(send_module, "MAX_PRINTED_PER_RECIPIENT", 100)
    monkeypatch.setattr(send_module, "MAX_PRINTED_PER_SEND", 120)
    variables = {"x": "x" * 10}
    # Its Subject prints 50 before its TextPart passes the recipient's 100: refused, and the 50 are
    # the send's again, so the next message's 90 fit in the send's 120.
    printed_then_refused = message(TemplateLanguage=True, Subject="{{var:x}}" * 5, TextPart="{{var:x}}" * 11, Variables=variables)
    fits_after = message(TemplateLanguage=True, TextPart="{{var:x}}" * 9, Variables=variables)
    status, body = send(account, {"Messages": [printed_then_refused, fits_after]})
    assert [m["Status"] for m in body["Messages"]] == ["error", "success"]
    # Parts with nothing to print are shared by every recipient and count for nothing: three
    # messages of 200 unprinted characters and 10 printed ones fit in the send's 120.
    unprinted = message(TemplateLanguage=True, Subject="{{var:x}}", HTMLPart="H" * 200, Variables=variables)
    status, body = send(account, {"Messages": [unprinted] * 3})
    assert status == 200, body


def test_url_tags_are_added_once_to_a_part_every_recipient_shares(account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tagged again for each recipient, a 5 MB part sent to 50 took 14 s of the servers' one loop.
    calls: list[str] = []
    tag = send_module.with_url_tags
    monkeypatch.setattr(send_module, "with_url_tags", lambda part, tags: calls.append(part) or tag(part, tags))
    many = [{"Email": f"r{n}@example.com"} for n in range(3)]
    assert accepted(account, message(To=many, HTMLPart='<a href="https://example.com/">x</a>', URLTags="utm_source=mj"))
    assert len(calls) == 1
    assert {m.html_part for m in account.messages[-3:]} == {'<a href="https://example.com/?utm_source=mj">x</a>'}


def test_attachments_must_be_an_array_of_objects(account: Account) -> None:
    assert mismatch(account, message(Attachments=ATTACHMENT)) == ["Messages.Attachments"]
    assert mismatch(account, message(Attachments=["a.txt"])) == ["Messages.Attachments"]


# ---------------------------------------------------------------- mj-0012 empty string


@pytest.mark.parametrize("name", ["Attachments", "InlinedAttachments"])
@pytest.mark.parametrize("field", ["ContentType", "Filename", "Base64Content"])
def test_attachment_fields_may_not_be_empty(account: Account, name: str, field: str) -> None:
    where = f"{name}[1].{field}"
    assert errors(account, message(**{name: [ATTACHMENT, {**ATTACHMENT, field: ""}]})) == [("mj-0012", [where])]
    assert errors(account, message(**{name: [ATTACHMENT, {**ATTACHMENT, field: 7}]})) == [("mj-0004", [where])]
    missing = {key: value for key, value in ATTACHMENT.items() if key != field}
    assert errors(account, message(**{name: [ATTACHMENT, missing]})) == [("mj-0003", [where])]


def test_attachment_field_names_are_case_insensitive(account: Account) -> None:
    # The error table writes "FileName"; §6 and the clients write "Filename".
    assert accepted(account, message(Attachments=[{"ContentType": "text/plain", "FileName": "a.txt", "Base64Content": "aGk="}]))


def test_an_empty_email_stays_mj_0012(account: Account) -> None:
    assert errors(account, message(To=[{"Email": ""}])) == [("mj-0012", ["To[0].Email"])]


# ---------------------------------------------------------------- send-0011 forbidden header


def test_the_forbidden_list_is_the_documented_one() -> None:
    assert FORBIDDEN_HEADERS == {name.lower() for name in DOCUMENTED_FORBIDDEN}


@pytest.mark.parametrize("header", DOCUMENTED_FORBIDDEN + ["x-mj-customid", "MESSAGE-ID"])
def test_a_forbidden_header_is_refused(account: Account, header: str) -> None:
    assert errors(account, message(Headers={"X-My-Header": "ok", header: "v"})) == [("send-0011", [f'Headers["{header}"]'])]


# A header name is ASCII (RFC 5322 §2.2): one spelled with a KELVIN SIGN, which Python lower-cases
# to "k", is no forbidden name (the contract's any-case pattern agrees).
@pytest.mark.parametrize("header", ["X-My-header", "Reply-To", "X-Mailjet-Campaign-Name", "List-Unsubscribe", "Domain\u212aey-Status"])
def test_other_headers_are_sent(account: Account, header: str) -> None:
    assert accepted(account, message(Headers={header: "X2332X-324-432-534"}))


# ---------------------------------------------------------------- send-0016 TemplateLanguage missing


@pytest.mark.parametrize("option", [{"TemplateErrorReporting": {"Email": "dev@example.com"}}, {"TemplateErrorDeliver": True}])
def test_template_error_options_need_template_language(account: Account, option: dict[str, Any]) -> None:
    assert errors(account, message(**option)) == [("send-0016", ["TemplateLanguage"])]
    assert errors(account, message(**option, TemplateLanguage=None)) == [("send-0016", ["TemplateLanguage"])]
    assert accepted(account, message(**option, TemplateLanguage=True))


def test_template_language_alone_is_fine(account: Account) -> None:
    assert accepted(account, message(TemplateLanguage=True, Variables={"day": "Monday"}))


# ---------------------------------------------------------------- send-0012 related properties


def test_deduplicate_campaign_relates_to_both_properties(account: Account) -> None:
    assert errors(account, message(DeduplicateCampaign=True)) == [("send-0012", ["CustomCampaign", "DeduplicateCampaign"])]
    assert accepted(account, message(DeduplicateCampaign=True, CustomCampaign="welcome"))


def test_deduplicate_campaign_is_kept_on_each_stored_message(account: Account) -> None:
    # The email-events lifecycle reads it to block a second email of a campaign to one contact.
    status, _ = send(account, {"Globals": {"DeduplicateCampaign": True, "CustomCampaign": "welcome"},
                               "Messages": [message(Cc=[{"Email": "c@example.com"}]), message(DeduplicateCampaign=False)]})
    assert status == 200
    assert [(m.recipient["Email"], m.deduplicate_campaign) for m in account.messages] == [
        ("t@example.com", True), ("c@example.com", True), ("t@example.com", False)
    ]
    assert account.messages[0].to_json()["DeduplicateCampaign"] is True


def test_a_message_can_fail_several_rules_at_once_and_others_still_go(account: Account) -> None:
    bad = message(To=[], Priority=9, URLTags="u" * 300, Headers={"From": "x"}, TemplateErrorDeliver=True,
                  Attachments=[{**ATTACHMENT, "Base64Content": ""}])
    status, body = send(account, {"Messages": [bad, message()]})
    assert status == 400 and body["Messages"][1]["Status"] == "success"  # sent, though the answer is a 400
    codes = [error["ErrorCode"] for error in body["Messages"][0]["Errors"]]
    assert codes == ["mj-0007", "mj-0006", "mj-0005", "send-0016", "mj-0012", "send-0011"]
    assert body["Messages"][1]["Status"] == "success" and len(account.messages) == 1


# ---------------------------------------------------------------- Globals


def test_a_message_property_wins_over_globals_whatever_the_key_case(account: Account) -> None:
    # Keys are case-insensitive: a message's "Subject" must win over Globals' "subject", as over "Subject".
    for global_key in ("Subject", "subject", "SUBJECT"):
        status, body = send(account, {"Globals": {global_key: "global", "customid": "g"}, "Messages": [message(Subject="own", CustomID="m")]})
        assert status == 200 and body["Messages"][0]["CustomID"] == "m"
        assert account.messages[-1].subject == "own" and account.messages[-1].custom_id == "m"
    status, body = send(account, {"Globals": {"subject": "global"}, "Messages": [message()]})
    assert status == 200 and account.messages[-1].subject == "global"


# The DevGuide's "Set global payload properties": "In Globals you can specify values for all message
# properties, except To"; object properties (From, Sender, ReplyTo, TemplateErrorReporting, Headers,
# Variables) are merged with the message's, its keys winning; arrays (Cc, Bcc, Attachments,
# InlinedAttachments) are appended; strings, integers and booleans are replaced.


def test_globals_objects_are_merged_with_the_message_keys_winning(account: Account) -> None:
    globals_ = {"From": {"Email": "pilot@example.com", "Name": "Pilot"}}
    status, _ = send(account, {"Globals": globals_, "Messages": [message(From={"name": "Copilot"})]})
    assert status == 200
    assert account.messages[-1].sender == {"Email": "pilot@example.com", "Name": "Copilot"}
    # 30 global and 30 own variables, 10 of them shared: 50 after the merge, 51 with one more.
    shared = {f"v{i}": "g" for i in range(30)}
    own = {f"v{i}": "m" for i in range(20, 50)}
    status, _ = send(account, {"Globals": {"Variables": shared}, "Messages": [message(Variables=own)]})
    assert status == 200
    status, body = send(account, {"Globals": {"Variables": shared}, "Messages": [message(Variables={**own, "v50": "m"})]})
    assert status == 400 and [e["ErrorCode"] for e in body["Messages"][0]["Errors"]] == ["mj-0008"]
    # Headers merge as header names compare: case-insensitively.
    headers = {f"X-H{i}": "g" for i in range(30)}
    status, _ = send(account, {"Globals": {"Headers": headers}, "Messages": [message(Headers={f"x-h{i}": "m" for i in range(30)})]})
    assert status == 200


def test_globals_arrays_are_appended_before_the_message_items(account: Account) -> None:
    globals_ = {"Bcc": [{"Email": "archive@example.com"}], "Attachments": [ATTACHMENT] * 25}
    own = message(Bcc=[{"Email": "b@example.com"}], Attachments=[ATTACHMENT] * 25)
    status, body = send(account, {"Globals": globals_, "Messages": [own]})
    assert status == 200
    assert [r["Email"] for r in body["Messages"][0]["Bcc"]] == ["archive@example.com", "b@example.com"]
    assert [(m.recipient["Email"], m.recipient_type) for m in account.messages] == [
        ("t@example.com", "To"), ("archive@example.com", "Bcc"), ("b@example.com", "Bcc")]
    status, body = send(account, {"Globals": globals_, "Messages": [message(Attachments=[ATTACHMENT] * 26)]})
    assert status == 400 and [e["ErrorRelatedTo"] for e in body["Messages"][0]["Errors"]] == [["Attachments"]]


def test_globals_never_give_a_message_its_to(account: Account) -> None:
    globals_ = {"To": [{"Email": "everyone@example.com"}]}
    status, body = send(account, {"Globals": globals_, "Messages": [message(To=DROP), message()]})
    assert status == 400
    assert [(e["ErrorCode"], e["ErrorRelatedTo"]) for e in body["Messages"][0]["Errors"]] == [("mj-0003", ["To"])]
    assert [r["Email"] for r in body["Messages"][1]["To"]] == ["t@example.com"]
    assert [m.recipient["Email"] for m in account.messages] == ["t@example.com"]


@pytest.mark.parametrize("globals_", [[], "", 0, False, [{"Subject": "s"}]])
def test_globals_that_are_not_an_object_are_a_type_mismatch(account: Account, globals_: Any) -> None:
    with pytest.raises(SendError) as raised:
        send(account, {"Globals": globals_, "Messages": [message()]})
    assert raised.value.code == "mj-0004"
    assert account.messages == []


# ---------------------------------------------------------------- other addresses and flags


@pytest.mark.parametrize("name", ["ReplyTo", "Sender", "TemplateErrorReporting"])
def test_other_address_properties_are_checked_as_from_is(account: Account, name: str) -> None:
    extra = {"TemplateLanguage": True} if name == "TemplateErrorReporting" else {}
    assert accepted(account, message(**{name: {"Email": "r@example.com", "Name": "R"}}, **extra))
    assert mismatch(account, message(**{name: "r@example.com"}, **extra)) == [f"Messages.{name}"]
    assert errors(account, message(**{name: {"Email": "nope"}}, **extra)) == [("mj-0013", [f"{name}.Email"])]
    assert errors(account, message(**{name: {"Email": ""}}, **extra)) == [("mj-0012", [f"{name}.Email"])]
    assert errors(account, message(**{name: {"Name": "R"}}, **extra)) == [("mj-0003", [f"{name}.Email"])]


@pytest.mark.parametrize("name", ["DeduplicateCampaign", "TemplateLanguage", "TemplateErrorDeliver"])
@pytest.mark.parametrize("value", ["false", "true", 1, 0])
def test_boolean_properties_must_be_booleans(account: Account, name: str, value: Any) -> None:
    extra = {"CustomCampaign": "c", "TemplateLanguage": True}
    extra.pop(name, None)
    assert errors(account, message(**{name: value}, **extra)) == [("mj-0004", [name])]
    assert accepted(account, message(**{name: False}, **extra))


def test_monitoring_category_is_a_string(account: Account) -> None:
    assert accepted(account, message(MonitoringCategory="orders"))
    assert errors(account, message(MonitoringCategory=7)) == [("mj-0004", ["MonitoringCategory"])]


# ---------------------------------------------------------------- request level, content, recipients


def test_messages_hold_at_most_50(account: Account) -> None:
    status, body = send(account, {"Messages": [message()] * 50})
    assert status == 200 and len(body["Messages"]) == 50 and len(account.messages) == 50
    with pytest.raises(SendError) as raised:
        send(account, {"Messages": [message()] * 51})
    assert raised.value.code == "mj-0008" and raised.value.message.endswith("Max Allowed item limit is 50.")
    assert len(account.messages) == 50


def test_each_recipient_gets_its_own_message_id_and_uuid(account: Account) -> None:
    # Documented: one MessageID and MessageUUID per To, Cc and Bcc address; events attach to the ID.
    sent = message(To=[{"Email": "t1@example.com"}, {"Email": "t2@example.com"}], Cc=[{"Email": "c@example.com"}],
                   Bcc=[{"Email": "b@example.com"}])
    result = answer(account, sent)
    recipients = [(kind, entry) for kind in ("To", "Cc", "Bcc") for entry in result[kind]]
    assert [entry["Email"] for _, entry in recipients] == ["t1@example.com", "t2@example.com", "c@example.com", "b@example.com"]
    assert len({entry["MessageID"] for _, entry in recipients}) == len({entry["MessageUUID"] for _, entry in recipients}) == 4
    stored = {m.message_id: m for m in account.messages}
    for kind, entry in recipients:
        message_of = stored[entry["MessageID"]]
        assert (message_of.recipient["Email"], message_of.recipient_type, message_of.message_uuid) == (
            entry["Email"], kind, entry["MessageUUID"])


@pytest.mark.parametrize("sandbox", ["true", 1])
def test_sandbox_mode_must_be_a_boolean(account: Account, sandbox: Any) -> None:
    with pytest.raises(SendError) as raised:
        send(account, {"SandboxMode": sandbox, "Messages": [message()]})
    assert raised.value.code == "mj-0004"
    assert account.messages == [] and account.contacts == {}


def test_sandbox_answers_id_0_and_an_empty_uuid_and_creates_no_contact(account: Account) -> None:
    # Documented: the normal shape, "MessageUUID": "" and "MessageID": 0; nothing is delivered.
    status, body = send(account, {"SandboxMode": True, "Messages": [message()]})
    assert status == 200
    sent = body["Messages"][0]["To"][0]
    assert (sent["MessageID"], sent["MessageUUID"]) == (0, "")
    assert sent["MessageHref"].endswith("/v3/REST/message/0")
    assert account.contacts == {} and account.messages[0].status == "sandbox"


def test_a_global_error_has_the_documented_shape() -> None:
    # reference §6: {"ErrorIdentifier", "ErrorCode", "ErrorMessage", "StatusCode"}.
    body = SendError("mj-0002", "Malformed JSON, please review the syntax and properties types.").to_json("id-1")
    assert body == {"ErrorIdentifier": "id-1", "ErrorCode": "mj-0002",
                    "ErrorMessage": "Malformed JSON, please review the syntax and properties types.", "StatusCode": 400}
    assert SendError(None, "Method not allowed", 405).to_json("id-2") == {
        "ErrorIdentifier": "id-2", "ErrorMessage": "Method not allowed", "StatusCode": 405}


def test_from_is_mandatory(account: Account) -> None:
    assert errors(account, message(From=DROP)) == [("mj-0003", ["From"])]
    assert errors(account, message(From=None)) == [("mj-0003", ["From"])]


def test_a_template_id_is_never_accessible_and_needs_no_from_nor_parts(account: Account) -> None:
    # Templates are not emulated (send-0010); a template may define the sender and the parts (documented).
    assert errors(account, message(From=DROP, TextPart=DROP, TemplateID=4242)) == [("send-0010", ["TemplateID"])]


@pytest.mark.parametrize("part", [DROP, None, ""])
def test_a_message_needs_a_text_or_html_part(account: Account, part: Any) -> None:
    assert errors(account, message(TextPart=part)) == [("send-0003", ["HTMLPart", "TextPart"])]
    assert accepted(account, message(TextPart=part, HTMLPart="<p>x</p>"))


@pytest.mark.parametrize("name", ["Subject", "TextPart", "HTMLPart", "CustomID", "CustomCampaign", "URLTags", "MonitoringCategory"])
def test_string_properties_must_be_strings(account: Account, name: str) -> None:
    assert errors(account, message(**{name: 7})) == [("mj-0004", [name])]


def test_event_payload_is_a_string_or_an_object_kept_as_json(account: Account) -> None:
    assert errors(account, message(EventPayload=7)) == [("mj-0004", ["EventPayload"])]
    assert errors(account, message(EventPayload=["a"])) == [("mj-0004", ["EventPayload"])]
    assert accepted(account, message(EventPayload="row,15"))
    assert accepted(account, message(EventPayload={"seat": "B", "row": 15}))
    # Webhooks carry it back as the `Payload` string.
    assert [m.event_payload for m in account.messages] == ["row,15", '{"seat":"B","row":15}']


def test_template_language_false_satisfies_template_error_options(account: Account) -> None:
    # GUESS (README): only a missing TemplateLanguage counts for send-0016.
    assert accepted(account, message(TemplateErrorDeliver=True, TemplateLanguage=False))


def test_to_cc_and_bcc_hold_50_addresses_in_all(account: Account) -> None:
    def people(kind: str, count: int) -> list[dict[str, str]]:
        return [{"Email": f"{kind}{i}@example.com"} for i in range(count)]

    assert accepted(account, message(To=people("t", 17), Cc=people("c", 17), Bcc=people("b", 16)))
    assert errors(account, message(To=people("t", 17), Cc=people("c", 17), Bcc=people("b", 17))) == [
        ("send-0015", ["To", "Cc", "Bcc"])
    ]
    assert errors(account, message(To=people("t", 51))) == [("send-0015", ["To", "Cc", "Bcc"])]


def test_a_recipient_given_twice_counts_once_toward_the_50(account: Account) -> None:
    # DevGuide message properties: "If a recipient is specified twice (in the to, cc, or bcc), it is
    # counted only once" (api-documentation guides/_send-api.md, To and Cc/Bcc rows).
    people = [{"Email": f"p{i}@example.com"} for i in range(30)]
    shouted = [{"Email": f"P{i}@EXAMPLE.COM"} for i in range(20)]  # GUESS: the same address in any case
    assert accepted(account, message(To=people, Cc=people, Bcc=shouted))
    assert errors(account, message(To=people, Cc=people + [{"Email": f"n{i}@example.com"} for i in range(21)])) == [
        ("send-0015", ["To", "Cc", "Bcc"])
    ]


def test_an_address_longer_than_rest_keeps_is_refused_at_once(account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    # REST v3 keeps Email to 255 characters (models.MAX_STRING_LENGTH); a send must not create a
    # contact REST could not hold, nor run the address pattern (whose backtracking is quadratic on
    # a long dotted string) over an address of any size.
    local = "x" * 243
    assert len(f"{local}@example.com") == 255 and accepted(account, message(To=[{"Email": f"{local}@example.com"}]))
    assert errors(account, message(To=[{"Email": f"{local}@example.co.uk"}])) == [("mj-0013", ["To[0].Email"])]
    matched: list[int] = []

    class OnlyShortAddresses:
        @staticmethod
        def fullmatch(text: str) -> re.Match[str] | None:
            matched.append(len(text))
            return EMAIL_PATTERN.fullmatch(text) if len(text) <= MAX_STRING_LENGTH else None

    monkeypatch.setattr(send_module, "EMAIL_PATTERN", OnlyShortAddresses)
    assert errors(account, message(From={"Email": "a@" + "b." * 60_000 + " "})) == [("mj-0013", ["From.Email"])]
    assert all(length <= MAX_STRING_LENGTH for length in matched)
    assert [contact.email for contact in account.contacts.values()] == [f"{local}@example.com"]


def test_a_recipient_name_must_be_a_string(account: Account) -> None:
    assert errors(account, message(To=[{"Email": "t@example.com", "Name": 7}])) == [("mj-0004", ["To[0].Name"])]
    assert errors(account, message(Cc=[{"Email": "c@example.com", "Name": ["C"]}])) == [("mj-0004", ["Cc[0].Name"])]


def test_a_send_creates_each_unknown_recipient_as_a_contact_with_its_name(account: Account) -> None:
    status, body = send(account, {"Messages": [message(To=[{"Email": "ada@example.com", "Name": "Ada"}], Bcc=[{"Email": "b@example.com"}])]})
    assert status == 200
    contacts = {contact.email: contact for contact in account.contacts.values()}
    assert (contacts["ada@example.com"].name, contacts["b@example.com"].name) == ("Ada", "")
    assert [m.contact_id for m in account.messages] == [contacts["ada@example.com"].id, contacts["b@example.com"].id]


@pytest.mark.parametrize("body", [[], "Messages", 7, None])
def test_a_body_that_is_no_object_is_malformed_json(account: Account, body: Any) -> None:
    with pytest.raises(SendError) as raised:
        send(account, body)
    assert (raised.value.code, raised.value.status) == ("mj-0002", 400)


@pytest.mark.parametrize("raw", [b"", b"  ", b"{", b'{"Messages": NaN}', b"\xff"])
def test_a_body_that_is_no_json_is_malformed_json(raw: bytes) -> None:
    with pytest.raises(SendError) as raised:
        read_send_body(raw)
    assert (raised.value.code, raised.value.status) == ("mj-0002", 400)


def test_a_send_body_is_read_whatever_its_type() -> None:
    # `send` refuses what is no object, in its own words.
    assert read_send_body(b'{"Messages": []}') == {"Messages": []}
    assert read_send_body(b"[1]") == [1]


def test_the_success_shape_lists_to_cc_and_bcc_even_empty(account: Account) -> None:
    # Documented sample: {"Status": "success", "CustomID": "", "To": [...], "Cc": [], "Bcc": []}.
    status, body = send(account, {"Messages": [message()]})
    assert status == 200
    result = body["Messages"][0]
    assert set(result) == {"Status", "CustomID", "To", "Cc", "Bcc"} and (result["Cc"], result["Bcc"]) == ([], [])
    assert set(result["To"][0]) == {"Email", "MessageUUID", "MessageID", "MessageHref"}
    stored = account.messages[0].to_json()
    assert stored["created_at"] and stored["MessageID"] == result["To"][0]["MessageID"]


def test_globals_merge_every_documented_object_and_append_every_documented_array(account: Account) -> None:
    globals_ = {
        "ReplyTo": {"Email": "support@example.com", "Name": "Support"},
        "Sender": {"Email": "sender@example.com"},
        "Cc": [{"Email": "cc-global@example.com"}],
        "InlinedAttachments": [ATTACHMENT] * 30,
    }
    # Merged: a ReplyTo with only a Name keeps the global Email; appended: 30 + 21 inlined is 51.
    own = message(ReplyTo={"Name": "Help"}, Sender={"Name": "S"}, Cc=[{"Email": "cc@example.com"}], InlinedAttachments=[ATTACHMENT] * 21)
    status, body = send(account, {"Globals": globals_, "Messages": [own]})
    assert status == 400
    assert [(e["ErrorCode"], e["ErrorRelatedTo"]) for e in body["Messages"][0]["Errors"]] == [("mj-0008", ["InlinedAttachments"])]
    own["InlinedAttachments"] = [ATTACHMENT] * 20
    status, body = send(account, {"Globals": globals_, "Messages": [own]})
    assert status == 200
    assert [r["Email"] for r in body["Messages"][0]["Cc"]] == ["cc-global@example.com", "cc@example.com"]


def test_a_message_that_is_not_an_object_refuses_the_whole_request(account: Account) -> None:
    assert mismatch(account, "hello") == ["Messages"]


def test_a_type_mismatch_is_a_request_level_error_as_users_saw_it(account: Account) -> None:
    # mailjet-apiv3-php#237: From given as an array of addresses; the whole request was refused with
    # a flat body, and the valid messages around it were not sent.
    with pytest.raises(SendError) as raised:
        send(account, {"Messages": [message(), message(From=[{"Email": "f@example.com"}], To=[{"Email": "x@example.com"}])]})
    body = raised.value.to_json("id")
    assert body == {"ErrorIdentifier": "id", "ErrorCode": "mj-0004", "ErrorMessage": 'Type mismatch. Expected type "emailIn".',
                    "StatusCode": 400, "ErrorRelatedTo": ["Messages.From"]}
    assert account.messages == [] and account.contacts == {}


def test_a_wrongly_typed_scalar_fails_its_message_only_as_users_saw_it(account: Account) -> None:
    # api-documentation#8: a string TemplateID was refused in its message, "Expected type \"integer\"".
    status, body = send(account, {"Messages": [message(), message(TemplateID="123", TemplateLanguage=True)]})
    sent, refused = body["Messages"]
    assert status == 400 and sent["Status"] == "success"
    assert [(e["ErrorCode"], e["ErrorMessage"], e["ErrorRelatedTo"]) for e in refused["Errors"]] == [
        ("mj-0004", 'Type mismatch. Expected type "integer".', ["TemplateID"])
    ]
    assert len(account.messages) == 1


@pytest.mark.parametrize(("globals_", "related"), [
    ({"From": "shop@example.com"}, "Globals.From"),
    ({"Cc": "cc@example.com"}, "Globals.Cc"),
    ({"Headers": ["X-Key: v"]}, "Globals.Headers"),
    ({"Attachments": [ATTACHMENT, "a.txt"]}, "Globals.Attachments"),
])
def test_a_structure_globals_cannot_hold_refuses_the_request_naming_globals(
    account: Account, globals_: dict[str, Any], related: str
) -> None:
    # Checked only after the merge, it was blamed on the messages, or not seen when they had their own.
    with pytest.raises(SendError) as raised:
        send(account, {"Globals": globals_, "Messages": [message(From={"Email": "f@example.com"}, Cc=[], Headers={})]})
    assert (raised.value.code, raised.value.related) == ("mj-0004", [related])
    assert account.messages == []


@pytest.mark.parametrize("kind", ["To", "Cc", "Bcc"])
def test_recipients_that_are_not_an_array_are_a_type_mismatch(account: Account, kind: str) -> None:
    assert mismatch(account, message(**{kind: {"Email": "t@example.com"}})) == [f"Messages.{kind}"]
    assert account.messages == []


def test_entries_without_an_address_count_toward_the_50(account: Account) -> None:
    # Each is refused on its own too; counted, 50 addresses and one such entry are too many.
    people = [{"Email": f"p{i}@example.com"} for i in range(50)]
    assert errors(account, message(To=people + [{"Name": "nobody"}])) == [
        ("mj-0003", ["To[50].Email"]), ("send-0015", ["To", "Cc", "Bcc"])
    ]
