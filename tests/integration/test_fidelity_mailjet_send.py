"""Send API v3.1 replayed from the real world: documented examples, official-client calls, observed bodies.

Each request is copied from a public source and sent over HTTP; the answer is compared with what
that source shows Mailjet answering. Sources:
- DevGuide: mailjet/api-documentation `guides/_send-api.md` (the "Send API v3.1" guide, its
  samples, its "Send API JSON properties" table and its "Send API errors" section);
- mailjet_rest (the venv's 1.9.1): its README "Send API (v3.1)" snippets and its builders;
- observed bodies pasted in public code: swoosh `test/swoosh/adapters/mailjet_test.exs`,
  mailjet-apiv3-go `data_types.go` (`SandBoxMode`), mailjet-apiv3-nodejs `examples/node/src/batchSend.js`.
A partly failed batch is answered 400 with the sent messages' results, as users of the real API
report (mailjet-apiv3-java#121, mailjet-gem#177, mailjet-apiv3-nodejs#271; send.py).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mailjet_rest import Client
from mailjet_rest.builders import MessageBuilder, SendPayloadBuilder
from mailjet_rest.errors import MailjetAuthError, ValidationError

import contracts
from emulator.config import BundleConfig

from .conftest import StartApps, lone_mailjet, reset_then_no_500s

CONFIG = BundleConfig(mailjet_api_key="mj-key", mailjet_secret_key="mj-secret", auth_key="seg-auth-key")
PILOT = {"Email": "pilot@mailjet.com", "Name": "Mailjet Pilot"}
PASSENGER_1 = {"Email": "passenger1@mailjet.com", "Name": "passenger 1"}
# The DevGuide's "Send a basic email" message; the other samples add one property to it.
BASIC = {
    "From": PILOT,
    "To": [PASSENGER_1],
    "Subject": "Your email flight plan!",
    "TextPart": "Dear passenger 1, welcome to Mailjet! May the delivery force be with you!",
    "HTMLPart": '<h3>Dear passenger 1, welcome to <a href="https://www.mailjet.com/">Mailjet</a>!</h3><br />May the delivery force be with you!',
}
SUCCESS_KEYS = {"Status", "CustomID", "To", "Cc", "Bcc"}
RECIPIENT_KEYS = {"Email", "MessageUUID", "MessageID", "MessageHref"}
ERROR_KEYS = {"ErrorIdentifier", "ErrorCode", "StatusCode", "ErrorMessage", "ErrorRelatedTo"}


@dataclass
class Server:
    url: str
    http: httpx.Client

    def client(self, **kwargs: Any) -> Client:
        return Client(auth=(CONFIG.mailjet_api_key, CONFIG.mailjet_secret_key), api_url=f"{self.url}/", version="v3.1", **kwargs)

    def stored(self) -> list[dict[str, Any]]:
        return self.http.get("/_emulator/messages").json()["messages"]


@pytest.fixture(scope="module")
def server(serve: StartApps) -> Iterator[Server]:
    with lone_mailjet(serve, CONFIG) as (url, http):
        yield Server(url, http)


@pytest.fixture(autouse=True)
def fresh(server: Server) -> Iterator[None]:
    yield from reset_then_no_500s(server.http)


def post(server: Server, body: Any) -> httpx.Response:
    return server.http.post("/v3.1/send", json=body)


def assert_success(result: dict[str, Any], to: int = 1, cc: int = 0, bcc: int = 0, custom_id: str = "") -> None:
    """The DevGuide's success entry: every key present, Cc/Bcc as empty arrays, one ID per address."""
    assert set(result) == SUCCESS_KEYS and result["Status"] == "success" and result["CustomID"] == custom_id
    assert [len(result[kind]) for kind in ("To", "Cc", "Bcc")] == [to, cc, bcc]
    for recipient in result["To"] + result["Cc"] + result["Bcc"]:
        assert set(recipient) == RECIPIENT_KEYS
        assert recipient["MessageHref"].endswith(f"/v3/REST/message/{recipient['MessageID']}")


# ---------------------------------------------------------------- DevGuide samples that are sent


