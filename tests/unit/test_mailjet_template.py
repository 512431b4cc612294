"""Mailjet's template language as an inline Send v3.1 message uses it (emulator/mailjet/template.py)."""

from __future__ import annotations

from typing import Any

import pytest

from emulator.mailjet.template import RenderedTooLong, render

# The DevGuide's "Use vars and custom vars" TextPart, exactly.
DEVGUIDE_TEXT = 'Dear passenger, welcome to Mailjet! On this {{var:day:"monday"}}, may the delivery force be with you! {{var:personalmessage:""}}'


def no_contact_data(name: str) -> str | None:
    return None


def test_devguide_vars_are_printed_and_defaults_stand_in_for_missing_ones() -> None:
    given = render(DEVGUIDE_TEXT, {"day": "Tuesday", "personalmessage": "Happy birthday!"}, no_contact_data)
    assert given.text == "Dear passenger, welcome to Mailjet! On this Tuesday, may the delivery force be with you! Happy birthday!"
    defaults = render(DEVGUIDE_TEXT, {}, no_contact_data)
    assert defaults.text == "Dear passenger, welcome to Mailjet! On this monday, may the delivery force be with you! "
    assert given.errors == defaults.errors == ()


def test_contact_properties_come_from_the_recipients_contact_data() -> None:
    properties = {"firstname": "Ada"}
    text = 'Dear {{data:firstname:"passenger"}}, {{ data:city:"somewhere" }}'
    assert render(text, {}, properties.get).text == "Dear Ada, somewhere"


@pytest.mark.parametrize(
    ("text", "variables", "printed"),
    [
        ("{{var:n}} items", {"n": 3}, "3 items"),
        ("{{var:ratio}}", {"ratio": 4.5}, "4.5"),
        ("{{var:flag}}", {"flag": True}, "true"),
        ("{{var:count:0}}", {}, "0"),
        ('{{var:quote:"say \\"hi\\""}}', {}, 'say "hi"'),
        ("{{var:none:\"x\"}}", {"none": None}, "x"),
        ("{{var:Day}}", {"Day": "Mon"}, "Mon"),
        ("{{ var:productname:\"\" }}!", {"productname": "tea"}, "tea!"),
    ],
)
def test_values_and_defaults_print_as_text(text: str, variables: dict[str, Any], printed: str) -> None:
    rendered = render(text, variables, no_contact_data)
    assert (rendered.text, rendered.errors) == (printed, ())


def test_a_value_missing_without_a_default_is_an_error_printed_empty() -> None:
    rendered = render("Hi {{var:name}} from {{data:city}}; {{var:day}}", {"Name": "case matters", "day": "Mon"}, no_contact_data)
    assert rendered.text == "Hi  from ; Mon"
    assert rendered.errors == (
        '{{var:name}}: the variable "name" has no value and the expression no default',
        '{{data:city}}: the contact property "city" has no value and the expression no default',
    )


def test_what_is_not_emulated_is_left_as_written() -> None:
    text = '{% if var:step == "refund" %}{{mj:contact.email}} {{ var:a + 1 }}{% endif %} {{plain}}'
    assert render(text, {"step": "refund", "a": 1}, no_contact_data).text == text


def test_a_missing_value_inside_a_statement_block_is_no_error() -> None:
    # `{% if var:promo %}` is how a template makes a value optional: Mailjet prints the block only
    # when the condition holds, so a value missing inside it blocks nothing.
    text = '{% if var:promo:"" != "" %}Use code {{var:promo}}{% endif %} for {{var:name}}'
    rendered = render(text, {}, no_contact_data)
    assert rendered.text == '{% if var:promo:"" != "" %}Use code {% endif %} for '
    assert rendered.errors == ('{{var:name}}: the variable "name" has no value and the expression no default',)
    nested = render("{% for item in var:items %}{% if item %}{{var:a}}{% endif %}{{var:b}}{% endfor %}{{var:c}}", {}, no_contact_data)
    assert [error.split(":")[1] for error in nested.errors] == ["c}}"]


def test_a_dotted_name_no_key_has_reads_into_nested_objects() -> None:
    variables = {"user": {"name": "Bob", "address": {"city": "Lyon"}}, "plan.name": "flat key"}
    text = "{{var:user.name}} in {{var:user.address.city}}, {{var:plan.name}}, {{var:user.age:\"?\"}}"
    assert render(text, variables, no_contact_data).text == "Bob in Lyon, flat key, ?"


def test_a_stray_statement_opening_swallows_nothing() -> None:
    # "{%" without its "%}" before the next brace is text: the expressions after it are printed, and
    # a later "%}" (CSS's "100%}") does not close it.
    text = '<p>{%}</p> Hi {{var:name}}, code {{var:missing}} <div style="x">{width:100%}</div>'
    rendered = render(text, {"name": "Ann"}, no_contact_data)
    assert rendered.text == '<p>{%}</p> Hi Ann, code  <div style="x">{width:100%}</div>'
    assert rendered.errors == ('{{var:missing}}: the variable "missing" has no value and the expression no default',)


def test_an_unbalanced_statement_block_is_an_error() -> None:
    assert render("{% if var:x %}{{var:missing}}", {}, no_contact_data).errors == ("1 {% if %} or {% for %} block(s) not closed",)
    assert render("{% endif %}", {}, no_contact_data).errors == ("{% endif %} closes no block",)
    assert render("{% for a in var:b %}{% if a %}x{% endif %}{% endfor %}", {}, no_contact_data).errors == ()


def test_a_limit_stops_the_printing_past_it() -> None:
    assert render("ab{{var:x}}{{var:x}}c", {"x": "123"}, no_contact_data, limit=9).text == "ab123123c"
    for text in ("ab{{var:x}}{{var:x}}cd", "{{var:x}}" * 1000):
        with pytest.raises(RenderedTooLong):
            render(text, {"x": "123"}, no_contact_data, limit=9)
    # Only the printed text counts: expressions printing less than they take are within it.
    assert render("{{var:missing:\"\"}}" * 10, {}, no_contact_data, limit=0).text == ""
    # Printing stops at the limit: a value is not looked up, nor the text built, past it.
    looked_up: list[str] = []

    def counted(name: str) -> str:
        looked_up.append(name)
        return "x" * 10

    with pytest.raises(RenderedTooLong):
        render("{{data:p}}" * 1000, {}, counted, limit=95)
    assert len(looked_up) == 10
    # A text with nothing to read is no printed text: given back as it is, whatever its length.
    plain = "no expression here " * 10
    assert render(plain, {}, no_contact_data, limit=0).text is plain


@pytest.mark.parametrize("opening", ["{%", "{% ", "{%a", "{{var:a", "{{ var : a ", "{{var:a:"])
def test_a_tag_or_expression_left_open_before_a_long_run_is_text(opening: str) -> None:
    # Each was tried at every split of the run (spaces, then a word, then the rest): 64,000 characters
    # after one took 14 s of the three servers' one event loop. Now one pass: printed as written.
    for run in (" " * 64_000, "a" * 64_000):
        text = opening + run
        assert render(text, {"a": "x"}, no_contact_data).text == text
