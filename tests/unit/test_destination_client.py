import asyncio
from typing import Any, Mapping

import pytest

from destination.client import MAX_PARALLEL_CREATIONS, METADATA_PAGE_SIZE, MailjetClient, MailjetError, PropertyDefinition
from destination.identify import _contact_id
from destination.keyring import MailjetAccount

OBJECT_PROPERTIES_INVALID = "Object properties invalid"


@pytest.mark.parametrize(
    "info",
    [
        {"Properties": [{"plan": "Property not defined"}]},
        {"Properties": [{"age": "Property type does not match definition"}]},
        # Mailjet's casing of JSON keys varies.
        {"properties": [{"plan": "property not defined"}]},
    ],
)
def test_undefined_or_mistyped_property_is_about_property_definitions(info):
    assert MailjetError(400, OBJECT_PROPERTIES_INVALID, info).about_property_definitions


@pytest.mark.parametrize(
    ("status", "message", "info"),
    [
        # An invalid Email also says "Object properties invalid"; re-reading definitions cannot help.
        (400, OBJECT_PROPERTIES_INVALID, 'MJ08 Property Email is invalid: "user@localhost" is not a valid email address'),
        (400, OBJECT_PROPERTIES_INVALID, {"Properties": "must be a JSON object"}),
        (400, 'Internal error: MJ19 Setting a value for property "UnsubscribedAt" is not allowed', None),
        (401, OBJECT_PROPERTIES_INVALID, {"Properties": [{"plan": "Property not defined"}]}),
    ],
)
def test_other_errors_are_not_about_property_definitions(status, message, info):
    assert not MailjetError(status, message, info).about_property_definitions


@pytest.mark.parametrize("status", [200, 201, 304])
def test_an_answer_neither_error_nor_readable_is_temporary(status):
    # Mailjet (or a proxy before it: an outage page served 200) answered no REST envelope. The
    # message is not at fault, and the upsert may not have happened: Segment must retry (503),
    # not drop the message as malformed (400).
    assert MailjetError(status, "POST /v3/REST/contactslist/1/managecontact answered a body that is not JSON").temporary


@pytest.mark.parametrize("status", [None, 408, 423, 429, 500, 502, 503, 504])
def test_unreachable_rate_limited_or_failing_mailjet_is_temporary(status):
    # Answered 503, which Segment retries for four hours (reference/segment.md §5.1: "timeouts, 429
    # Too Many Request status codes, and 5xx status codes" are retried, and the Actions framework
    # retries 408 and 423 too; other 4xx are not). A Mailjet 408 is a slow Mailjet, not a bad message.
    assert MailjetError(status, "down").temporary


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405])
def test_mailjet_4xx_is_final(status):
    assert not MailjetError(status, "refused").temporary


class _StubClient(MailjetClient):
    """Property creation answered per name; the definitions re-read show what `defined_after` says."""

    def __init__(self, create_errors: dict[str, MailjetError], defined_after: dict[str, str]) -> None:
        super().__init__(None, MailjetAccount("http://mailjet.invalid", "k", "s"))  # type: ignore[arg-type]
        self._definitions = {}
        self.create_errors = create_errors
        self.defined_after = defined_after
        self.attempted: list[str] = []

    async def _fetch_definitions(self) -> dict[str, PropertyDefinition]:
        return {name.lower(): PropertyDefinition(name, datatype) for name, datatype in self.defined_after.items()}

    async def _create_property(self, name: str, datatype: str) -> PropertyDefinition:
        self.attempted.append(name)
        await asyncio.sleep(0)
        if name in self.create_errors:
            raise self.create_errors[name]
        return PropertyDefinition(name, datatype)


def test_a_failed_creation_reports_the_error_of_the_property_still_missing():
    # "plan" lost a race (another writer created it: MJ18, a 400) and "age" met a Mailjet outage.
    # "age" is what stops the update, and its error is temporary: answered 503, Segment retries.
    # Reporting "plan"'s 400 instead made the destination answer 400 and Segment drop the contact.
    client = _StubClient(
        {"plan": MailjetError(400, 'MJ18 A ContactMetaData resource with value "plan" for Name already exists.'), "age": MailjetError(503, "down")},
        defined_after={"plan": "str"},
    )
    with pytest.raises(MailjetError) as raised:
        asyncio.run(client.define_properties({"plan": "str", "age": "int"}))
    assert raised.value.status == 503 and raised.value.temporary
    # Each is tried once: Segment's backoff retries an outage, not an immediate second call.
    assert sorted(client.attempted) == ["age", "plan"]