@pytest.mark.parametrize(
    ("sample", "extra"),
    [
        ("Send a basic email", {}),
        ("Send with attached files", {"Attachments": [{"ContentType": "text/plain", "Filename": "test.txt", "Base64Content": "VGhpcyBpcyB5b3VyIGF0dGFjaGVkIGZpbGUhISEK"}]}),
        ("inline attachment", {"InlinedAttachments": [{"ContentType": "image/png", "Filename": "logo.png", "ContentID": "id1", "Base64Content": "iVBORw0KGgo="}]}),
        ("Use vars and custom vars", {"Variables": {"day": "Monday"}, "TemplateLanguage": True}),
        ("Use contact properties", {"TemplateLanguage": True}),
        ("Add Email Headers", {"Headers": {"X-My-header": "X2332X-324-432-534"}}),
        ("Send an email with a payload", {"EventPayload": "Eticket,1234,row,15,seat,B"}),
        ("Group into a campaign", {"CustomCampaign": "SendAPI_campaign", "DeduplicateCampaign": True}),
        ("Add URL tags", {"URLTags": "param1=1&param2=2"}),
        ("Real-time Monitoring", {"MonitoringCategory": "Category1"}),
    ],
)
def test_devguide_samples_are_sent(server: Server, sample: str, extra: dict[str, Any]) -> None:
    response = post(server, {"Messages": [{**BASIC, **extra}]})
    assert response.status_code == 200, sample
    [result] = response.json()["Messages"]
    assert_success(result)
    assert contracts.validate("mailjet.send.response", response.json()) == []
    [stored] = server.stored()
    assert stored["MessageID"] == result["To"][0]["MessageID"] and stored["sandbox"] is False


def test_devguide_custom_id_comes_back_in_the_answer(server: Server) -> None:
    [result] = post(server, {"Messages": [{**BASIC, "CustomID": "PassengerEticket1234"}]}).json()["Messages"]
    assert_success(result, custom_id="PassengerEticket1234")
    assert server.stored()[0]["CustomID"] == "PassengerEticket1234"


def test_devguide_to_cc_and_bcc_get_one_message_each_in_order(server: Server) -> None:
    message = {
        **BASIC,
        "To": [PASSENGER_1, {"Email": "passenger2@mailjet.com", "Name": "passenger 2"}],
        "Cc": [{"Email": "copilot@mailjet.com", "Name": "Copilot"}],
        "Bcc": [{"Email": "air-traffic-control@mailjet.com", "Name": "Air traffic control"}],
    }
    [result] = post(server, {"Messages": [message]}).json()["Messages"]
    assert_success(result, to=2, cc=1, bcc=1)
    emails = [r["Email"] for kind in ("To", "Cc", "Bcc") for r in result[kind]]
    assert emails == ["passenger1@mailjet.com", "passenger2@mailjet.com", "copilot@mailjet.com", "air-traffic-control@mailjet.com"]
    assert len({r["MessageID"] for kind in ("To", "Cc", "Bcc") for r in result[kind]}) == 4


def test_devguide_send_in_bulk_keeps_the_order(server: Server) -> None:
    second = {**BASIC, "To": [{"Email": "passenger2@mailjet.com", "Name": "passenger 2"}]}
    response = post(server, {"Messages": [BASIC, second]})
    assert response.status_code == 200
    results = response.json()["Messages"]
    assert [r["To"][0]["Email"] for r in results] == ["passenger1@mailjet.com", "passenger2@mailjet.com"]


def test_devguide_bulk_with_one_message_in_error_has_the_documented_body(server: Server) -> None:
    # "API response with 1 message in error": the first lacks any part, the second is sent.
    no_part = {"From": PILOT, "To": [PASSENGER_1], "Subject": "Your email flight plan!"}
    second = {**BASIC, "To": [{"Email": "passenger2@mailjet.com", "Name": "passenger 2"}]}
    response = post(server, {"Messages": [no_part, second]})
    # The DevGuide shows only the body; users saw the status (send.py).
    assert response.status_code == 400
    failed, sent = response.json()["Messages"]
    assert set(failed) == {"Status", "Errors"} and failed["Status"] == "error"
    [error] = failed["Errors"]
    assert set(error) == ERROR_KEYS
    assert (error["ErrorCode"], error["StatusCode"], error["ErrorRelatedTo"]) == ("send-0003", 400, ["HTMLPart", "TextPart"])
    assert error["ErrorMessage"] == 'At least "HTMLPart", "TextPart" or "TemplateID" must be provided.'
    assert_success(sent)
    assert sent["To"][0]["Email"] == "passenger2@mailjet.com"
    # "All validated messages will be processed for sending": the valid one is stored, alone.
    assert [m["to"]["Email"] for m in server.stored()] == ["passenger2@mailjet.com"]


