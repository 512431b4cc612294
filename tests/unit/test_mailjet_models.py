"""The fake Mailjet's rules, on the model directly (no HTTP)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from emulator.common.clock import Clock
from emulator.config import BundleConfig
from emulator.mailjet.models import (
    EMAIL_PATTERN,
    JOB_DURATION,
    Account,
    MailjetBackend,
    MailjetError,
    Query,
    body_too_large,
    coerce_property,
    mj_time,
    paginate,
    read_id,
    read_rest_body,
)
from emulator.mailjet.send import SendError, send
from emulator.mailjet.service import AccountError, MailjetService


@pytest.fixture
def backend() -> MailjetBackend:
    return MailjetBackend(BundleConfig(seed=7), Clock(), "http://mj.test", "http://segment.test")


@pytest.fixture
def account(backend: MailjetBackend) -> Account:
    return backend.default_account


def error_of(call, *args) -> MailjetError:
    with pytest.raises(MailjetError) as raised:
        call(*args)
    return raised.value


def test_authentication_is_by_key_and_secret(backend: MailjetBackend) -> None:
    config = backend.config
    assert backend.authenticate(config.mailjet_api_key, config.mailjet_secret_key) is backend.default_account
    assert backend.authenticate(config.mailjet_api_key, "wrong") is None
    assert backend.authenticate("other", config.mailjet_secret_key) is None


def test_fresh_account_and_reset(backend: MailjetBackend, account: Account) -> None:
    assert list(account.lists) == [1] and account.lists[1].name == "segjet"
    account.create_contact({"Email": "a@example.com"})
    backend.reset()
    assert backend.default_account.contacts == {} and list(backend.default_account.lists) == [1]


def test_contact_rules(account: Account) -> None:
    contact = account.create_contact({"email": "A@Example.com", "NAME": "A"})
    assert account.find_contact("a@example.com") is contact and account.find_contact(str(contact.id)) is contact
    duplicate = error_of(account.create_contact, {"Email": "a@example.com"})
    assert duplicate.to_json() == {"ErrorInfo": "", "ErrorMessage": 'MJ18 A Contact resource with value "a@example.com" for Email already exists.', "StatusCode": 400}
    assert error_of(account.create_contact, {"Email": "nope"}).message == "Object properties invalid"
    assert error_of(account.create_contact, {}).info == "MJ08 Property Email is invalid: MJ03 A non-empty value is required"
    assert "has no property" in error_of(account.create_contact, {"Email": "b@example.com", "firstname": "B"}).message
    assert "MJ04" in error_of(account.create_contact, {"Email": "b@example.com", "Name": "x" * 256}).info
    assert account.update_contact(str(contact.id), {"Name": "A"}) == (contact, False)
    assert account.update_contact(str(contact.id), {"IsExcludedFromCampaigns": "true"})[1] is True
    assert "MJ19" in error_of(account.update_contact, str(contact.id), {"CreatedAt": "x"}).message
    assert error_of(account.get_contact, "999").status == 404


@pytest.mark.parametrize(
    ("datatype", "value", "stored"),
    [("str", "x", "x"), ("str", 5, "5"), ("int", 42, "42"), ("int", "42", "42"), ("int", 4.0, "4"), ("int", "-3", "-3"), ("float", 1.5, "1.5"), ("float", "2", "2.0"),
     ("bool", True, "true"), ("bool", "False", "false"), ("datetime", 0, "1970-01-01T00:00:00Z"),
     ("datetime", "2018-01-01T00:00:00", "2018-01-01T00:00:00Z"), ("int", None, None), ("str", True, "true")],
)
def test_property_values_are_stored_as_strings(datatype: str, value: object, stored: str | None) -> None:
    assert coerce_property(datatype, value) == stored


@pytest.mark.parametrize(("datatype", "value"), [("int", "4.5"), ("int", 4.5), ("int", "+5"), ("int", True), ("float", "abc"),
                                                 ("bool", "yes"), ("bool", 1), ("bool", "1"), ("bool", "0"),
                                                 ("datetime", "tomorrow"), ("str", {"a": 1}),
                                                 ("float", "nan"), ("str", "x" * 256), ("float", True), ("datetime", False),
                                                 ("datetime", 10**20)])
def test_property_type_mismatches(datatype: str, value: object) -> None:
    with pytest.raises(ValueError):
        coerce_property(datatype, value)


def test_managecontact_actions_and_properties(account: Account) -> None:
    account.create_property({"Name": "age", "Datatype": "int"})
    result = account.manage_contact("1", {"Email": "m@example.com", "Action": "addnoforce", "Properties": {"AGE": "7"}})
    contact = account.get_contact("m@example.com")
    assert result["ContactID"] == contact.id and contact.properties == {"age": "7"}
    account.manage_contact("1", {"Email": "m@example.com", "Name": "M", "Action": "addnoforce"})
    assert contact.name == "M"  # an existing contact's Name is updated
    account.manage_contact("1", {"Email": "m@example.com", "Action": "unsub"})
    assert account.find_recipient(contact.id, 1).is_unsubscribed is True
    account.manage_contact("1", {"Email": "m@example.com", "Action": "addnoforce"})
    assert account.find_recipient(contact.id, 1).is_unsubscribed is True  # addnoforce keeps the unsub status
    account.manage_contact("1", {"Email": "m@example.com", "Action": "addforce"})
    assert account.find_recipient(contact.id, 1).is_unsubscribed is False
    account.manage_contact("1", {"Email": "m@example.com", "Action": "remove"})
    assert account.find_recipient(contact.id, 1) is None
    problems = error_of(account.manage_contact, "1", {"Email": "m@example.com", "Action": "addforce", "Properties": {"x": 1, "age": "old"}})
    assert problems.info == {"Properties": [{"x": "Property not defined"}, {"age": "Property type does not match definition"}]}
    assert error_of(account.manage_contact, "1", {"Email": "m@example.com"}).info.startswith("MJ08 Property Action is invalid")
    assert error_of(account.manage_contact, "9", {"Email": "m@example.com", "Action": "addforce"}).status == 404
    assert error_of(account.manage_contact, "1", {"Email": "m@example.com", "Action": "addforce", "Properties": "{}"}).status == 400


def test_subscriptions_read_by_list_and_by_contact_agree_after_every_change(account: Account) -> None:
    second = account.create_list({"Name": "second"}).id
    ann, bob = (account.ensure_contact(email) for email in ("ann@example.com", "bob@example.com"))
    for contact, list_id, action in ((ann, second, "addforce"), (ann, 1, "addforce"), (bob, 1, "addforce"), (bob, second, "unsub")):
        account.apply_action(contact, list_id, action)

    def lists_of(contact_id: int) -> list[tuple[int, bool]]:
        return [(row["ListID"], row["IsUnsub"]) for row in account.get_contacts_lists(str(contact_id))]

    def members(list_id: int) -> list[int]:
        return [r.contact_id for r in account.list_recipients(Query.parse([("ContactsList", str(list_id))]))]

    assert lists_of(ann.id) == [(second, False), (1, False)]  # in subscription order, not list order
    assert lists_of(bob.id) == [(1, False), (second, True)]
    assert members(second) == [ann.id, bob.id]
    assert account.list_json(account.lists[second])["SubscriberCount"] == 1  # bob unsubscribed
    assert [r.list_id for r in account.list_recipients(Query.parse([("Contact", str(ann.id)), ("ContactsList", "1")]))] == [1]
    assert [c.email for c in account.list_contacts(Query.parse([("ContactsList", str(second))]))] == ["ann@example.com", "bob@example.com"]

    account.apply_action(ann, second, "remove")
    assert lists_of(ann.id) == [(1, False)] and members(second) == [bob.id]
    account.delete_list(str(second))
    assert lists_of(bob.id) == [(1, False)] and members(second) == []
    assert [c.email for c in account.list_contacts(Query.parse([("ContactsList", str(second))]))] == []

    restored = MailjetBackend(BundleConfig(seed=7), Clock(), "http://mj.test", "http://segment.test").default_account
    restored.restore(
        contacts=list(account.contacts.values()), lists=list(account.lists.values()),
        recipients=list(account.recipients.values()), properties=[], callbacks=[], jobs=[], messages=[],
        next_ids=account.next_ids, app_connection=account.app_connection,
    )
    assert [row["ListID"] for row in restored.get_contacts_lists("bob@example.com")] == [1]
    assert restored.find_recipient(ann.id, 1) is not None and restored.find_recipient(ann.id, second) is None
    assert restored.list_json(restored.lists[1])["SubscriberCount"] == 2


def test_contactdata_merges_and_rejects_undefined_keys(account: Account) -> None:
    account.create_property({"Name": "first", "Datatype": "str"})
    account.create_property({"Name": "last", "Datatype": "str"})
    account.create_contact({"Email": "d@example.com"})
    account.set_contact_data("d@example.com", {"Data": [{"Name": "first", "Value": "D"}]})
    contact, changed = account.set_contact_data("d@example.com", {"Data": [{"Name": "last", "Value": "E"}]})
    assert changed and account.contact_data_json(contact)["Data"] == [{"Name": "first", "Value": "D"}, {"Name": "last", "Value": "E"}]
    assert account.set_contact_data("d@example.com", {"Data": [{"Name": "last", "Value": "E"}]})[1] is False
    assert error_of(account.set_contact_data, "d@example.com", {"Data": [{"Name": "nope", "Value": 1}]}).message == 'Invalid key name: "nope"'


@pytest.mark.parametrize("entry", [{"Name": "first", "Valeu": "x"}, {"Name": "first"}, {"Name": "first", "Value": "x", "Extra": 1}])
def test_a_contactdata_entry_is_its_name_and_value_only(account: Account, entry: dict[str, Any]) -> None:
    # A misspelt or missing Value unassigned the property with 200, as an explicit null does.
    account.create_property({"Name": "first", "Datatype": "str"})
    account.create_contact({"Email": "d@example.com"})
    contact, _ = account.set_contact_data("d@example.com", {"Data": [{"Name": "first", "Value": "D"}]})
    refused = error_of(account.set_contact_data, "d@example.com", {"Data": [entry]})
    assert refused.status == 400
    if "Extra" in entry:  # observed text (php-simple#83)
        assert refused.message == 'Invalid json input: object ".Data..item"->"TKeyValue" has no property "Extra"'
    assert account.contact_data_json(contact)["Data"] == [{"Name": "first", "Value": "D"}]
    account.set_contact_data("d@example.com", {"Data": [{"name": "first", "value": None}]})  # keys in any case; null unassigns
    assert account.contact_data_json(contact)["Data"] == []


def test_a_property_value_is_read_by_its_name_in_any_case(account: Account) -> None:
    # Values are kept under the defined spelling; a reader naming the property otherwise (the
    # Segment forwarder asks for `segment_user_id`) must still find it, as writers do.
    account.create_property({"Name": "Segment_User_ID", "Datatype": "str"})
    account.manage_contact("1", {"Email": "Ci@Example.com", "Action": "addnoforce", "Properties": {"segment_user_id": "u 1"}})
    contact = account.get_contact("ci@example.com")
    assert contact.properties == {"Segment_User_ID": "u 1"}
    assert account.property_value(contact, "segment_user_id") == "u 1"
    assert account.property_value(contact, "SEGMENT_USER_ID") == "u 1"
    assert account.property_value(contact, "undefined") is None
    account.create_property({"Name": "plan", "Datatype": "str"})
    assert account.property_value(contact, "plan") is None  # defined, but no value for this contact


def test_metadata_rename_and_delete_follow_the_values(account: Account) -> None:
    definition = account.create_property({"Name": "plan", "Datatype": "str"})
    contact = account.create_contact({"Email": "p@example.com"})
    account.set_contact_data(str(contact.id), {"Data": [{"Name": "plan", "Value": "pro"}]})
    account.update_property(str(definition.id), {"Name": "tier"})
    assert contact.properties == {"tier": "pro"}
    assert "MJ18" in error_of(account.create_property, {"Name": "TIER", "Datatype": "str"}).message
    account.delete_property("tier")
    assert contact.properties == {}


def page_ids(rows: list[dict[str, Any]], params: list[tuple[str, str]], fields: tuple[str, ...] = ("ID",)) -> list[int]:
    page, total = paginate(rows, Query.parse(params), dict, fields)
    assert total == len(page)
    return [row["ID"] for row in page]


@pytest.mark.parametrize(
    ("api_key", "secret_key", "status"),
    [(None, "s", 400), ("k", "", 400), ("k", 7, 400), ("k:1", "s", 400), ("mj-key", "s", 409)],
)
def test_an_account_that_cannot_be_created_says_which_status(api_key: object, secret_key: object, status: int) -> None:
    service = MailjetService(BundleConfig(mailjet_api_key="mj-key", seed=7), Clock(), "http://mj.test", "http://segment.test")
    with pytest.raises(AccountError) as refused:
        service.create_account(api_key, secret_key)
    assert refused.value.status == status and list(service.tenants) == ["mj-key"]


def test_paging_sort_and_limits() -> None:
    rows = [{"ID": i, "Email": f"{i}@x.co"} for i in range(1, 31)]
    fields = ("ID", "Email")
    assert paginate(rows, Query.parse([]), dict, fields) == (rows[:10], 10)
    assert paginate(rows, Query.parse([("limit", "0")]), dict, fields) == (rows, 30)
    assert Query.parse([("Limit", "5000")]).limit == 1000
    assert page_ids(rows, [("Sort", "id DESC"), ("Limit", "2"), ("Offset", "1")], fields) == [29, 28]
    assert Query.parse([("Name", "a"), ("name", "b")]).get("Name") == "a"  # first occurrence wins
    with pytest.raises(MailjetError):
        Query.parse([("Limit", "ten")])
    with pytest.raises(MailjetError):
        paginate(rows, Query.parse([("Sort", "Nope")]), dict, fields)


def test_an_empty_rest_body_is_an_empty_object() -> None:
    # So the missing fields are reported, not the body.
    assert read_rest_body(b"") == {} and read_rest_body(b" \r\n") == {}
    assert read_rest_body(b'{"Email": "a@example.com"}') == {"Email": "a@example.com"}


@pytest.mark.parametrize(
    ("raw", "start"), [(b"{", "Invalid json input: "), (b"[]", "Invalid json input: expected a JSON object, got list")]
)
def test_a_rest_body_that_is_no_json_object_is_invalid_json_input(raw: bytes, start: str) -> None:
    error = error_of(read_rest_body, raw)
    assert error.status == 400 and error.message.startswith(start) and error.info == ""


def test_a_rest_body_too_large_is_a_413_naming_the_limit() -> None:
    assert body_too_large(30, 20).to_json() == {
        "ErrorInfo": "", "ErrorMessage": "Request entity too large: 30 bytes; the limit is 20", "StatusCode": 413}


def test_count_only_reports_every_record_and_renders_none() -> None:
    rows = [{"ID": i} for i in range(1, 31)]

    def render(row: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("countOnly rendered a row")

    assert paginate(rows, Query.parse([("countOnly", "1"), ("Limit", "5")]), render, ("ID",)) == ([], 30)
    with pytest.raises(MailjetError):  # the Sort is checked all the same
        paginate(rows, Query.parse([("countOnly", "1"), ("Sort", "Nope")]), render, ("ID",))


def test_an_unsorted_page_renders_only_its_rows() -> None:
    rendered = []

    def render(row: dict[str, Any]) -> dict[str, Any]:
        rendered.append(row["ID"])
        return row

    rows = [{"ID": i} for i in range(1, 31)]
    paginate(rows, Query.parse([("Limit", "2"), ("Offset", "3")]), render, ("ID",))
    assert rendered == [4, 5]


def test_a_sort_on_id_renders_only_the_page_and_orders_as_the_rows_would() -> None:
    rendered = []

    def render(row: dict[str, Any]) -> dict[str, Any]:
        rendered.append(row["ID"])
        return row

    rows = [{"ID": i, "Name": "same"} for i in (5, 1, 4, 2, 3)]
    for sort, page in (("ID DESC", [4, 3]), ("ID", [2, 3]), ("ID DESC,Name", [4, 3])):
        rendered.clear()
        query = Query.parse([("Sort", sort), ("Limit", "2"), ("Offset", "1")])
        assert [row["ID"] for row in paginate(rows, query, render, ("ID", "Name"), lambda row: row["ID"])[0]] == page
        assert rendered == page
        assert paginate(rows, query, dict, ("ID", "Name"))[0] == [{"ID": i, "Name": "same"} for i in page]


def test_sort_on_several_keys_orders_by_the_first_then_the_next() -> None:
    rows = [{"ID": 1, "Name": "b"}, {"ID": 2, "Name": "a"}, {"ID": 3, "Name": "b"}, {"ID": 4, "Name": "a"}]
    assert page_ids(rows, [("Sort", "Name,ID DESC")], ("ID", "Name")) == [4, 2, 3, 1]


def test_list_metadata_filters_by_datatype_namespace_and_name(account: Account) -> None:
    account.create_property({"Name": "plan", "Datatype": "str"})
    account.create_property({"Name": "visits", "Datatype": "int", "NameSpace": "historic"})
    account.create_property({"Name": "age", "Datatype": "int"})

    def names(*params: tuple[str, str]) -> list[str]:
        return [p.name for p in account.list_properties(Query.parse(list(params)))]

    assert names(("Namespace", "historic")) == ["visits"]
    assert names(("DataType", "int"), ("Namespace", "static")) == ["age"]
    assert names(("Name", "PLAN")) == ["plan"]


def test_a_list_update_answers_whether_it_changed_and_keeps_its_address(account: Account) -> None:
    news = account.create_list({"Name": "News"})
    assert account.update_list(str(news.id), {"Name": "News"})[1] is False  # the route answers 304
    assert account.update_list(str(news.id), {"Name": "News 2", "Address": news.address})[1] is True
    refused = error_of(account.update_list, str(news.id), {"Address": "elsewhere"})
    assert refused.status == 400 and "can't be changed" in refused.message
    assert account.get_list(str(news.id)).name == "News 2"


def test_jobs_wait_for_the_clock(account: Account) -> None:
    clock = account.clock
    job = account.start_list_job("1", {"Action": "addforce", "Contacts": [{"Email": "j@example.com"}, {"Email": "bad"}]})
    assert job.status == "In Progress" and account.find_contact("j@example.com") is None
    assert asyncio.run(clock.run_due()) == 0
    clock.advance(timedelta(seconds=1))
    assert asyncio.run(clock.run_due()) == 1
    assert job.status == "Error" and job.count == 1 and job.to_json()["Error"] == "email missing or not valid"
    assert job.to_json()["ErrorFile"].endswith(f"/v3/DATA/batchjob/{job.id}/JSONError/application:json/LAST")
    assert account.find_contact("j@example.com") is not None
    assert error_of(account.start_list_job, "1", {"Contacts": []}).status == 400
    assert error_of(account.get_job, str(job.id), "2").status == 404


def test_contact_jobs_validate_lists_up_front(account: Account) -> None:
    problem = error_of(account.start_contacts_job, {"ContactsLists": [{"ListID": 5, "Action": "addforce"}], "Contacts": [{"Email": "a@b.co"}]})
    assert problem.message == {"ContactsLists": [{"ListID": "5", "Action": "addforce", "Error": "listID missing or not valid"}]}


def test_webhooks_one_per_event_type_and_backup(account: Account) -> None:
    primary = account.create_callback({"EventType": "sent", "Url": "http://h.test/a"})
    backup = account.create_callback({"EventType": "sent", "Url": "http://h.test/b", "IsBackup": True})
    assert "MJ18" in error_of(account.create_callback, {"EventType": "sent", "Url": "http://h.test/c"}).message
    assert account.callbacks_for("sent") == [primary]
    account.update_callback(str(primary.id), {"Status": "dead"})
    assert account.callbacks_for("sent") == [backup]
    assert error_of(account.create_callback, {"EventType": "open", "Url": "ftp://x"}).status == 400
    # Accepted, these failed every attempt for 24 h (a traceback each for the credentials).
    # So did a host with an empty label or one over 63 characters, each with a traceback.
    for url in ("http://[::1/x", "http://127.0.0.1:99999/x", "http://127.0.0.1:abc/x", "http://✓:p@h.test/x",
                f"http://{'a' * 64}.example/hook", "http://a..b/x"):
        assert error_of(account.create_callback, {"EventType": "open", "Url": url}).status == 400, url
    assert account.create_callback({"EventType": "open", "Url": "http://hook-user:s3cr%C3%A9t@h.test/x"}).id
    assert account.create_callback({"EventType": "click", "Url": f"http://{'a' * 63}.example./x"}).id
    assert account.create_callback({"EventType": "bounce", "Url": "http://[::1]:8080/x"}).id
    assert account.create_callback({"EventType": "spam", "Url": "HTTPS://h.test/x"}).id  # schemes know no case


def test_app_connection_updates(account: Account) -> None:
    account.update_app_connection({"listId": "1", "writeKey": "wk"})
    assert account.app_connection.to_json()["writeKey"] == "wk"
    for bad in ({"listId": 3}, {"sendEvents": 1}, {"writeKey": 5}, {"segmentUrl": "nope"}, {"colour": "red"},
                {"segmentUrl": "http://user:pass@127.0.0.1:8701"}, {"segmentUrl": "http://127.0.0.1:99999"},
                {"segmentUrl": f"http://{'a' * 64}.com"}):
        with pytest.raises(ValueError):
            account.update_app_connection(bad)
    assert account.app_connection.write_key == "wk"  # a refused PUT changes nothing
    account.update_app_connection({"segmentUrl": "HTTP://127.0.0.1:8701/"})
    assert account.app_connection.to_json()["segmentUrl"] == "HTTP://127.0.0.1:8701"


def test_send_creates_one_message_per_recipient_and_contacts(account: Account) -> None:
    hooked = []
    account.on_message_sent.append(hooked.append)
    status, body = send(account, {"Messages": [{"From": {"Email": "f@example.com"}, "To": [{"Email": "t@example.com", "Name": "T"}],
                                                "Bcc": [{"Email": "b@example.com"}], "HTMLPart": "<p>x</p>", "CustomID": "c1"}]})
    assert status == 200 and body["Messages"][0]["Status"] == "success"
    assert [m.recipient["Email"] for m in account.messages] == ["t@example.com", "b@example.com"] == [m.recipient["Email"] for m in hooked]
    assert len({m.message_id for m in account.messages}) == 2 and account.messages[0].custom_id == "c1"
    assert account.find_contact("t@example.com").name == "T"


def test_send_global_errors(account: Account) -> None:
    for body, code in [([], "mj-0002"), ({}, "mj-0003"), ({"Messages": {}}, "mj-0004"), ({"Messages": []}, "mj-0007"),
                       ({"Messages": [{}] * 51}, "mj-0008"), ({"Messages": [{}], "SandboxMode": "yes"}, "mj-0004")]:
        with pytest.raises(SendError) as raised:
            send(account, body)
        assert raised.value.code == code


def test_send_all_failed_answers_the_first_error_status(account: Account) -> None:
    status, body = send(account, {"Messages": [{"To": [{"Email": "t@example.com"}], "TextPart": "x", "TemplateID": 1}]})
    assert status == 400
    assert [e["ErrorCode"] for e in body["Messages"][0]["Errors"]] == ["send-0010"]
    assert account.messages == []


# ---------------------------------------------------------------- found in review


@pytest.mark.parametrize("text", ["²", "１", "١", "0_1", "+1", "-1", "", " ", "1" * 20, "9" * 5000])
def test_read_id_takes_ascii_digits_of_int64_length_only(text: str) -> None:
    assert read_id(text) is None


def test_read_id_reads_what_clients_send() -> None:
    assert (read_id("42"), read_id(" 7 "), read_id("0"), read_id("9" * 19)) == (42, 7, 0, int("9" * 19))


def test_ids_in_paths_are_ascii_digits_of_bounded_length(account: Account) -> None:
    contact = account.create_contact({"Email": "one@example.com"})
    assert contact.id == 1
    definition = account.create_property({"Name": "plan", "Datatype": "str"})
    callback = account.create_callback({"EventType": "open", "Url": "http://h.test/a"})
    job = account.start_list_job("1", {"Action": "addforce", "Contacts": [{"Email": "j@example.com"}]})
    recipient = account.create_recipient({"ContactID": 1, "ListID": 1})
    assert definition.id == callback.id == job.id == recipient.id == 1
    for ref in ("²", "１", "0_1", "9" * 5000):
        assert account.find_contact(ref) is None
        for call in (account.get_contact, account.get_list, account.get_recipient, account.get_property,
                     account.get_callback, account.get_job, account.job_errors):
            assert error_of(call, ref).status == 404, (call, ref)
        assert error_of(account.get_job, "1", ref).status == 404
        assert error_of(account.get_job, ref, "1").status == 404


@pytest.mark.parametrize("raw", ["１２", "1_0", "²", "9" * 5000, "-1", "20000000000000000000"])
def test_integer_filters_and_paging_are_ascii_digits(raw: str) -> None:
    for name in ("Limit", "Offset"):
        assert error_of(Query.parse, [(name, raw)]).status == 400
    assert error_of(Query.parse([("ContactsList", raw)]).get_int, "ContactsList").status == 400


def test_integer_body_fields_are_ascii_digits(account: Account) -> None:
    account.create_contact({"Email": "one@example.com"})
    huge = "9" * 5000
    for body in ({"ContactID": huge, "ListID": 1}, {"ContactID": "１", "ListID": 1}, {"ContactID": 1, "ListID": "²"}):
        assert error_of(account.create_recipient, body).status == 400
    problem = error_of(account.start_contacts_job, {"ContactsLists": [{"ListID": huge, "Action": "addforce"}], "Contacts": [{"Email": "a@b.co"}]})
    assert problem.message["ContactsLists"][0]["Error"] == "listID missing or not valid"
    for version in (huge, "２"):
        assert error_of(account.create_callback, {"EventType": "open", "Url": "http://h.test/a", "Version": version}).status == 400
    for list_id in ("１", "²", huge):
        with pytest.raises(ValueError, match="listId must be an integer"):
            account.update_app_connection({"listId": list_id})
    assert account.app_connection.list_id == 1


@pytest.mark.parametrize(
    ("datatype", "value"),
    [("float", 10**400), ("float", "1_000"), ("float", "١٢"), ("float", ".5"), ("int", "١٢"), ("int", "１２"),
     ("datetime", "0001-01-01T00:00:00+01:00"), ("datetime", "9999-12-31T23:00:00-05:00"), ("datetime", "٢٠١٨-01-01T00:00:00"),
     ("datetime", "２０１８-01-01"), ("datetime", "2018-01-01T00:00:0١"), ("datetime", "١٢")],
)
def test_property_values_out_of_range_or_not_ascii_are_mismatches(datatype: str, value: object) -> None:
    with pytest.raises(ValueError):
        coerce_property(datatype, value)


def test_times_render_with_four_digit_years() -> None:
    assert mj_time(datetime(1, 1, 1, tzinfo=timezone.utc)) == "0001-01-01T00:00:00Z"
    assert mj_time(datetime(2024, 5, 6, 7, 8, 9, 999, tzinfo=timezone(timedelta(hours=2)))) == "2024-05-06T05:08:09Z"
    assert coerce_property("datetime", "0001-01-01T01:00:00+01:00") == "0001-01-01T00:00:00Z"
    assert coerce_property("datetime", -62135596800) == "0001-01-01T00:00:00Z"


def test_an_email_ending_in_a_newline_is_invalid(account: Account) -> None:
    status, body = send(account, {"Messages": [{"From": {"Email": "f@example.com"}, "To": [{"Email": "x@y.co\n"}], "TextPart": "x"}]})
    assert status == 400 and body["Messages"][0]["Errors"][0]["ErrorCode"] == "mj-0013"
    assert account.contacts == {}
    assert not EMAIL_PATTERN.fullmatch("x@y.co\n")


def run_jobs(account: Account) -> None:
    account.clock.advance(JOB_DURATION)
    asyncio.run(account.clock.run_due())


def test_job_with_a_datetime_out_of_range_ends_in_error(account: Account) -> None:
    account.create_property({"Name": "signup", "Datatype": "datetime"})
    job = account.start_list_job("1", {"Action": "addforce", "Contacts": [
        {"Email": "far@example.com", "Properties": {"signup": "0001-01-01T00:00:00+01:00"}},
        {"Email": "ok@example.com", "Properties": {"signup": "2024-01-01T00:00:00Z"}}]})
    run_jobs(account)
    assert (job.status, job.count) == ("Error", 1)
    assert job.errors == [{"Index": 0, "Email": "far@example.com", "Error": "property type does not match definition"}]
    assert account.get_contact("ok@example.com").properties == {"signup": "2024-01-01T00:00:00Z"}
    assert account.find_contact("far@example.com") is None


def test_job_ends_even_when_a_contact_fails_unexpectedly(account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    applied = Account._apply_job_contact

    def flaky(self: Account, raw: dict, contacts_lists: list, now: datetime) -> str | None:
        if raw["Email"] == "boom@example.com":
            raise RuntimeError("a bug")
        return applied(self, raw, contacts_lists, now)

    monkeypatch.setattr(Account, "_apply_job_contact", flaky)
    job = account.start_list_job("1", {"Action": "addforce", "Contacts": [{"Email": "boom@example.com"}, {"Email": "ok@example.com"}]})
    run_jobs(account)
    assert (job.status, job.count) == ("Error", 1)
    assert [error["Email"] for error in job.errors] == ["boom@example.com"]
    assert account.find_recipient(account.get_contact("ok@example.com").id, 1) is not None


def test_a_missing_or_empty_name_answers_the_observed_mj04(account: Account) -> None:
    # Observed (php#38): POST /contactslist without a Name answered this ErrorInfo, not MJ03.
    expected = "MJ08 Property Name is invalid: MJ04 Value must have at least length 1"
    assert error_of(account.create_list, {}).info == expected
    assert error_of(account.create_list, {"Name": ""}).info == expected
    assert error_of(account.update_list, "1", {"Name": ""}).info == expected
    assert error_of(account.create_property, {"Name": "", "Datatype": "str"}).info == expected
    # A null is still "a non-empty value is required" (as for a missing Email).
    assert "MJ03" in error_of(account.create_list, {"Name": None}).info


def test_job_contacts_follow_the_email_rules_of_managecontact(account: Account) -> None:
    too_long = "a" * 250 + "@example.com"
    assert "MJ04" in error_of(account.manage_contact, "1", {"Email": too_long, "Action": "addforce"}).info
    job = account.start_list_job("1", {"Action": "addforce", "Contacts": [{"Email": too_long}, {"Email": " ok@example.com "}]})
    account.run_job(job.id)
    assert job.errors == [{"Index": 0, "Email": too_long, "Error": "email missing or not valid"}]
    assert [c.email for c in account.contacts.values()] == ["ok@example.com"]


def test_contacts_lists_errors_echo_the_values_as_json_text(account: Account) -> None:
    contact = account.create_contact({"Email": "e@example.com"})
    error = error_of(account.manage_contacts_lists, str(contact.id), {"ContactsLists": [
        {"ListID": None, "Action": True}, {"ListID": {"a": 1}, "Action": "addforce"}, {"Action": "addforce"}]})
    # Not Python's "None", "True" or "{'a': 1}": what the client sent, as JSON writes it.
    assert [(p["ListID"], p["Action"]) for p in error.message["ContactsLists"]] == [("", "true"), ('{"a": 1}', "addforce"), ("", "addforce")]


def test_a_job_removing_an_unknown_email_creates_nothing_as_managecontact_does(account: Account) -> None:
    assert account.manage_contact("1", {"Email": "gone@example.com", "Action": "remove"})["ContactID"] == 0
    job = account.start_list_job("1", {"Action": "remove", "Contacts": [{"Email": "gone@example.com", "Name": "G"}]})
    many = account.start_contacts_job({"ContactsLists": [{"ListID": 1, "Action": "remove"}], "Contacts": [{"Email": "gone2@example.com"}]})
    run_jobs(account)
    assert (job.status, job.count, many.status, many.count) == ("Completed", 1, "Completed", 1)
    assert account.contacts == {} and account.recipients == {}
    # A job with no list, or one list it adds to, still creates the contact.
    account.start_contacts_job({"ContactsLists": [{"ListID": 1, "Action": "remove"}, {"ListID": 1, "Action": "addnoforce"}],
                                "Contacts": [{"Email": "kept@example.com"}]})
    account.start_contacts_job({"Contacts": [{"Email": "alone@example.com"}]})
    run_jobs(account)
    assert sorted(c.email for c in account.contacts.values()) == ["alone@example.com", "kept@example.com"]


def test_a_job_updates_the_name_and_properties_of_an_existing_contact(account: Account) -> None:
    # Bulk guide (reference/mailjet.md): uploading a contact again creates no duplicate; "Properties
    # and Name ... will be updated".
    account.create_property({"Name": "plan", "Datatype": "str"})
    account.manage_contact("1", {"Email": "bulk@example.com", "Name": "Old", "Action": "addnoforce", "Properties": {"plan": "free"}})
    job = account.start_list_job("1", {"Action": "addnoforce", "Contacts": [
        {"Email": "bulk@example.com", "Name": "New", "Properties": {"plan": "pro"}}]})
    run_jobs(account)
    assert job.status == "Completed"
    [contact] = account.contacts.values()
    assert (contact.email, contact.name, contact.properties) == ("bulk@example.com", "New", {"plan": "pro"})


@pytest.mark.parametrize("properties", ["", "{}", [], 0, False])
def test_job_properties_that_are_not_an_object_fail_as_in_managecontact(account: Account, properties: object) -> None:
    assert error_of(account.manage_contact, "1", {"Email": "p@example.com", "Action": "addforce", "Properties": properties}).status == 400
    job = account.start_list_job("1", {"Action": "addforce", "Contacts": [{"Email": "p@example.com", "Properties": properties}]})
    run_jobs(account)
    # Observed (php#245): an array, even of defined {"Name", "Value"} pairs, fails "property not defined".
    expected = "property not defined" if isinstance(properties, list) else "properties must be a JSON object"
    assert job.errors == [{"Index": 0, "Email": "p@example.com", "Error": expected}]
    assert account.find_contact("p@example.com") is None


def test_job_properties_as_name_value_pairs_fail_as_users_saw(account: Account) -> None:
    # mailjet-apiv3-php#245: this body, with "age" defined, failed "property not defined".
    account.create_property({"Name": "age", "Datatype": "int"})
    job = account.start_contacts_job({"Contacts": [{"Email": "paul@test.de", "Properties": [{"Name": "age", "Value": "3"}]}],
                                      "ContactsLists": [{"Action": "addnoforce", "ListID": "1"}]})
    run_jobs(account)
    assert job.errors == [{"Index": 0, "Email": "paul@test.de", "Error": "property not defined"}]


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, "9223372036854775808", 1e19, 1e300])
def test_int_property_values_beyond_int64_are_mismatches(value: object) -> None:
    with pytest.raises(ValueError):
        coerce_property("int", value)


def test_int_property_values_at_the_int64_bounds_are_kept() -> None:
    assert coerce_property("int", 2**63 - 1) == "9223372036854775807"
    assert coerce_property("int", str(-(2**63))) == "-9223372036854775808"


def test_contact_and_contactdata_campaign_filter_keeps_the_campaigns_recipients(account: Account) -> None:
    # `Campaign` is a documented filter of GET /contact and /contactdata (node GetContactQueryParams,
    # GetContactDataQueryParams): it must filter, not answer every contact.
    account.create_contact({"Email": "never@example.com"})
    send(account, {"Messages": [{"From": {"Email": "f@example.com"}, "To": [{"Email": "in@example.com"}], "HTMLPart": "x"},
                                {"From": {"Email": "f@example.com"}, "To": [{"Email": "other@example.com"}], "HTMLPart": "x"}]})
    account.messages[0].campaign_id, account.messages[1].campaign_id = 7, 8
    in_seven = account.get_contact("in@example.com")
    assert account.list_contacts(Query.parse([("Campaign", "7")])) == [in_seven]
    assert account.list_contact_data(Query.parse([("campaign", "7")])) == [in_seven]
    assert account.list_contacts(Query.parse([("Campaign", "9")])) == []
    assert account.list_contacts(Query.parse([("Campaign", "0")])) == []
    assert len(account.list_contacts(Query())) == 3
    assert error_of(account.list_contacts, Query.parse([("Campaign", "x")])).status == 400


def test_sort_direction_is_ascending_unless_desc() -> None:
    # Documented (`Sort=ArrivedAt+DESC`, "default ascending"): an explicit ASC is ascending too.
    rows = [{"ID": i} for i in (2, 3, 1)]
    for sort, expected in [("ID", [1, 2, 3]), ("ID ASC", [1, 2, 3]), ("ID+asc", [1, 2, 3]), ("ID DESC", [3, 2, 1]), ("ID+desc", [3, 2, 1])]:
        assert page_ids(rows, [("Sort", sort)]) == expected, sort


def test_an_email_with_text_after_the_address_is_invalid(account: Account) -> None:
    for email in ("a@example.com b", "a@example.com<x>@y", "a@b.co,c@d.co"):
        assert error_of(account.create_contact, {"Email": email}).info.startswith("MJ08 Property Email is invalid"), email
    assert account.contacts == {}


def test_float_property_strings_beyond_a_double_are_mismatches() -> None:
    # "1e400" is a JSON number in a string, but float() makes it inf, which no Mailjet float holds.
    for value in ("1e400", "-1e400", float("inf"), float("nan")):
        with pytest.raises(ValueError):
            coerce_property("float", value)


def test_contact_filters_exclusion_and_list(account: Account) -> None:
    kept = account.create_contact({"Email": "kept@example.com"})
    excluded = account.create_contact({"Email": "out@example.com", "IsExcludedFromCampaigns": True})
    account.manage_contact("1", {"Email": "kept@example.com", "Action": "addforce"})
    assert account.list_contacts(Query.parse([("IsExcludedFromCampaigns", "true")])) == [excluded]
    assert account.list_contacts(Query.parse([("IsExcludedFromCampaigns", "false")])) == [kept]
    assert account.list_contacts(Query.parse([("ContactsList", "1")])) == [kept]


def test_contact_and_contactdata_is_unsubscribed_reads_the_contact_not_its_list_memberships(account: Account) -> None:
    # Observed (mailjet-apiv3-php#54): ContactsList=1&IsUnsubscribed=true on /contact answered no
    # contact, though the list had unsubscribed members: the filter reads the contact's own
    # UnsubscribedAt, which a list's unsub never sets (php#209), and false answered them all.
    account.manage_contact("1", {"Email": "in@example.com", "Action": "addforce"})
    account.manage_contact("1", {"Email": "gone@example.com", "Action": "unsub"})
    everyone = account.list_contacts(Query.parse([("ContactsList", "1")]))
    assert len(everyone) == 2
    for listing in (account.list_contacts, account.list_contact_data):
        assert listing(Query.parse([("ContactsList", "1"), ("IsUnsubscribed", "true")])) == []
        assert listing(Query.parse([("ContactsList", "1"), ("isunsubscribed", "false")])) == everyone


def test_list_filters_exclude_id_and_is_deleted(account: Account) -> None:
    old = account.create_list({"Name": "Old", "IsDeleted": True})
    news = account.create_list({"Name": "News"})

    def ids(*params: tuple[str, str]) -> list[int]:
        return [l.id for l in account.list_lists(Query.parse(list(params)))]

    assert ids(("ExcludeID", str(old.id))) == [1, news.id]
    assert ids(("IsDeleted", "true")) == [old.id]
    assert ids(("IsDeleted", "false")) == [1, news.id]
    assert ids(("Name", "News")) == [news.id]
    assert ids(("Address", news.address)) == [news.id] and ids(("Address", "nope")) == []
    # "Name will be a unique identifier" (reference §contactslist): a second list of one name is refused.
    assert "MJ18" in error_of(account.create_list, {"Name": "News"}).message
    assert len(account.lists) == 3


def test_subscriber_count_leaves_out_unsubscribed_recipients(account: Account) -> None:
    account.manage_contact("1", {"Email": "in@example.com", "Action": "addforce"})
    account.manage_contact("1", {"Email": "gone@example.com", "Action": "unsub"})
    assert account.list_json(account.get_list("1"))["SubscriberCount"] == 1


def test_resubscribing_a_recipient_clears_its_unsubscribed_at(account: Account) -> None:
    contact = account.create_contact({"Email": "r@example.com"})
    recipient = account.create_recipient({"ContactID": contact.id, "ListID": 1, "IsUnsubscribed": True})
    assert account.recipient_json(recipient)["UnsubscribedAt"] != ""
    assert account.update_recipient(str(recipient.id), {"IsUnsubscribed": False})[1] is True
    assert account.recipient_json(recipient)["UnsubscribedAt"] == ""


def test_a_put_may_send_back_the_read_only_fields_a_get_showed_but_unsubscribed_at(account: Account) -> None:
    # mailjet-gem#258: a listrecipient PUT carrying its own Id, ContactId and ListId went through;
    # the one carrying UnsubscribedAt was refused, as a contact's was even with "" (java#46).
    contact = account.create_contact({"Email": "r@example.com"})
    recipient = account.create_recipient({"ContactID": contact.id, "ListID": 1, "IsUnsubscribed": True})
    shown = {k: v for k, v in account.recipient_json(recipient).items() if k != "UnsubscribedAt"}
    assert account.update_recipient(str(recipient.id), {**shown, "IsUnsubscribed": False})[1] is True
    assert not recipient.is_unsubscribed
    again = account.recipient_json(recipient)
    assert "UnsubscribedAt" in error_of(account.update_recipient, str(recipient.id), again).message
    assert "ContactID" in error_of(account.update_recipient, str(recipient.id), {**shown, "ContactID": contact.id + 1}).message
    contact_shown = {k: v for k, v in contact.to_json().items() if k != "UnsubscribedAt"}
    assert account.update_contact(str(contact.id), {**contact_shown, "Name": "R"}) == (contact, True)
    assert "MJ19" in error_of(account.update_contact, str(contact.id), {**contact_shown, "DeliveredCount": 5}).message
    # The same JSON value, not Python's ==: false is not 0, true is not 1 (the account's first contact's ID).
    assert contact.id == 1
    for changed in ({"DeliveredCount": False}, {"IsSpamComplaining": 0}, {"ID": True}):
        assert "MJ19" in error_of(account.update_contact, str(contact.id), changed).message, changed
    assert "UnsubscribedAt" in error_of(account.update_contact, str(contact.id), contact.to_json()).message
    # Every PUT takes its own GET's answer back.
    news = account.create_list({"Name": "News"})
    assert account.update_list(str(news.id), account.list_json(news)) == (news, False)
    definition = account.create_property({"Name": "plan", "Datatype": "str"})
    assert account.update_property(str(definition.id), definition.to_json()) == (definition, False)
    callback = account.create_callback({"EventType": "open", "Url": "https://hooks.example.com/open"})
    assert account.update_callback(str(callback.id), callback.to_json()) == (callback, False)
    account.set_contact_data(str(contact.id), {"Data": [{"Name": "plan", "Value": "pro"}]})
    assert account.set_contact_data(str(contact.id), account.contact_data_json(contact)) == (contact, False)
    assert "MJ19" in error_of(account.set_contact_data, str(contact.id), {"ID": contact.id + 1, "Data": []}).message


def test_recipient_filters_contact_email_and_list_name(account: Account) -> None:
    news = account.create_list({"Name": "News"})
    first = account.manage_contact("1", {"Email": "a@example.com", "Action": "addforce"})["ContactID"]
    account.manage_contact(str(news.id), {"Email": "a@example.com", "Action": "addforce"})

    def lists(*params: tuple[str, str]) -> list[int]:
        return [r.list_id for r in account.list_recipients(Query.parse(list(params)))]

    assert lists(("ListName", "News")) == [news.id]
    assert lists(("ContactEmail", "A@example.com"), ("ListName", "segjet")) == [1]
    # ContactEmail is an address: the contact's ID written there matches no one.
    assert lists(("ContactEmail", str(first))) == []
    # Every filter applies, whichever index the listing starts from.
    other = account.manage_contact("1", {"Email": "b@example.com", "Action": "addforce"})["ContactID"]
    assert lists(("ContactEmail", "a@example.com"), ("Contact", str(other))) == []
    assert lists(("ContactEmail", "a@example.com"), ("ContactsList", str(news.id))) == [news.id]
    contact_data = account.list_contact_data(Query.parse([("ContactEmail", " A@Example.COM ")]))
    assert [c.email for c in contact_data] == ["a@example.com"]


def test_a_zero_contact_id_falls_back_to_the_alternate_key(account: Account) -> None:
    # Typed clients (Go, .NET) send an unset ContactID/ListID as 0 next to the ...ALT they mean.
    contact = account.create_contact({"Email": "z@example.com"})
    recipient = account.create_recipient({"ContactID": 0, "ContactALT": "z@example.com", "ListID": "0", "ListALT": "segjet"})
    assert (recipient.contact_id, recipient.list_id) == (contact.id, 1)


def test_contactdata_delete_clears_every_value(account: Account) -> None:
    account.create_property({"Name": "plan", "Datatype": "str"})
    account.manage_contact("1", {"Email": "c@example.com", "Action": "addforce", "Properties": {"plan": "pro"}})
    account.clear_contact_data("c@example.com")
    assert account.contact_data_json(account.get_contact("c@example.com"))["Data"] == []


def test_deleting_the_app_connections_list_unsets_it(account: Account) -> None:
    news = account.create_list({"Name": "News"})
    account.update_app_connection({"listId": news.id})
    account.delete_list(str(news.id))
    assert account.app_connection.list_id == 0


def test_a_job_is_found_only_under_its_own_list(account: Account) -> None:
    news = account.create_list({"Name": "News"})
    job = account.start_list_job("1", {"Action": "addforce", "Contacts": [{"Email": "j@example.com"}]})
    assert account.get_job(str(job.id), "1") is job
    assert error_of(account.get_job, str(job.id), str(news.id)).status == 404


def test_an_object_where_a_list_is_expected_is_named_as_such_not_as_missing(account: Account) -> None:
    # A common client slip (one item sent without its array): "a non-empty value is required" sent
    # users looking for a missing field. GUESS at the words, in the form of the other type errors.
    contact = account.create_contact({"Email": "o@example.com"})
    account.create_property({"Name": "age", "Datatype": "int"})
    for call, args, name, value in [
        (account.manage_contacts_lists, (str(contact.id), {"ContactsLists": {"ListID": 1, "Action": "addforce"}}),
         "ContactsLists", '{"ListID": 1, "Action": "addforce"}'),
        (account.set_contact_data, ("o@example.com", {"Data": {"Name": "age", "Value": "1"}}), "Data", '{"Name": "age", "Value": "1"}'),
        (account.start_list_job, ("1", {"Action": "addnoforce", "Contacts": {"Email": "q@example.com"}}),
         "Contacts", '{"Email": "q@example.com"}'),
        (account.start_contacts_job, ({"ContactsLists": "1", "Contacts": [{"Email": "q@example.com"}]},), "ContactsLists", '"1"'),
    ]:
        error = error_of(call, *args)
        assert (error.status, error.message) == (400, "Object properties invalid")
        assert error.info == f"MJ08 Property {name} is invalid: value {value} is not an array"


def test_job_envelope_and_contact_checks(account: Account) -> None:
    assert error_of(account.start_contacts_job, {"Contacts": []}).info == "MJ08 Property Contacts is invalid: MJ03 A non-empty value is required"
    contact = account.create_contact({"Email": "c@example.com"})
    assert error_of(account.manage_contacts_lists, str(contact.id), {"ContactsLists": None}).status == 400
    assert error_of(account.manage_contacts_lists, str(contact.id), {}).status == 400
    job = account.start_list_job("1", {"Action": "addforce", "Contacts": [{"Email": "long@example.com", "Name": "x" * 256}]})
    run_jobs(account)
    assert job.errors == [{"Index": 0, "Email": "long@example.com", "Error": "name not valid"}]
    assert account.find_contact("long@example.com") is None


def test_a_job_whose_list_is_deleted_before_it_runs_fails_each_contact_as_for_a_deleted_property(account: Account) -> None:
    news = account.create_list({"Name": "News"})
    account.create_property({"Name": "plan", "Datatype": "str"})
    lists = [{"ListID": 1, "Action": "addforce"}, {"ListID": news.id, "Action": "addforce"}]
    job = account.start_contacts_job({"ContactsLists": lists, "Contacts": [{"Email": "j@example.com"}]})
    by_property = account.start_list_job("1", {"Action": "addforce", "Contacts": [{"Email": "p@example.com", "Properties": {"plan": "pro"}}]})
    account.delete_list(str(news.id))
    account.delete_property("plan")
    run_jobs(account)
    assert (job.status, job.count) == ("Error", 0)
    assert job.errors == [{"Index": 0, "Email": "j@example.com", "Error": "listID missing or not valid"}]
    assert (by_property.status, by_property.errors[0]["Error"]) == ("Error", "property not defined")
    # Neither failed contact is created, nor subscribed to the list that is still there.
    assert account.contacts == {} and account.recipients == {}


def test_managecontact_checks_the_name(account: Account) -> None:
    for name in (5, "x" * 256, ["a"]):
        assert error_of(account.manage_contact, "1", {"Email": "n@example.com", "Action": "addforce", "Name": name}).status == 400
    assert account.contacts == {}


def test_webhook_filters_composite_key_and_updates(account: Account) -> None:
    sent = account.create_callback({"EventType": "sent", "Url": "http://h.test/sent"})
    backup = account.create_callback({"EventType": "open", "Url": "http://h.test/b", "IsBackup": "true", "Status": "dead"})
    opened = account.create_callback({"EventType": "open", "Url": "http://h.test/o"})

    def ids(*params: tuple[str, str]) -> list[int]:
        return [c.id for c in account.list_callbacks(Query.parse(list(params)))]

    assert ids(("EventType", "open")) == [backup.id, opened.id] and ids(("EventType", "7")) == [sent.id]
    assert ids(("Backup", "true")) == [backup.id]
    assert ids(("Status", "dead")) == [backup.id]
    assert account.get_callback("open|true") is backup and account.get_callback("OPEN|false") is opened
    # A dead backup is no fallback.
    account.update_callback(str(opened.id), {"Status": "dead"})
    assert account.callbacks_for("open") == []
    # Documented: updating a suspended webhook with a new URL reactivates it.
    assert account.update_callback(str(opened.id), {"Url": "http://h.test/o2"})[0].status == "alive"
    # Moving onto the (EventType, IsBackup) of another webhook is a duplicate, as on create.
    assert "MJ18" in error_of(account.update_callback, str(sent.id), {"EventType": "open"}).message
    assert error_of(account.create_callback, {"EventType": "click", "Url": "http://h.test/c", "Version": 3}).status == 400


def test_contact_timestamps_follow_changes(account: Account) -> None:
    clock = account.clock
    contact = account.create_contact({"Email": "t@example.com", "IsExcludedFromCampaigns": True})
    created = contact.to_json()
    assert created["ExclusionFromCampaignsUpdatedAt"] == created["CreatedAt"] != ""
    assert created["LastUpdateAt"] == ""
    clock.advance(timedelta(hours=1))
    account.update_contact(str(contact.id), {"IsExcludedFromCampaigns": False})
    later = contact.to_json()
    assert later["ExclusionFromCampaignsUpdatedAt"] == later["LastUpdateAt"] == mj_time(clock.now())


def test_unknown_actions_are_refused(account: Account) -> None:
    for action in ("subscribe", "add", "ADDFORCE "):
        assert error_of(account.manage_contact, "1", {"Email": "a@example.com", "Action": action}).info.startswith(
            "MJ08 Property Action is invalid"), action
    assert account.contacts == {}
    assert account.manage_contact("1", {"Email": "a@example.com", "Action": "AddForce"})["Action"] == "addforce"


def test_adding_an_inactive_recipient_again_makes_it_active(account: Account) -> None:
    # GUESS (as the model): an add action (re)activates the subscription it finds.
    contact = account.create_contact({"Email": "i@example.com"})
    recipient = account.create_recipient({"ContactID": contact.id, "ListID": 1, "IsActive": False})
    account.manage_contact("1", {"Email": "i@example.com", "Action": "addnoforce"})
    assert recipient.is_active is True


def test_a_null_property_value_unassigns_it(account: Account) -> None:
    # Documented for managemanycontacts ("null" unassigns); managecontact and contactdata take it the same way.
    account.create_property({"Name": "plan", "Datatype": "str"})
    account.manage_contact("1", {"Email": "n@example.com", "Action": "addforce", "Properties": {"plan": "pro"}})
    account.manage_contact("1", {"Email": "n@example.com", "Action": "addforce", "Properties": {"plan": None}})
    assert account.get_contact("n@example.com").properties == {}
    account.set_contact_data("n@example.com", {"Data": [{"Name": "plan", "Value": "pro"}]})
    contact, changed = account.set_contact_data("n@example.com", {"Data": [{"Name": "plan", "Value": None}]})
    assert changed and contact.properties == {}


def test_a_finished_job_shows_when_it_ended(account: Account) -> None:
    job = account.start_list_job("1", {"Action": "addforce", "Contacts": [{"Email": "j@example.com"}]})
    assert job.to_json()["JobEnd"] == ""
    run_jobs(account)
    assert job.to_json()["JobEnd"] == mj_time(job.started_at + JOB_DURATION)


def test_invalid_values_are_shown_as_json_writes_them(account: Account) -> None:
    # The client sent JSON: an error shows `true`, `null` or "x", not Python's True, None or 'x'.
    assert error_of(account.create_contact, {"Email": "a@example.com", "IsExcludedFromCampaigns": None}).info == (
        "MJ08 Property IsExcludedFromCampaigns is invalid: value null is not a boolean")
    assert error_of(account.create_recipient, {"ContactID": True, "ListID": 1}).info == (
        "MJ08 Property ContactID is invalid: value true is not an integer")
    assert error_of(account.create_contact, {"Email": "a@example.com", "Name": ["x"]}).info == (
        'MJ08 Property Name is invalid: value ["x"] is not a string')
    assert error_of(account.manage_contact, "1", {"Email": "a@example.com", "Action": "añadir"}).info == (
        'MJ08 Property Action is invalid: value "añadir" is not one of addforce, addnoforce, remove, unsub')
    assert "value false is not one of" in error_of(account.create_property, {"Name": "p", "Datatype": False}).info
    assert "value 1 is not one of" in error_of(account.create_property, {"Name": "p", "Datatype": "str", "NameSpace": 1}).info
    assert "value 6 is not one of" in error_of(account.create_callback, {"EventType": 6, "Url": "http://h.test/x"}).info


def test_unchanged_puts_answer_not_modified(account: Account) -> None:
    # "304 Not Modified: The PUT request didn't affect any record" (reference §1), field by field.
    news = account.create_list({"Name": "News"})
    assert account.update_list(str(news.id), {"IsDeleted": False})[1] is False
    assert account.update_list(str(news.id), {"IsDeleted": True})[1] is True
    plan = account.create_property({"Name": "plan", "Datatype": "str"})
    assert account.update_property(str(plan.id), {"Datatype": "str", "NameSpace": "static"})[1] is False
    # Its own name in other letters is no duplicate: a rename.
    assert account.update_property(str(plan.id), {"Name": "Plan"})[0].name == "Plan"
    contact = account.create_contact({"Email": "u@example.com"})
    recipient = account.create_recipient({"ContactID": contact.id, "ListID": 1})
    assert account.update_recipient(str(recipient.id), {"IsActive": True, "IsUnsubscribed": False})[1] is False


def test_bool_filters_refuse_other_values(account: Account) -> None:
    for raw in ("yes", "", "2"):
        assert error_of(account.list_contacts, Query.parse([("IsExcludedFromCampaigns", raw)])).status == 400, raw


def test_contacts_are_found_by_an_address_with_spaces_around(account: Account) -> None:
    contact = account.create_contact({"Email": "s@example.com"})
    assert account.find_contact(" S@example.com ") is contact


def test_contactdata_list_filter_and_contact_lists_of_one_contact(account: Account) -> None:
    news = account.create_list({"Name": "News"})
    account.manage_contact("1", {"Email": "one@example.com", "Action": "addforce"})
    account.manage_contact(str(news.id), {"Email": "two@example.com", "Action": "addforce"})
    assert [c.email for c in account.list_contact_data(Query.parse([("ContactsList", str(news.id))]))] == ["two@example.com"]
    assert [row["ListID"] for row in account.get_contacts_lists("one@example.com")] == [1]


def test_managecontact_answers_the_contacts_properties_and_refuses_an_empty_action(account: Account) -> None:
    # Documented: "with all properties available for that contact"; as contactdata shows them, text.
    account.create_property({"Name": "age", "Datatype": "int"})
    account.create_property({"Name": "City", "Datatype": "str"})
    account.manage_contact("1", {"Email": "e@example.com", "Action": "addforce", "Properties": {"city": "Lyon"}})
    result = account.manage_contact("1", {"Email": "e@example.com", "Action": "addforce", "Properties": {"age": 36}})
    assert result["Properties"] == {"City": "Lyon", "age": "36"}
    removed = account.manage_contact("1", {"Email": "new@example.com", "Action": "remove", "Properties": {"city": "Paris"}})
    assert removed["Properties"] == {}  # no contact, so none of its properties
    assert error_of(account.manage_contact, "1", {"Email": "e@example.com", "Action": ""}).info == (
        "MJ08 Property Action is invalid: MJ03 A non-empty value is required")


def test_recipients_show_the_list_name(account: Account) -> None:
    news = account.create_list({"Name": "News"})
    contact = account.create_contact({"Email": "l@example.com"})
    assert account.recipient_json(account.create_recipient({"ContactID": contact.id, "ListID": news.id}))["ListName"] == "News"


def test_an_id_that_resolves_to_nothing_is_a_400_naming_it(account: Account) -> None:
    error = error_of(account.create_recipient, {"ContactID": 99, "ListID": 1})
    assert (error.status, error.message) == (400, 'Property "Contact", value "99" could not be resolved to an ID')
    contact = account.create_contact({"Email": "r@example.com"})
    assert error_of(account.create_recipient, {"ContactID": contact.id, "ListID": 42}).message == (
        'Property "List", value "42" could not be resolved to an ID')
    assert account.recipients == {}


def test_a_recipient_put_of_is_active_alone_keeps_its_subscription(account: Account) -> None:
    contact = account.create_contact({"Email": "a@example.com"})
    recipient = account.create_recipient({"ContactID": contact.id, "ListID": 1, "IsUnsubscribed": True})
    assert account.update_recipient(str(recipient.id), {"IsActive": False}) == (recipient, True)
    assert (recipient.is_active, recipient.is_unsubscribed) == (False, True)


def test_recipient_filter_is_excluded_from_campaigns(account: Account) -> None:
    account.manage_contact("1", {"Email": "in@example.com", "Action": "addforce"})
    account.manage_contact("1", {"Email": "out@example.com", "Action": "addforce"})
    account.update_contact("out@example.com", {"IsExcludedFromCampaigns": True})

    def emails(raw: str) -> list[str]:
        found = account.list_recipients(Query.parse([("IsExcludedFromCampaigns", raw)]))
        return [account.contacts[r.contact_id].email for r in found]

    assert emails("true") == ["out@example.com"] and emails("false") == ["in@example.com"]


def test_contacts_lists_with_an_unknown_action_name_the_action(account: Account) -> None:
    contact = account.create_contact({"Email": "e@example.com"})
    error = error_of(account.manage_contacts_lists, str(contact.id), {"ContactsLists": [{"ListID": 1, "Action": "subscribe"}]})
    assert error.message == {"ContactsLists": [{"ListID": "1", "Action": "subscribe", "Error": "action missing or not valid"}]}
    assert account.recipients == {}


def test_a_property_rename_onto_another_name_is_a_duplicate_and_its_own_name_no_change(account: Account) -> None:
    plan = account.create_property({"Name": "plan", "Datatype": "str"})
    account.create_property({"Name": "tier", "Datatype": "str"})
    error = error_of(account.update_property, str(plan.id), {"Name": "TIER"})
    assert error.message == 'MJ18 A ContactMetaData resource with value "TIER" for Name already exists.'
    assert account.update_property(str(plan.id), {"Name": "plan"}) == (plan, False)
    # A rename moves the values of the contacts that have one, and leaves the others without.
    valued = account.manage_contact("1", {"Email": "v@example.com", "Action": "addforce", "Properties": {"plan": "pro"}})["ContactID"]
    bare = account.create_contact({"Email": "b@example.com"})
    assert account.update_property(str(plan.id), {"Name": "level"})[1] is True
    assert (account.contacts[valued].properties, bare.properties) == ({"level": "pro"}, {})


@pytest.mark.parametrize("entry", [{"Value": "x"}, {"Name": "", "Value": "x"}, {"Name": 5, "Value": "x"}, "plan"])
def test_contactdata_without_a_name_is_an_invalid_key_name(account: Account, entry: object) -> None:
    account.create_contact({"Email": "d@example.com"})
    assert error_of(account.set_contact_data, "d@example.com", {"Data": [entry]}).message == 'Invalid key name: ""'


def test_webhook_filter_version(account: Account) -> None:
    first = account.create_callback({"EventType": "sent", "Url": "http://h.test/a"})
    second = account.create_callback({"EventType": "open", "Url": "http://h.test/b", "Version": 2})
    assert [c.id for c in account.list_callbacks(Query.parse([("Version", "2")]))] == [second.id]
    assert [c.id for c in account.list_callbacks(Query.parse([("Version", "1")]))] == [first.id]


def test_job_contacts_that_are_no_object_or_have_a_bad_exclusion_are_reported(account: Account) -> None:
    job = account.start_list_job("1", {"Action": "addforce", "Contacts": [
        "x@example.com", {"Email": "b@example.com", "IsExcludedFromCampaigns": "maybe"}, {"Email": "ok@example.com"}]})
    run_jobs(account)
    assert (job.status, job.count) == ("Error", 1)
    assert job.errors == [{"Index": 0, "Email": "", "Error": "contact must be a JSON object"},
                          {"Index": 1, "Email": "b@example.com", "Error": "IsExcludedFromCampaigns not valid"}]
    assert [c.email for c in account.contacts.values()] == ["ok@example.com"]


@pytest.mark.parametrize("key", ["", 7, None])
def test_app_connection_authentication_key_must_be_a_non_empty_string(account: Account, key: object) -> None:
    before = account.app_connection.authentication_key
    with pytest.raises(ValueError, match="authenticationKey must be a non-empty string"):
        account.update_app_connection({"authenticationKey": key})
    assert account.app_connection.authentication_key == before


def test_sort_skips_empty_keys() -> None:
    assert Query.parse([("Sort", "ID DESC,, ,Email")]).sort == [("ID", True), ("Email", False)]


@pytest.mark.parametrize("url", ["http://:8080/hook", "http://user@/hook"])
def test_a_webhook_url_without_a_host_is_refused(account: Account, url: str) -> None:
    error = error_of(account.create_callback, {"EventType": "open", "Url": url})
    assert (error.status, error.info) == (400, f'MJ08 Property Url is invalid: "{url}" is not an http(s) URL')
    assert account.callbacks == {}
