import asyncio

import pytest

from destination.client import MailjetClient, MailjetError, PropertyDefinition
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
        (400, 'MJ19 Setting a value for property "UnsubscribedAt" is not allowed', None),
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

    async def _fetch_definitions(self) -> dict[str, PropertyDefinition]:
        return {name.lower(): PropertyDefinition(name, datatype) for name, datatype in self.defined_after.items()}

    async def _create_property(self, name: str, datatype: str) -> PropertyDefinition:
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