def test_devguide_sandbox_answer(server: Server) -> None:
    response = post(server, {"Messages": [BASIC], "SandboxMode": True})
    assert response.status_code == 200
    body = response.json()
    href = body["Messages"][0]["To"][0].pop("MessageHref")
    assert href.endswith("/message/0")
    # The DevGuide's sample answer, MessageHref aside (ours points at this server's /v3/REST/).
    assert body == {"Messages": [{"Status": "success", "CustomID": "", "To": [{"Email": "passenger1@mailjet.com", "MessageUUID": "", "MessageID": 0}], "Cc": [], "Bcc": []}]}
    # "without delivering the message": no contact is created.
    assert server.http.get("/v3/REST/contact").json()["Total"] == 0


def test_devguide_use_a_template_is_refused_as_templates_are_not_emulated(server: Server) -> None:
    # README Fidelity: templates are not emulated (send-0010, the documented code for a template
    # the key cannot use).
    response = post(server, {"Messages": [{"From": PILOT, "To": [PASSENGER_1], "TemplateID": 1, "TemplateLanguage": True, "Subject": "Your email flight plan!"}]})
    assert response.status_code == 400
    [error] = response.json()["Messages"][0]["Errors"]
    assert (error["ErrorCode"], error["ErrorRelatedTo"]) == ("send-0010", ["TemplateID"])


# ---------------------------------------------------------------- DevGuide "Send API errors"


def test_devguide_global_error_for_broken_json(server: Server) -> None:
    response = server.http.post("/v3.1/send", content=b'{"Messages": [', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"ErrorIdentifier", "ErrorCode", "ErrorMessage", "StatusCode"}
    assert (body["ErrorCode"], body["StatusCode"]) == ("mj-0002", 400)
    assert body["ErrorMessage"] == "Malformed JSON, please review the syntax and properties types."


def test_devguide_missing_to_has_the_documented_text(server: Server) -> None:
    response = post(server, {"Messages": [{"From": PILOT, "Subject": "x", "TextPart": "x"}]})
    assert response.status_code == 400
    [error] = response.json()["Messages"][0]["Errors"]
    assert set(error) == ERROR_KEYS
    assert (error["ErrorMessage"], error["ErrorRelatedTo"]) == ("The To is mandatory but missing from the input", ["To"])


def test_devguide_a_recipient_given_twice_is_counted_once(server: Server) -> None:
    # DevGuide properties table, To and Cc/Bcc: "If a recipient is specified twice (in the to, cc,
    # or bcc), it is counted only once"; MAX RECIPIENTS: 50.
    people = [{"Email": f"crew{i}@mailjet.com"} for i in range(40)]
    response = post(server, {"Messages": [{**BASIC, "To": people, "Cc": people[:30], "Bcc": people[:10]}]})
    assert response.status_code == 200, response.text
    assert_success(response.json()["Messages"][0], to=40, cc=30, bcc=10)
    more = people + [{"Email": f"extra{i}@mailjet.com"} for i in range(11)]
    refused = post(server, {"Messages": [{**BASIC, "To": people, "Cc": more}]})
    assert refused.status_code == 400
    assert [e["ErrorCode"] for e in refused.json()["Messages"][0]["Errors"]] == ["send-0015"]


def test_observed_invalid_email_error(server: Server) -> None:
    # swoosh test fixture (mirrors a real answer): "\"brokenemail\" is an invalid email address.", To[0].Email.
    response = post(server, {"Messages": [{"From": {"Email": "sender@example.com", "Name": ""}, "To": [{"Email": "brokenemail", "Name": ""}], "Subject": "Hello, world!", "Headers": {}, "TextPart": "x"}]})
    assert response.status_code == 400
    [error] = response.json()["Messages"][0]["Errors"]
    assert (error["ErrorCode"], error["StatusCode"], error["ErrorRelatedTo"]) == ("mj-0013", 400, ["To[0].Email"])
    assert error["ErrorMessage"] == '"brokenemail" is an invalid email address.'


