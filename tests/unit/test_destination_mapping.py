from datetime import datetime, timezone

import pytest

from destination.mapping import (
    ContactUpdate,
    MappingError,
    Property,
    conform_to_definition,
    contact_name,
    find_email,
    flatten_traits,
    infer_datatype,
    map_identify,
    parse_iso_datetime,
    render_value,
    sanitize_property_name,
)


def identify(traits=None, **fields):
    return {"type": "identify", "userId": "u1", "traits": {"email": "ada@example.com", **(traits or {})}, **fields}


def props(update: ContactUpdate) -> dict:
    return {prop.name: (prop.value, prop.datatype) for prop in update.properties}


def test_nested_objects_are_flattened_with_underscores():
    update = map_identify(identify({"location": {"latitude": 48.87, "longitude": 2.37, "address": {"city": {"name": "Paris"}}}}))
    assert props(update)["location_latitude"] == (48.87, "float")
    assert props(update)["location_longitude"] == (2.37, "float")
    assert props(update)["location_address_city_name"] == ("Paris", "str")
    assert {prop.name: prop.source for prop in update.properties}["location_address_city_name"] == "location.address.city.name"
    # Flattening is the documented rule, not a rename.
    assert update.renamed == ()


def test_arrays_are_skipped_and_reported_at_any_depth():
    update = map_identify(identify({"tags": ["a", "b"], "company": {"ids": [1, 2], "plan": "pro"}}))
    assert {skipped.trait for skipped in update.skipped} == {"tags", "company.ids"}
    assert all("array" in skipped.reason for skipped in update.skipped)
    assert "tags" not in props(update) and "company_ids" not in props(update)
    assert props(update)["company_plan"] == ("pro", "str")


def test_empty_object_is_reported():
    update = map_identify(identify({"address": {}}))
    assert [skipped.trait for skipped in update.skipped] == ["address"]


def test_flatten_traits_yields_path_name_and_value():
    leaves, skipped = flatten_traits({"a": {"b": 1}, "c": [1]})
    assert leaves == [("a.b", "a_b", 1)]
    assert skipped[0].trait == "c"


@pytest.mark.parametrize(
    ("traits", "expected"),
    [
        ({"name": "Ada Lovelace", "firstName": "Augusta"}, ("Ada Lovelace", "name")),
        ({"name": "Ada King", "firstName": "Ada", "lastName": "Lovelace"}, ("Ada King", "name")),
        ({"firstName": "Ada", "lastName": "Lovelace"}, ("Ada Lovelace", "firstName+lastName")),
        ({"first_name": "Ada", "last_name": "Lovelace"}, ("Ada Lovelace", "first_name+last_name")),
        ({"firstName": "Ada", "last_name": "Lovelace"}, ("Ada Lovelace", "firstName+last_name")),
        ({"name": "  ", "first_name": " Ada ", "lastName": "Lovelace"}, ("Ada Lovelace", "first_name+lastName")),
        # One half only leaves Name as it is (Segment's facade: name() joins only "if firstName &&
        # lastName"): an update carrying just {"lastName": "Byron"} once replaced "Ada Lovelace" by "Byron".
        ({"firstName": "Ada"}, None),
        ({"lastName": "Lovelace"}, None),
        ({"name": "  ", "first_name": " Ada "}, None),
        ({"firstName": "Ada", "lastName": "  "}, None),
        ({"name": 42}, None),
        ({}, None),
        # Keys as Segment's facade matches them (obj-case: any case, `_` or not): these gave no Name.
        ({"Name": "Ada Lovelace"}, ("Ada Lovelace", "Name")),
        ({"FirstName": "Ada", "LastName": "Lovelace"}, ("Ada Lovelace", "FirstName+LastName")),
        ({"firstname": "Ada", "LAST_NAME": "Lovelace"}, ("Ada Lovelace", "firstname+LAST_NAME")),
        ({"first-name": "Ada", "lastname": "Lovelace"}, ("Ada Lovelace", "first-name+lastname")),
        ({"firstNames": "Ada", "lastName": "Lovelace"}, None),
        ({"first.name": "Ada", "last_name": "Lovelace"}, None),  # obj-case keeps dots: a path, not firstName
        # Ours, not the facade's (it stops at the first key it reads as the name): a blank one is passed over.
        ({"first_name": " ", "firstName": "Ada", "lastName": "Lovelace"}, ("Ada Lovelace", "firstName+lastName")),
        ({"name": "", "Name": "Ada L"}, ("Ada L", "Name")),
    ],
)
def test_contact_name(traits, expected):
    assert contact_name(traits) == expected


