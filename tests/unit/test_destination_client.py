import pytest

from destination.client import MailjetError

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