def test_nodejs_batch_example_with_advance_error_handling(server: Server) -> None:
    # mailjet-apiv3-nodejs examples/node/src/batchSend.js: a root AdvanceErrorHandling, one good and
    # one bad message; each is answered on its own.
    body = {
        "Messages": [
            {"From": PILOT, "To": [{"Email": "passenger1@test.com"}], "Subject": "Your flight plan (1)", "TextPart": "ok", "CustomID": "order-1001"},
            {"From": PILOT, "To": [{"Email": "not-a-valid-address"}], "Subject": "Your flight plan (2)", "TextPart": "ko", "CustomID": "order-1002"},
        ],
        "AdvanceErrorHandling": True,
    }
    sent, failed = post(server, body).json()["Messages"]
    assert_success(sent, custom_id="order-1001")
    assert failed["Status"] == "error" and [e["ErrorCode"] for e in failed["Errors"]] == ["mj-0013"]


def test_go_client_spelling_of_sandbox_mode(server: Server) -> None:
    # mailjet-apiv3-go MessagesV31 serialises the root flag as "SandBoxMode".
    [result] = post(server, {"Messages": [BASIC], "SandBoxMode": True}).json()["Messages"]
    assert (result["To"][0]["MessageID"], result["To"][0]["MessageUUID"]) == (0, "")


# ---------------------------------------------------------------- the official Python client


def test_mailjet_rest_readme_send_a_basic_email(server: Server) -> None:
    data = {
        "Messages": [
            {
                "From": {"Email": "pilot@mailjet.com", "Name": "Mailjet Pilot"},
                "To": [{"Email": "passenger1@mailjet.com", "Name": "Passenger 1"}],
                "Subject": "Your email flight plan!",
                "TextPart": "Dear passenger 1, welcome to Mailjet!",
                "HTMLPart": "<h3>Dear passenger 1, welcome to Mailjet!</h3>",
            }
        ]
    }
    with server.client() as mailjet:
        result = mailjet.send.create(data=data)
    assert result.status_code == 200
    assert_success(result.json()["Messages"][0])


def test_mailjet_rest_readme_template_and_tracing_samples_are_400s(server: Server) -> None:
    template = {"From": PILOT, "To": [PASSENGER_1], "TemplateID": 1234567, "TemplateLanguage": True,
                "Subject": "Your email flight plan!", "Variables": {"name": "John Doe", "custom_data": "Welcome aboard!"}}
    # The README's "Smart Tracing" sample sends no part at all.
    tracing = {"From": {"Email": "test@test.com"}, "To": [{"Email": "user@test.com"}], "CustomID": "Promo_Black_Friday"}
    with server.client() as mailjet:
        for message, code in ((template, "send-0010"), (tracing, "send-0003")):
            with pytest.raises(ValidationError) as refused:
                mailjet.send.create(data={"Messages": [message]})
            assert refused.value.status_code == 400
            [error] = json.loads(refused.value.response_body)["Messages"][0]["Errors"]
            assert error["ErrorCode"] == code