def test_a_first_name_alone_is_kept_as_a_property_and_leaves_name_unchanged():
    update = map_identify(identify({"firstName": "Augusta"}))
    assert update.name is None
    assert props(update)["firstName"] == ("Augusta", "str")


def test_name_traits_also_become_properties_but_email_does_not():
    update = map_identify(identify({"firstName": "Ada", "last_name": "Lovelace"}))
    assert update.name == "Ada Lovelace"
    assert props(update)["firstName"] == ("Ada", "str")
    assert props(update)["last_name"] == ("Lovelace", "str")
    assert "email" not in props(update)


@pytest.mark.parametrize(
    ("value", "datatype"),
    [
        (True, "bool"),
        (False, "bool"),
        (1, "int"),
        (0, "int"),
        (-7, "int"),
        (1.0, "float"),
        (0.5, "float"),
        (2**70, "str"),
        # A 64-bit integer is the largest kept as int; one past it either way is kept exactly as text.
        (2**63 - 1, "int"),
        (-(2**63), "int"),
        (2**63, "str"),
        (-(2**63) - 1, "str"),
        (float("nan"), None),
        ("2024-05-01T10:00:00Z", "datetime"),
        ("2024-05-01T10:00:00.123+02:00", "datetime"),
        ("2024-05-01T10:00", "datetime"),
        ("1990-05-12", "datetime"),
        ("2024-13-45", "str"),
        ("2024", "str"),
        ("May 1st", "str"),
        ("", "str"),
        (None, None),
        ([1], None),
        ({"a": 1}, None),
    ],
)
def test_infer_datatype(value, datatype):
    assert infer_datatype(value) == datatype


@pytest.mark.parametrize(
    ("raw", "datatype", "rendered"),
    [
        (True, "bool", True),
        (3, "int", 3),
        (1.0, "float", 1.0),
        ("2024-05-01T10:00:00.123+02:00", "datetime", "2024-05-01T08:00:00Z"),
        ("2024-05-01T10:00:00", "datetime", "2024-05-01T10:00:00Z"),
        ("1990-05-12", "datetime", "1990-05-12T00:00:00Z"),
        (0, "datetime", "1970-01-01T00:00:00Z"),
        (True, "str", "true"),
        (42, "str", "42"),
        (2.5, "str", "2.5"),
        (7, "float", 7.0),
    ],
)
def test_render_value(raw, datatype, rendered):
    value = render_value(raw, datatype)
    assert value == rendered and type(value) is type(rendered)


def test_none_is_skipped_not_sent():
    update = map_identify(identify({"plan": None}))
    assert "plan" not in props(update)
    assert update.skipped[0].trait == "plan" and "null" in update.skipped[0].reason


def test_engage_audience_traits_become_boolean_properties():
    message = identify({"order_completed_last_30days": True, "churn_risk": False})
    message["context"] = {"personas": {"computation_class": "audience", "computation_key": "order_completed_last_30days"}}
    update = map_identify(message)
    assert props(update)["order_completed_last_30days"] == (True, "bool")
    assert props(update)["churn_risk"] == (False, "bool")


def test_email_from_traits_wins_over_context_traits():
    message = identify(context={"traits": {"email": "context@example.com"}})
    assert map_identify(message).email == "ada@example.com"


def test_email_from_context_traits_when_traits_have_none():
    message = {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "context": {"traits": {"email": " ctx@example.com "}}}
    assert map_identify(message).email == "ctx@example.com"
    assert find_email({"traits": {"email": ""}, "context": {"traits": {"email": "b@example.com"}}}) == "b@example.com"