class _ConcurrencyClient(_StubClient):
    """Counts the property creations in flight at once."""

    def __init__(self) -> None:
        super().__init__({}, defined_after={})
        self.in_flight = self.most_in_flight = 0

    async def _create_property(self, name: str, datatype: str) -> PropertyDefinition:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.001)
            return await super()._create_property(name, datatype)
        finally:
            self.in_flight -= 1


def test_an_identify_with_many_new_traits_creates_them_a_few_at_a_time():
    # 2,400 new traits were 2,400 POST /contactmetadata at once: the shared connection pool (256) was
    # the identify's, other accounts' identifies waited for a connection past their timeout (503), and
    # the real Mailjet would meet that burst with 429.
    client = _ConcurrencyClient()
    wanted = {f"trait_{index}": "str" for index in range(200)}
    definitions, created, refused = asyncio.run(client.define_properties(wanted))
    assert len(created) == 200 and all(name.lower() in definitions for name in wanted)
    assert client.most_in_flight == MAX_PARALLEL_CREATIONS


class _StallingClient(_StubClient):
    """Creates the first `quick` properties at once; the others wait until `go` is set."""

    def __init__(self, quick: int) -> None:
        super().__init__({}, defined_after={})
        self.quick = quick
        self.go = asyncio.Event()
        self.made: list[str] = []

    async def _create_property(self, name: str, datatype: str) -> PropertyDefinition:
        if len(self.attempted) >= self.quick:
            await self.go.wait()
        definition = await super()._create_property(name, datatype)
        self.made.append(name)
        return definition


def test_properties_created_before_an_identify_ran_out_of_time_are_not_created_again():
    # The identify's budget cancelled define_properties before its end: what it had created never
    # reached the cache, so every retry created them again (MJ18, each a Mailjet call), ran out of
    # time before the rest, and the identify never got through.
    client = _StallingClient(quick=3)
    client._definitions = {"plan": PropertyDefinition("plan", "str")}
    wanted = {f"trait_{index}": "str" for index in range(10)}

    async def attempts() -> None:
        first = asyncio.create_task(client.define_properties(wanted))
        while len(client.made) < 3:
            await asyncio.sleep(0)
        first.cancel()  # as the identify's budget does
        with pytest.raises(asyncio.CancelledError):
            await first
        done = list(client.made)
        client.go.set()
        definitions, created, refused = await client.define_properties(wanted)
        assert sorted(definition.name for definition in created) == sorted(set(wanted) - set(done))
        assert sorted(client.made) == sorted(wanted) and all(name in definitions for name in wanted)

    asyncio.run(attempts())