def test_devguide_template_language_samples_print_variables_and_contact_properties(server: Server) -> None:
    # The DevGuide's "Use vars and custom vars" and "Use contact properties" messages, exactly, sent
    # with the official client to a passenger whose contact has a firstname and to one without.
    variables = {
        **BASIC,
        "TextPart": 'Dear passenger, welcome to Mailjet! On this {{var:day:"monday"}}, may the delivery force be with you! {{var:personalmessage:""}}',
        "HTMLPart": '<h3>Dear passenger, welcome to <a href="https://www.mailjet.com/">Mailjet</a>!<br /> On this {{var:day:"monday"}}, may the delivery force be with you! {{var:personalmessage:""}}',
        "TemplateLanguage": True,
        "Variables": {"day": "Tuesday", "personalmessage": "Happy birthday!"},
    }
    properties = {
        **BASIC,
        "To": [PASSENGER_1, {"Email": "passenger2@mailjet.com"}],
        "TemplateLanguage": True,
        "TextPart": 'Dear {{data:firstname:"passenger"}}, welcome to Mailjet! May the delivery force be with you!',
        "HTMLPart": '<h3>Dear {{data:firstname:"passenger"}}, welcome to <a href="https://www.mailjet.com/">Mailjet</a>!<br /> May the delivery force be with you!',
    }
    rest = Client(auth=(CONFIG.mailjet_api_key, CONFIG.mailjet_secret_key), api_url=f"{server.url}/", version="v3")
    assert rest.contactmetadata.create(data={"Name": "firstname", "DataType": "str"}).status_code == 201
    assert rest.contact.create(data={"Email": PASSENGER_1["Email"]}).status_code == 201
    assert rest.contactdata.update(id=PASSENGER_1["Email"], data={"Data": [{"Name": "firstname", "Value": "Ada"}]}).status_code == 200
    with server.client() as mailjet:
        assert mailjet.send.create(data={"Messages": [variables, properties]}).status_code == 200
    vars_message, ada, other = server.stored()
    assert vars_message["text_part"] == "Dear passenger, welcome to Mailjet! On this Tuesday, may the delivery force be with you! Happy birthday!"
    assert vars_message["html_part"].endswith("On this Tuesday, may the delivery force be with you! Happy birthday!")
    assert (ada["text_part"], other["text_part"]) == (
        "Dear Ada, welcome to Mailjet! May the delivery force be with you!",
        "Dear passenger, welcome to Mailjet! May the delivery force be with you!",
    )
    assert ada["html_part"].startswith('<h3>Dear Ada, welcome to <a href="https://www.mailjet.com/">')
    assert [m["template_error"] for m in (vars_message, ada, other)] == ["", "", ""]


def test_a_link_printed_from_a_variable_is_the_one_a_recipient_clicks(server: Server) -> None:
    message = {**BASIC, "TemplateLanguage": True, "Subject": "Order {{var:order_id}} shipped",
               "HTMLPart": '<a href="https://shop.example/orders/{{var:order_id}}">track it</a>', "Variables": {"order_id": "42"}}
    with server.client() as mailjet:
        message_id = mailjet.send.create(data={"Messages": [message]}).json()["Messages"][0]["To"][0]["MessageID"]
    [stored] = server.stored()
    assert stored["subject"] == "Order 42 shipped"
    clicked = server.http.post(f"/_emulator/messages/{message_id}/events", json={"event": "click", "url": "https://shop.example/orders/42"})
    assert clicked.status_code == 201, clicked.text
    assert clicked.json()["payload"]["url"] == "https://shop.example/orders/42"


def test_mailjet_rest_builders_with_inline_attachment_globals_and_sandbox(server: Server) -> None:
    with tempfile.TemporaryDirectory() as folder:
        logo = Path(folder) / "logo.png"
        logo.write_bytes(b"\x89PNG\r\n\x1a\n")
        message = (
            MessageBuilder()
            .set_sender("pilot@mailjet.com", "Mailjet Pilot")
            .add_recipient("passenger@mailjet.com", "John Doe")
            .add_cc("copilot@mailjet.com")
            .set_subject("Your Boarding Pass")
            .set_content(html="<h3>Welcome aboard!</h3>")
            .attach_inline(logo, base_dir=Path(folder))
            .build()
        )
    payload = SendPayloadBuilder().add_message(message).set_sandbox_mode(True).set_globals({"CustomID": "boarding"}).build()
    with server.client() as mailjet:
        result = mailjet.send.create(data=payload)
    assert result.status_code == 200
    [sent] = result.json()["Messages"]
    assert_success(sent, cc=1, custom_id="boarding")
    assert {r["MessageID"] for r in sent["To"] + sent["Cc"]} == {0}


def test_mailjet_rest_bad_credentials_on_send(server: Server) -> None:
    with Client(auth=("mj-key", "wrong"), api_url=f"{server.url}/", version="v3.1") as mailjet:
        with pytest.raises(MailjetAuthError) as refused:
            mailjet.send.create(data={"Messages": [BASIC]})
    assert refused.value.status_code == 401
    body = json.loads(refused.value.response_body)
    assert {"ErrorIdentifier", "StatusCode", "ErrorMessage"} <= set(body) and body["StatusCode"] == 401
    assert server.stored() == []