@pytest.mark.parametrize("key", ["Email", "EMAIL", "e_mail", "E-Mail"])
def test_the_email_trait_is_read_in_any_casing_and_is_not_also_a_property(key):
    # Segment's direct-destination guide: "The casing on these fields will vary by customer, so be
    # ready to accept any casing"; `traits.Email` was a property named Email and the identify a 400.
    update = map_identify({"type": "identify", "userId": "u1", "traits": {key: " Ada@Example.com ", "plan": "pro"}})
    assert update.email == "Ada@Example.com"
    assert sorted(props(update)) == ["plan", "segment_user_id"]
    assert find_email({"traits": {key: "a@example.com"}, "context": {"traits": {"email": "c@example.com"}}}) == "a@example.com"


def test_the_first_key_read_as_email_with_an_address_wins_and_every_spelling_is_left_out():
    message = {"type": "identify", "userId": "u1", "traits": {"EMAIL": " ", "Email": "first@example.com", "email": "second@example.com"}}
    update = map_identify(message)
    assert update.email == "first@example.com"
    assert props(update) == {"segment_user_id": ("u1", "str")}
    with pytest.raises(MappingError, match="traits.Email must be a string"):
        find_email({"traits": {"Email": 42}})


def test_a_user_id_that_is_an_address_is_the_email_when_no_trait_gives_one():
    # Segment's facade (lib/identify.js email()): traits.email, else the userId when it is an email.
    message = {"type": "identify", "userId": " u1@example.com", "traits": {"plan": "pro"}}
    assert map_identify(message).email == "u1@example.com"
    assert find_email({"userId": "u1@example.com", "context": {"traits": {"email": "c@example.com"}}}) == "c@example.com"
    for user_id in ("u1", "not an@address", "@example.com", 42):
        with pytest.raises(MappingError, match="no email"):
            map_identify({"type": "identify", "userId": user_id, "traits": {"plan": "pro"}})


@pytest.mark.parametrize(
    "message",
    [
        {"type": "identify", "userId": "u1", "traits": {"name": "Ada"}},
        {"type": "identify", "userId": "u1"},
        {"type": "identify", "userId": "u1", "traits": {"email": ""}, "context": {"traits": {}}},
    ],
)
def test_missing_email_is_a_mapping_error(message):
    with pytest.raises(MappingError, match="no email"):
        map_identify(message)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"traits": {"email": "not-an-address"}}, "not an email address"),
        ({"traits": {"email": "ada lovelace@example.com"}}, "not an email address"),
        ({"traits": {"email": 42}}, "must be a string"),
        ({"traits": "ada@example.com"}, "traits must be an object"),
        ({"traits": {}, "context": {"traits": ["x"]}}, "context.traits must be an object"),
    ],
)
def test_bad_email_or_traits_shape(message, error):
    with pytest.raises(MappingError, match=error):
        map_identify({"type": "identify", "userId": "u1", **message})


def test_user_id_is_kept_as_segment_user_id():
    update = map_identify(identify(userId="user-42"))
    assert props(update)["segment_user_id"] == ("user-42", "str")
    assert update.properties[0].source == "userId"
    # A numeric userId (sent to the destination directly; Segment discards them) is kept as text.
    assert props(map_identify(identify(userId=42)))["segment_user_id"] == ("42", "str")


def test_user_id_wins_over_a_trait_of_the_same_name():
    update = map_identify(identify({"segment_user_id": "forged"}, userId="user-42"))
    assert props(update)["segment_user_id"] == ("user-42", "str")
    assert [skipped.trait for skipped in update.skipped] == ["segment_user_id"]


@pytest.mark.parametrize("user_id", [True, False, ""])
def test_a_user_id_that_names_no_user_is_not_kept(user_id):
    # JSON true is no userId: kept, it would become the text "True" and be sent back with email events.
    assert "segment_user_id" not in props(map_identify(identify(userId=user_id)))


def test_anonymous_identify_has_no_segment_user_id():
    message = {"type": "identify", "anonymousId": "anon-1", "traits": {"email": "ada@example.com"}}
    assert "segment_user_id" not in props(map_identify(message))