class _RecordingClient(MailjetClient):
    """`_request` answered from `pages` of contactmetadata, or an echo of a POST; every call recorded."""

    def __init__(self, pages: list[list[dict[str, Any]]] | None = None) -> None:
        super().__init__(None, MailjetAccount("http://mailjet.invalid", "k", "s"))  # type: ignore[arg-type]
        self.pages = pages or []
        self.calls: list[tuple[str, str, Any, Any]] = []

    async def _request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None) -> dict[str, Any]:
        self.calls.append((method, path, dict(params or {}), body))
        # A client that never moves on to the next page would loop here for ever.
        assert len(self.calls) <= 10, self.calls[-3:]
        if method == "POST":
            return {"Count": 1, "Data": [{**body, "ID": 1}], "Total": 1}
        offset = int((params or {}).get("Offset", 0))
        page = self.pages[offset // METADATA_PAGE_SIZE] if offset // METADATA_PAGE_SIZE < len(self.pages) else []
        return {"Count": len(page), "Data": page, "Total": sum(map(len, self.pages))}


def test_every_page_of_property_definitions_is_read():
    # An account with more properties than one page holds (Limit at most 1000, reference/mailjet.md
    # §1): a property on the second page, taken for missing, was created again (MJ18, a final 400).
    pages = [[{"Name": f"p{index}", "Datatype": "str"} for index in range(METADATA_PAGE_SIZE)], [{"Name": "Plan", "Datatype": "int"}]]
    client = _RecordingClient(pages)
    definitions = asyncio.run(client.property_definitions())
    assert len(definitions) == METADATA_PAGE_SIZE + 1
    assert definitions["plan"] == PropertyDefinition("Plan", "int")
    assert [params for _, _, params, _ in client.calls] == [{"Limit": METADATA_PAGE_SIZE, "Offset": 0}, {"Limit": METADATA_PAGE_SIZE, "Offset": METADATA_PAGE_SIZE}]


def test_a_new_property_is_created_static_with_its_datatype():
    # reference/mailjet.md /contactmetadata: POST {"Datatype":"str","Name":"first_name","NameSpace":"static"};
    # managecontact only sets static properties ("must be static").
    client = _RecordingClient()
    definitions, created, refused = asyncio.run(client.define_properties({"plan": "str"}))
    assert created == [PropertyDefinition("plan", "str")]
    assert client.calls[-1] == ("POST", "/v3/REST/contactmetadata", {}, {"Name": "plan", "Datatype": "str", "NameSpace": "static"})


def test_a_property_created_is_defined_even_when_the_reread_after_another_failure_misses_it():
    # "age" lost a creation race (MJ18) and the re-read shows it, but not yet "plan", which this
    # call created: without "plan" in the definitions the identify failed with a KeyError (a 500).
    client = _StubClient({"age": MailjetError(400, 'MJ18 A ContactMetaData resource with value "age" for Name already exists.')}, defined_after={"age": "int"})
    definitions, created, refused = asyncio.run(client.define_properties({"plan": "str", "age": "int"}))
    assert created == [PropertyDefinition("plan", "str")]
    assert definitions["plan"] == PropertyDefinition("plan", "str") and definitions["age"] == PropertyDefinition("age", "int")
    assert asyncio.run(client.property_definitions()) == definitions


def test_a_cached_property_mailjet_lost_is_created_when_the_reread_misses_it():
    # The cache still held "segment_user_id", which Mailjet had lost since (an account reset), so
    # only "age" was created; it had been created meanwhile (MJ18), and the re-read showed "age" but
    # not "segment_user_id": the identify then failed with a KeyError (a 500).
    client = _StubClient({"age": MailjetError(400, 'MJ18 A ContactMetaData resource with value "age" for Name already exists.')},
                         defined_after={"age": "int"})
    client._definitions = {"segment_user_id": PropertyDefinition("segment_user_id", "str")}
    definitions, created, refused = asyncio.run(client.define_properties({"segment_user_id": "str", "age": "int"}))
    assert created == [PropertyDefinition("segment_user_id", "str")]
    assert set(definitions) == {"segment_user_id", "age"}


@pytest.mark.parametrize(
    ("contact", "contact_id"),
    [
        ({"ContactID": 12338756133}, 12338756133),
        # Mailjet's own managecontact example shows the id as text ("ContactID":"10", reference/mailjet.md).
        ({"ContactID": "10"}, 10),
        ({"ContactID": True}, None),
        ({"ContactID": ""}, None),
        # Digits of other scripts: isdigit() says yes, and int("²") raised ValueError, a 500 after
        # the contact was upserted (Segment retries it for four hours).
        ({"ContactID": "\u00b2"}, None),
        ({"ContactID": "\u0661\u0662"}, None),
        ({}, None),
    ],
)
def test_contact_id_from_managecontact(contact, contact_id):
    assert _contact_id(contact) == contact_id


@pytest.mark.parametrize(
    ("raw", "message", "info"),
    [
        # A JSON error without Mailjet's fields (a proxy's): the HTTP reason says what happened.
        (b'{"message": "Forbidden by policy"}', "Forbidden", None),
        (b'{"ErrorMessage": "", "ErrorInfo": ""}', "Forbidden", None),
        (b'{"ErrorMessage": "MJ19 refused", "ErrorInfo": "detail"}', "MJ19 refused", "detail"),
        (b"<html>403</html>", "Forbidden", None),
    ],
)
def test_an_error_answer_is_read_for_mailjets_fields_else_its_reason(raw, message, info):
    from destination.client import _error_from

    error = _error_from(403, "Forbidden", raw, "/v3/REST/contactslist/1/managecontact")
    assert (error.status, error.message, error.info, error.path) == (403, message, info, "/v3/REST/contactslist/1/managecontact")


def test_an_upsert_without_name_or_properties_sends_neither():
    # Without Name, managecontact keeps the contact's name; an empty Properties is no change either.
    client = _RecordingClient()
    contact = asyncio.run(client.upsert_contact(3, "a@example.com", None, {}))
    assert client.calls == [("POST", "/v3/REST/contactslist/3/managecontact", {}, {"Email": "a@example.com", "Action": "addnoforce"})]
    assert contact["Email"] == "a@example.com"


def test_property_definitions_without_a_text_name_and_datatype_are_left_out():
    client = _RecordingClient([[{"Name": None, "Datatype": "str"}, {"Name": "age"}, {"name": "Plan", "DataType": "int"}]])
    assert asyncio.run(client.property_definitions()) == {"plan": PropertyDefinition("Plan", "int")}