@pytest.mark.parametrize(
    ("name", "sanitized"),
    [
        ("plan", "plan"),
        ("Plan_Tier2", "Plan_Tier2"),
        ("plan tier", "plan_tier"),
        ("plan-tier", "plan_tier"),
        ("a.b", "a_b"),
        ("été", "ete"),
        ("1st_order", "trait_1st_order"),
        ("_private", "private"),
        ("$$$", "trait"),
        ("日本", "trait"),
    ],
)
def test_sanitize_property_name(name, sanitized):
    assert sanitize_property_name(name) == sanitized


def test_sanitized_names_are_reported_and_collisions_skipped():
    update = map_identify(identify({"plan tier": "gold", "plan_tier": "silver", "Plan-Tier": "bronze"}))
    assert props(update) == {"segment_user_id": ("u1", "str"), "plan_tier": ("gold", "str")}
    assert [(renamed.trait, renamed.property) for renamed in update.renamed] == [("plan tier", "plan_tier")]
    assert [skipped.trait for skipped in update.skipped] == ["plan_tier", "Plan-Tier"]
    assert "same Mailjet property name" in update.skipped[0].reason


def test_nested_key_needing_sanitizing_is_reported_as_renamed():
    update = map_identify(identify({"address": {"zip code": "75001"}}))
    assert [(renamed.trait, renamed.property) for renamed in update.renamed] == [("address.zip code", "address_zip_code")]


@pytest.mark.parametrize(
    ("prop", "defined", "expected"),
    [
        (Property("age", 30, "int", "age"), "int", ("int", 30)),
        (Property("age", 30, "int", "age"), "float", ("float", 30.0)),
        (Property("age", 30, "int", "age"), "str", ("str", "30")),
        (Property("vip", True, "bool", "vip"), "str", ("str", "true")),
        (Property("seen", 0, "int", "seen"), "datetime", ("datetime", "1970-01-01T00:00:00Z")),
        # Mailjet documents every property value as text read by the property's type, so the text
        # of an int, a JSON number or a bool fits (a web form sends "45" where an SDK sent 45).
        (Property("amount", "45", "str", "amount"), "int", ("int", 45)),
        (Property("amount", "-9223372036854775808", "str", "amount"), "int", ("int", -(2**63))),
        (Property("ratio", "0.75", "str", "ratio"), "float", ("float", 0.75)),
        (Property("ratio", "-1.5e3", "str", "ratio"), "float", ("float", -1500.0)),
        (Property("ratio", "2", "str", "ratio"), "float", ("float", 2.0)),
        (Property("flag", "true", "str", "flag"), "bool", ("bool", True)),
        (Property("flag", "false", "str", "flag"), "bool", ("bool", False)),
        # .NET's and Python's text of a bool; Mailjet is sent a JSON bool either way.
        (Property("flag", "False", "str", "flag"), "bool", ("bool", False)),
        # An integral float is exactly an int.
        (Property("amount", 46.0, "float", "amount"), "int", ("int", 46)),
        (Property("amount", -(2.0**63), "float", "amount"), "int", ("int", -(2**63))),
        (Property("userId", "42", "str", "userId"), "int", ("int", 42)),
        # An integer past int64 is text by inference (its exact digits), yet still an integer: a
        # float property takes it, as one takes a larger integer that arrived as a double.
        (Property("big", 2**63, "str", "big"), "float", ("float", float(2**63))),
    ],
)
def test_conform_to_definition(prop, defined, expected):
    fitted = conform_to_definition(prop, defined)
    assert (fitted.datatype, fitted.value) == expected


@pytest.mark.parametrize(
    ("prop", "defined", "reason"),
    [
        (Property("age", "thirty", "str", "age"), "int", "a str value does not fit"),
        (Property("vip", True, "bool", "vip"), "int", "a bool value does not fit"),
        # A JavaScript Date.now() sent to a datetime property: once a 500 (year out of range).
        (Property("createdAt", 1714557600000, "int", "createdAt"), "datetime", "not a Unix timestamp"),
        (Property("createdAt", -(2**62), "int", "createdAt"), "datetime", "not a Unix timestamp"),
        # Text that is no int, JSON number or bool of the definition's type is still skipped.
        (Property("amount", "4.5", "str", "amount"), "int", "a str value does not fit"),
        (Property("amount", "9223372036854775808", "str", "amount"), "int", "a str value does not fit"),
        (Property("amount", "007", "str", "amount"), "int", "a str value does not fit"),
        (Property("amount", " 45", "str", "amount"), "int", "a str value does not fit"),
        (Property("amount", "+45", "str", "amount"), "int", "a str value does not fit"),
        (Property("amount", "٤٥", "str", "amount"), "int", "a str value does not fit"),
        (Property("ratio", ".5", "str", "ratio"), "float", "a str value does not fit"),
        (Property("ratio", "1e999", "str", "ratio"), "float", "a str value does not fit"),
        (Property("ratio", "NaN", "str", "ratio"), "float", "a str value does not fit"),
        (Property("flag", "yes", "str", "flag"), "bool", "a str value does not fit"),
        (Property("flag", "1", "str", "flag"), "bool", "a str value does not fit"),
        (Property("flag", 1, "int", "flag"), "bool", "a int value does not fit"),
        (Property("seen", "May 1st", "str", "seen"), "datetime", "a str value does not fit"),
        (Property("seen", "2024-05-01", "datetime", "seen"), "int", "a datetime value does not fit"),
        (Property("amount", 46.5, "float", "amount"), "int", "a float value does not fit"),
        (Property("amount", 2.0**63, "float", "amount"), "int", "a float value does not fit"),
        # Beyond 64 bits an integer is kept as exact text, which no int property can hold.
        (Property("amount", 2**63, "str", "amount"), "int", "a str value does not fit"),
    ],
)
def test_value_not_fitting_the_definition_says_why(prop, defined, reason):
    with pytest.raises(ValueError, match=reason):
        conform_to_definition(prop, defined)


@pytest.mark.parametrize(
    "value",
    [
        # Valid ISO-8601 date-times that are out of range once in UTC: once an OverflowError (500).
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:30:00-01:00",
    ],
)
def test_date_time_out_of_range_in_utc_is_skipped_and_the_rest_kept(value):
    update = map_identify(identify({"birthday": value, "plan": "pro"}))
    assert [(skipped.trait, skipped.reason) for skipped in update.skipped] == [("birthday", "date-time outside the years 1 to 9999 once in UTC")]
    assert props(update)["plan"] == ("pro", "str")


def test_years_below_1000_are_written_with_four_digits():
    # strftime wrote "500-01-01T00:00:00Z", which Mailjet's RFC 3339 check refuses.
    assert render_value("0500-01-01", "datetime") == "0500-01-01T00:00:00Z"
    assert render_value(-62135596800, "datetime") == "0001-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # As Segment libraries write them: "Z", fractions of 1 to 9 digits, offsets with or without ":".
        ("2024-05-01T10:00:00.123Z", datetime(2024, 5, 1, 10, 0, 0, 123000, timezone.utc)),
        ("2024-05-01T10:00:00.1Z", datetime(2024, 5, 1, 10, 0, 0, 100000, timezone.utc)),
        ("2024-05-01T10:00:00.12345+02:00", datetime(2024, 5, 1, 8, 0, 0, 123450, timezone.utc)),
        ("2024-05-01T10:00Z", datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)),
        ("2024-05-01 10:00:00-0130", datetime(2024, 5, 1, 11, 30, tzinfo=timezone.utc)),
        ("1990-05-12", datetime(1990, 5, 12, tzinfo=timezone.utc)),
        ("2024-05-01T10:00:00", datetime(2024, 5, 1, 10, tzinfo=timezone.utc)),
        ("2024-05-01T10:00:00+24:00", None),
        ("2024-05-01T10:00:00+01:60", None),
        ("2024-02-30", None),
        ("2024-05-01T24:00:00Z", None),
        # More digits than a datetime holds, cut to microseconds: .NET's "o" format writes 7 and
        # Go's RFC3339Nano (analytics-go marshals time.Time so) up to 9. Once read as text.
        ("2024-05-01T10:00:00.1234567Z", datetime(2024, 5, 1, 10, 0, 0, 123456, timezone.utc)),
        ("2024-05-01T10:00:00.999999999+02:00", datetime(2024, 5, 1, 8, 0, 0, 999999, timezone.utc)),
        ("2024-05-01T10:00:00.1234567891Z", None),
        ("2024-05-01T10:00:00z", None),
        ("\u0662\u0660\u0662\u0664-05-01", None),
        # What datetime.fromisoformat also reads, and no Segment library writes.
        ("2024-W18-3", None),
        ("20240501T100000Z", None),
    ],
)
def test_parse_iso_datetime(text, expected):
    assert parse_iso_datetime(text) == expected


def test_iso_timestamps_with_z_or_any_fraction_become_datetimes():
    update = map_identify(identify({"a": "2024-05-01T10:00:00.123Z", "b": "2024-05-01T10:00:00.12Z", "c": "2024-05-01T10:00:00.123456789Z"}))
    assert props(update)["a"] == ("2024-05-01T10:00:00Z", "datetime")
    assert props(update)["b"] == ("2024-05-01T10:00:00Z", "datetime")
    assert props(update)["c"] == ("2024-05-01T10:00:00Z", "datetime")


def test_traits_nested_deeper_than_the_recursion_limit_are_skipped_not_a_crash():
    deep: dict = {"leaf": 1}
    for _ in range(5000):
        deep = {"a": deep}
    update = map_identify(identify({"deep": deep, "plan": "pro"}))
    assert [(skipped.trait[:8], skipped.reason) for skipped in update.skipped] == [("deep.a.a", "property name longer than 255 characters")]
    assert props(update)["plan"] == ("pro", "str")


def test_flatten_traits_keeps_the_traits_order_at_every_depth():
    leaves, skipped = flatten_traits({"a": {"b": 1, "c": {}, "d": {"e": 2}}, "f": 3, "g": [1]})
    assert leaves == [("a.b", "a_b", 1), ("a.d.e", "a_d_e", 2), ("f", "f", 3)]
    assert [item.trait for item in skipped] == ["a.c", "g"]


def test_property_name_longer_than_255_is_skipped_and_the_rest_kept():
    update = map_identify(identify({"k" * 256: 1, "j" * 255: 2, "plan": "pro"}))
    assert [(skipped.trait, skipped.reason) for skipped in update.skipped] == [("k" * 256, "property name longer than 255 characters")]
    assert props(update)["j" * 255] == (2, "int")
    assert props(update)["plan"] == ("pro", "str")


def test_user_id_longer_than_255_is_skipped_not_sent():
    update = map_identify(identify(userId="u" * 256))
    assert "segment_user_id" not in props(update)
    assert [(skipped.trait, skipped.reason) for skipped in update.skipped] == [("userId", "text longer than 255 characters")]


def test_text_longer_than_mailjet_limit_is_skipped_not_truncated():
    update = map_identify(identify({"bio": "x" * 256, "motto": "y" * 255}))
    assert "bio" not in props(update)
    assert props(update)["motto"] == ("y" * 255, "str")
    assert [(skipped.trait, skipped.reason) for skipped in update.skipped] == [("bio", "text longer than 255 characters")]


def test_name_longer_than_mailjet_limit_leaves_name_unchanged():
    update = map_identify(identify({"firstName": "A" * 200, "lastName": "B" * 100}))
    assert update.name is None
    # Reported under the traits the message had: it has no "name".
    assert [skipped.trait for skipped in update.skipped] == ["firstName+lastName"]


def test_a_name_of_exactly_255_characters_is_kept_and_one_more_is_not():
    assert map_identify(identify({"firstName": "A" * 127, "lastName": "B" * 127})).name == "A" * 127 + " " + "B" * 127
    update = map_identify(identify({"first_name": "A" * 128, "lastName": "B" * 127}))
    assert update.name is None
    assert [(skipped.trait, skipped.reason) for skipped in update.skipped] == [("first_name+lastName", "contact Name longer than 255 characters")]


def test_a_blank_traits_email_is_absent_like_an_empty_one():
    # A form field left blank often arrives as " ": it names no address, so context.traits.email
    # is used, as it is for "", rather than the identify being refused (400, dropped by Segment).
    assert find_email({"traits": {"email": "  "}, "context": {"traits": {"email": "b@example.com"}}}) == "b@example.com"
    with pytest.raises(MappingError, match="no email"):
        map_identify({"type": "identify", "userId": "u1", "traits": {"email": " \t"}})
