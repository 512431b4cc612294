"""Every Mailjet contract: the reference's verbatim examples pass, broken payloads fail where expected."""

from __future__ import annotations

import copy
import json

import pytest

import contracts

MAILJET_CONTRACTS = [name for name in contracts.names() if name.startswith("mailjet.")]

# Verbatim from reference/mailjet.md (DevGuide, _newsletter.md, _contacts_bulk.md, _send-api.md, _event-api.md).
CONTACT_DEVGUIDE = json.loads(
    '{"IsExcludedFromCampaigns":true,"Name":"New Contact","CreatedAt":"2018-01-01T00:00:00",'
    '"DeliveredCount":10,"Email":"passenger@mailjet.com","ExclusionFromCampaignsUpdatedAt":"2018-01-01T00:00:00",'
    '"ID":123456789,"IsOptInPending":false,"IsSpamComplaining":false,"LastActivityAt":"2018-01-01T00:00:00",'
    '"LastUpdateAt":"2018-01-01T00:00:00","UnsubscribedAt":"2018-01-01T00:00:00","UnsubscribedBy":"2018-01-01T00:00:00"}'
)
CONTACT_OBSERVED = json.loads(
    '{"CreatedAt":"2026-01-07T09:32:32Z","DeliveredCount":0,"Email":"febe@example.com","ExclusionFromCampaignsUpdatedAt":"",'
    '"ID":12338756133,"IsExcludedFromCampaigns":false,"IsOptInPending":false,"IsSpamComplaining":false,'
    '"LastActivityAt":"","LastUpdateAt":"","Name":"Geraldin Febe","UnsubscribedAt":"","UnsubscribedBy":""}'
)
CONTACTSLIST = {"Name": "my_contactslist", "Address": "abcdef123", "CreatedAt": "2018-01-01T00:00:00", "ID": 123456,
                "SubscriberCount": 111, "IsDeleted": False}
MANAGECONTACT_RESPONSE = json.loads(
    '{"Count":1,"Data":[{"ContactID":"10","Email":"mrsmith@mailjet.com","Action":"addnoforce","Name":"MrSmith",'
    '"Properties":{"property1":"value","propertyN":"valueN"}}],"Total":1}'
)
MANAGECONTACT_REQUEST = {"Email": "mrsmith@mailjet.com", "Name": "MrSmith", "Action": "addnoforce",
                         "Properties": {"property1": "value", "propertyN": "valueN"}}
JOB = json.loads(
    '{"ContactsLists":[{"ListID":987654321,"Action":"addnoforce"}],"Count":1,"Error":"","ErrorFile":"",'
    '"JobEnd":"2018-01-01T00:00:00","JobStart":"2018-01-01T00:00:00","Status":"Completed"}'
)
BULK_REQUEST = {"Action": "addnoforce", "Contacts": [{"Email": "a@example.com", "Name": "A", "IsExcludedFromCampaigns": "true",
                                                      "Properties": {"age": 30, "gone": None}}]}
# The API matches keys in any case (reference/mailjet.md §1): php#244 posted {"email": ...}, and
# RudderStack's destination sends lowercase "email" and "properties" in its contacts (§7).
MANAGECONTACT_LOWERCASE = {"email": "low@example.com", "action": "addnoforce", "properties": {"plan": "pro"}}
BULK_RUDDERSTACK = {"Action": "addnoforce", "Contacts": [{"email": "a@example.com", "Name": "A", "IsExcludedFromCampaigns": False,
                                                          "properties": {"plan": "pro"}}]}
BULK_ANY_CASE = {"contactslists": [{"listid": "1", "ACTION": "addforce"}], "CONTACTS": [{"EMAIL": "a@b.co", "isExcludedFromCampaigns": "true"}]}
# The official Go client (mailjet-apiv3-go) marshals every field of its request structs that has no
# omitempty: ContactslistManageContact and AddContactAction send "Name": "" and "Properties": null
# when not set, ContactManagemanycontacts "ContactsLists": null (resources/resources.go, core.go buildMap).
MANAGECONTACT_GO = {"Email": "go@example.com", "Name": "", "Action": "addnoforce", "Properties": None}
BULK_GO = {"Action": "addnoforce", "Contacts": [{"Email": "go@example.com", "Name": "", "Properties": None}]}
BULK_CONTACT_GO = {"ContactsLists": None, "Contacts": [{"Email": "go@example.com", "Name": "", "Properties": None}]}
METADATA = {"Datatype": "str", "ID": 4321, "Name": "first_name", "NameSpace": "static"}
CONTACTDATA = json.loads('{"ContactID":207971034,"Data":[{"Name":"test","Value":"Test 2"}],"ID":207971034}')
LISTRECIPIENT = json.loads(
    '{"IsUnsubscribed":true,"ContactID":987654321,"ID":1234567890,"IsActive":true,"ListID":123456,"ListName":"abcdef123",'
    '"SubscribedAt":"2018-01-01T00:00:00","UnsubscribedAt":"2018-01-01T00:00:00"}'
)
# Real rows pasted in mailjet-apiv3-php#40 (2016): no SubscribedAt.
LISTRECIPIENT_PHP40 = {"ContactID": 1, "ID": 2, "IsActive": True, "IsUnsubscribed": False, "ListID": 3, "ListName": "list",
                       "UnsubscribedAt": ""}
CALLBACK = {"APIKeyID": 1234, "EventType": "click", "ID": 567, "IsBackup": False, "Status": "alive",
            "Url": "https://example.com/click.php", "Version": 2}
SEND_REQUEST = json.loads(
    '{"Messages":[{"From":{"Email":"pilot@mailjet.com","Name":"Mailjet Pilot"},'
    '"To":[{"Email":"passenger1@mailjet.com","Name":"passenger 1"}],'
    '"Subject":"Your email flight plan!","TextPart":"Dear passenger 1, …","HTMLPart":"<h3>…</h3>",'
    '"CustomID":"PassengerEticket1234","EventPayload":"Eticket,1234,row,15,seat,B"}],"SandboxMode": true}'
)
# Properties every message needs may come from Globals, To excepted (DevGuide "Set global payload
# properties": "In Globals you can specify values for all message properties, except To"): From,
# Subject and the parts once, To per message; arrays such as Cc are appended to the message's.
SEND_GLOBALS = {"Globals": {"From": {"Email": "pilot@mailjet.com", "Name": "Mailjet Pilot"}, "Subject": "Your email flight plan!",
                            "TextPart": "Dear passenger, welcome!", "TemplateLanguage": True},
                "Messages": [{"To": [{"Email": "passenger1@mailjet.com"}], "TemplateErrorDeliver": True},
                             {"To": [{"Email": "passenger2@mailjet.com"}], "Subject": "Your own plan"}]}
SEND_GLOBAL_CC = {"Globals": {"Cc": [{"Email": "ops@example.com"}], "CustomCampaign": "spring"},
                  "Messages": [{"From": {"Email": "a@b.co"}, "To": [{"Email": "c@d.co"}], "Cc": [{"Email": "e@f.co"}],
                                "HTMLPart": "<p>x</p>", "DeduplicateCampaign": True}]}
# mailjet-apiv3-go's MessagesV31 names the root flag "SandBoxMode"; root keys match in any case.
SEND_GO_SANDBOX = {"Messages": SEND_REQUEST["Messages"], "SandBoxMode": True}
# mailjet-apiv3-go's InfoMessagesV31 also has StatisticsContactsListID (an int, sent when set).
SEND_GO_STATISTICS_LIST = {"Messages": [{**SEND_REQUEST["Messages"][0], "StatisticsContactsListID": 42}]}
# DevGuide "Set global payload properties" writes "variables" in lower case, in Globals and a message.
SEND_GLOBAL_VARIABLES = {"Globals": {"variables": {"var1": "value1", "var2": "value2"}},
                         "Messages": [{**SEND_REQUEST["Messages"][0], "TemplateLanguage": True, "variables": {"var3": "value3"}}]}
# A null variable in Globals that the message overrides is gone once merged: the fake takes it.
SEND_GLOBAL_NULL_OVERRIDDEN = {"Globals": {"Variables": {"a": None}},
                               "Messages": [{**SEND_REQUEST["Messages"][0], "variables": {"a": "x"}}]}
SEND_RESPONSE = json.loads(
    '{"Messages":[{"Status":"success","CustomID":"","To":[{"Email":"passenger1@mailjet.com",'
    '"MessageUUID":"cb927469-36fd-4c02-bce4-0d199929a207","MessageID":70650219165027410,'
    '"MessageHref":"https://api.mailjet.com/v3/REST/message/70650219165027410"}],"Cc":[],"Bcc":[]}]}'
)
SEND_PARTIAL_ERROR = {"Messages": [
    {"Status": "error", "Errors": [{"ErrorIdentifier": "x", "ErrorCode": "send-0003", "StatusCode": 400,
                                    "ErrorMessage": 'At least "HTMLPart", "TextPart" or "TemplateID" must be provided.',
                                    "ErrorRelatedTo": ["HTMLPart", "TextPart"]}]},
    SEND_RESPONSE["Messages"][0]]}
SEND_ERROR = json.loads(
    '{"ErrorIdentifier":"06df1144-c6f3-4ca7-8885-7ec5d4344113","ErrorCode":"mj-0002",'
    '"ErrorMessage":"Malformed JSON, please review the syntax and properties types.","StatusCode":400}'
)
SEND_401 = {"ErrorIdentifier": "26d1af4f-2c3f-4e9a-96f7-60ab32470a13", "StatusCode": 401,
            "ErrorMessage": "API key authentication/authorization failure. You may be unauthorized to access the API or your API key may be expired. Visit API keys management section to check your keys."}
REST_ERRORS = [
    {"ErrorInfo": "", "ErrorMessage": 'MJ18 A Contact resource with value "foo@domain.tld" for Email already exists.', "StatusCode": 400},
    {"ErrorInfo": "", "ErrorMessage": "Object not found", "StatusCode": 404},
    {"ErrorInfo": "MJ08 Property Name is invalid: MJ04 Value must have at least length 1", "ErrorMessage": "Object properties invalid", "StatusCode": 400},
    {"ErrorInfo": "", "ErrorMessage": "Method not allowed", "StatusCode": 405},
    {"ErrorIdentifier": "A8EBD4F2-1", "ErrorInfo": "", "ErrorMessage": "An Unexpected Error occurred during API request", "StatusCode": "500"},
    {"ErrorInfo": {"Properties": [{"property1": "Property not defined"}, {"propertyN": "Property type does not match definition"}]},
     "ErrorMessage": "Object properties invalid", "StatusCode": 400},
    {"ErrorInfo": "", "ErrorMessage": {"ContactsLists": [{"ListID": "9", "Action": "x", "Error": "action missing or not valid"}]}, "StatusCode": 400},
]
EVENTS = {
    "sent": '{"event":"sent","time":1433333949,"MessageID":19421777835146490,"Message_GUID":"1ab23cd4-e567-8901-2345-6789f0gh1i2j","email":"api@mailjet.com","mj_campaign_id":7257,"mj_contact_id":4,"customcampaign":"","mj_message_id":"19421777835146490","smtp_reply":"sent (250 2.0.0 OK 1433333948 fa5si855896wjc.199 - gsmtp)","CustomID":"helloworld","Payload":""}',
    "open": '{"event":"open","time":1433103519,"MessageID":19421777396190490,"Message_GUID":"1ab23cd4-e567-8901-2345-6789f0gh1i2j","email":"api@mailjet.com","mj_campaign_id":7173,"mj_contact_id":320,"customcampaign":"","CustomID":"helloworld","Payload":"","ip":"127.0.0.1","geo":"US","agent":"Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0"}',
    "click": '{"event":"click","time":1433334653,"MessageID":19421777836302490,"Message_GUID":"1ab23cd4-e567-8901-2345-6789f0gh1i2j","email":"api@mailjet.com","mj_campaign_id":7272,"mj_contact_id":4,"customcampaign":"","CustomID":"helloworld","Payload":"","url":"https://mailjet.com","ip":"127.0.0.1","geo":"FR","agent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_0) AppleWebKit/537.36"}',
    "bounce": '{"event":"bounce","time":1430812195,"MessageID":13792286917004336,"Message_GUID":"1ab23cd4-e567-8901-2345-6789f0gh1i2j","email":"bounce@mailjet.com","mj_campaign_id":0,"mj_contact_id":0,"customcampaign":"","CustomID":"helloworld","Payload":"","blocked":false,"hard_bounce":true,"error_related_to":"recipient","error":"user unknown","comment":"Host or domain name not found. Name service error for name=lbjsnrftlsiuvbsren.com type=A: Host not found"}',
    "blocked": '{"event":"blocked","time":1430812195,"MessageID":13792286917004336,"Message_GUID":"1ab23cd4-e567-8901-2345-6789f0gh1i2j","email":"bounce@mailjet.com","mj_campaign_id":0,"mj_contact_id":0,"customcampaign":"","CustomID":"helloworld","Payload":"","error_related_to":"recipient","error":"user unknown"}',
    "spam": '{"event":"spam","time":1430812195,"MessageID":13792286917004336,"Message_GUID":"1ab23cd4-e567-8901-2345-6789f0gh1i2j","email":"bounce@mailjet.com","mj_campaign_id":0,"mj_contact_id":0,"customcampaign":"","CustomID":"helloworld","Payload":"","source":"JMRPP"}',
    "unsub": '{"event":"unsub","time":1433334941,"MessageID":20547674933128000,"Message_GUID":"1ab23cd4-e567-8901-2345-6789f0gh1i2j","email":"api@mailjet.com","mj_campaign_id":7276,"mj_contact_id":126,"customcampaign":"","CustomID":"helloworld","Payload":"","mj_list_id":1,"ip":"127.0.0.1","geo":"FR","agent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/42.0.2311.135 Safari/537.36"}',
}

VALID = {
    "mailjet.contact": [CONTACT_DEVGUIDE, CONTACT_OBSERVED],
    "mailjet.contactslist": [CONTACTSLIST],
    "mailjet.managecontact.request": [MANAGECONTACT_REQUEST, {"Email": "a@b.co", "Action": "unsub"}, MANAGECONTACT_LOWERCASE,
                                      {"EMAIL": "a@b.co", "AcTiOn": "unsub", "name": "A"}, MANAGECONTACT_GO],
    "mailjet.managecontact.response": [MANAGECONTACT_RESPONSE],
    "mailjet.managemanycontacts.request": [BULK_REQUEST, BULK_RUDDERSTACK, BULK_GO, {"action": "unsub", "CONTACTS": [{"EMAIL": "a@b.co"}]}],
    "mailjet.contact.managemanycontacts.request": [{"ContactsLists": [{"ListID": 1, "Action": "addforce"}], "Contacts": [{"Email": "a@b.co"}]},
                                                   BULK_ANY_CASE, BULK_CONTACT_GO, {"Contacts": [{"Email": "a@b.co"}]}],
    "mailjet.managemanycontacts.job": [JOB, {**JOB, "Status": "In Progress", "JobEnd": "", "Count": 0}],
    "mailjet.contactmetadata": [METADATA],
    "mailjet.contactdata": [CONTACTDATA, {"ContactID": 1, "Data": [], "ID": 1}],
    "mailjet.listrecipient": [LISTRECIPIENT, LISTRECIPIENT_PHP40],
    "mailjet.eventcallbackurl": [CALLBACK],
    "mailjet.error": REST_ERRORS,
    "mailjet.send.request": [SEND_REQUEST, SEND_GLOBALS, SEND_GLOBAL_CC, SEND_GO_SANDBOX, SEND_GO_STATISTICS_LIST, SEND_GLOBAL_VARIABLES,
                             SEND_GLOBAL_NULL_OVERRIDDEN],
    "mailjet.send.response": [SEND_RESPONSE, SEND_PARTIAL_ERROR],
    "mailjet.send.error": [SEND_ERROR, SEND_401],
    **{f"mailjet.event.{name}": [json.loads(text)] for name, text in EVENTS.items()},
}


def _without(payload: dict, key: str) -> dict:
    broken = copy.deepcopy(payload)
    broken.pop(key)
    return broken


def _with(payload: dict, **changes) -> dict:
    return {**copy.deepcopy(payload), **changes}


# (contract, payload, JSON path of the violation, rule)
INVALID = [
    ("mailjet.contact", _with(CONTACT_OBSERVED, IsExcludedFromCampaigns="false"), "$.IsExcludedFromCampaigns", "type"),
    ("mailjet.contact", _with(CONTACT_OBSERVED, LastActivityAt=None), "$.LastActivityAt", "anyOf"),
    ("mailjet.contact", _without(CONTACT_OBSERVED, "Email"), "$.Email", "required"),
    ("mailjet.contact", _with(CONTACT_OBSERVED, firstname="x"), "$", "additionalProperties"),
    ("mailjet.contactslist", _with(CONTACTSLIST, Name=""), "$.Name", "minLength"),
    ("mailjet.managecontact.request", _without(MANAGECONTACT_REQUEST, "Action"), "$.Action", "required"),
    ("mailjet.managecontact.request", _with(MANAGECONTACT_REQUEST, Action="add"), "$.Action", "enum"),
    ("mailjet.managecontact.request", _with(MANAGECONTACT_REQUEST, Properties='{"a": 1}'), "$.Properties", "type"),
    ("mailjet.managecontact.request", _with(MANAGECONTACT_REQUEST, Email="not-an-email"), "$.Email", "pattern"),
    ("mailjet.managecontact.request", _with(MANAGECONTACT_REQUEST, Name="x" * 256), "$.Name", "maxLength"),
    ("mailjet.managecontact.response", {"Count": 1, "Data": {"ContactID": 1}, "Total": 1}, "$.Data", "type"),
    # Every REST v3 answer is the envelope Count, Data, Total (reference/mailjet.md §1).
    ("mailjet.managecontact.response", _without(MANAGECONTACT_RESPONSE, "Total"), "$.Total", "required"),
    ("mailjet.managecontact.response", {**MANAGECONTACT_RESPONSE, "Data": [_without(MANAGECONTACT_RESPONSE["Data"][0], "ContactID")]},
     "$.Data[0].ContactID", "required"),
    # A property holds one value: an object (or array) is no str/int/float/bool/datetime value.
    ("mailjet.managecontact.request", _with(MANAGECONTACT_REQUEST, Properties={"address": {"city": "Paris"}}), "$.Properties.address", "type"),
    ("mailjet.managecontact.request", _with(MANAGECONTACT_REQUEST, Email="a" * 250 + "@b.com"), "$.Email", "maxLength"),
    ("mailjet.managemanycontacts.request", _with(BULK_REQUEST, Contacts=[]), "$.Contacts", "minItems"),
    # One contract an endpoint: Action on the list's (its list is in the URL), ContactsLists on /contact's.
    ("mailjet.managemanycontacts.request", _without(BULK_REQUEST, "Action"), "$.Action", "required"),
    ("mailjet.managemanycontacts.request", _with(BULK_REQUEST, ContactsLists=[]), "$", "additionalProperties"),
    ("mailjet.contact.managemanycontacts.request", _with(BULK_CONTACT_GO, Action="addnoforce"), "$", "additionalProperties"),
    ("mailjet.contact.managemanycontacts.request", _without(BULK_CONTACT_GO, "Contacts"), "$.Contacts", "required"),
    ("mailjet.managemanycontacts.request", _with(BULK_REQUEST, Contacts=[{"Name": "no email"}]), "$.Contacts[0].Email", "required"),
    # Any casing of a key counts: a mandatory key is still mandatory, an unknown one still refused.
    ("mailjet.managecontact.request", _without(MANAGECONTACT_LOWERCASE, "action"), "$.Action", "required"),
    ("mailjet.managecontact.request", _without(MANAGECONTACT_LOWERCASE, "email"), "$.Email", "required"),
    ("mailjet.managecontact.request", _with(MANAGECONTACT_LOWERCASE, firstname="x"), "$", "additionalProperties"),
    ("mailjet.managecontact.request", _with(MANAGECONTACT_LOWERCASE, action="add"), "$.action", "enum"),
    ("mailjet.managecontact.request", _with(MANAGECONTACT_LOWERCASE, email="not-an-email"), "$.email", "pattern"),
    ("mailjet.managemanycontacts.request", {"action": "addnoforce"}, "$.Contacts", "required"),
    ("mailjet.contact.managemanycontacts.request", _with(BULK_ANY_CASE, action="addnoforce"), "$", "additionalProperties"),
    ("mailjet.contact.managemanycontacts.request", _with(BULK_ANY_CASE, CONTACTS=[{"name": "no email"}]), "$.CONTACTS[0].Email", "required"),
    ("mailjet.contact.managemanycontacts.request", _with(BULK_ANY_CASE, contactslists=[{"listid": 1}]), "$.contactslists[0].Action", "required"),
    ("mailjet.managecontact.request", _with(MANAGECONTACT_GO, Properties=[]), "$.Properties", "type"),
    ("mailjet.contact.managemanycontacts.request", _with(BULK_CONTACT_GO, ContactsLists={"ListID": 1}), "$.ContactsLists", "type"),
    # An id given as text is ASCII digits: an Arabic-Indic "١" is no list id (the fake answers "listID missing or not valid").
    ("mailjet.contact.managemanycontacts.request", _with(BULK_CONTACT_GO, ContactsLists=[{"ListID": "\u0661", "Action": "addnoforce"}]),
     "$.ContactsLists[0].ListID", "anyOf"),
    # A key is its name exactly, in any case: "Email\n" is an unknown key (Python's `$` also matched
    # before a final newline), refused by the fake, and no Email.
    ("mailjet.managecontact.request", {"Email\n": "a@b.co", "Action": "addforce"}, "$.Email", "required"),
    ("mailjet.managecontact.request", {"Email\n": "a@b.co", "Action": "addforce"}, "$", "additionalProperties"),
    ("mailjet.managemanycontacts.request", _with(BULK_GO, Contacts=[{"Email\n": "a@b.co"}]), "$.Contacts[0].Email", "required"),
    ("mailjet.send.request", {**SEND_REQUEST, "SandboxMode\n": True}, "$", "additionalProperties"),
    ("mailjet.contact.managemanycontacts.request", _with(BULK_CONTACT_GO, ContactsLists=[{"ListID": 1, "Action\n": "addforce"}]),
     "$.ContactsLists[0].Action", "required"),
    ("mailjet.managemanycontacts.job", _with(JOB, Status="Done"), "$.Status", "enum"),
    ("mailjet.contactmetadata", _with(METADATA, Datatype="string"), "$.Datatype", "enum"),
    ("mailjet.contactmetadata", _with(METADATA, NameSpace="dynamic"), "$.NameSpace", "enum"),
    ("mailjet.contactmetadata", _with(_without(METADATA, "Datatype"), DataType="str"), "$", "additionalProperties"),
    ("mailjet.contactdata", {"ContactID": 1, "ID": 1, "Data": [{"Name": "age", "Value": 42}]}, "$.Data[0].Value", "type"),
    ("mailjet.listrecipient", _with(LISTRECIPIENT, IsUnsubscribed="true"), "$.IsUnsubscribed", "type"),
    ("mailjet.eventcallbackurl", _with(CALLBACK, EventType="delivered"), "$.EventType", "enum"),
    ("mailjet.eventcallbackurl", _with(CALLBACK, Version=3), "$.Version", "enum"),
    ("mailjet.error", {"ErrorMessage": "x", "StatusCode": 400}, "$.ErrorInfo", "required"),
    ("mailjet.error", {"ErrorInfo": "", "ErrorMessage": "x", "StatusCode": 200}, "$.StatusCode", "anyOf"),
    ("mailjet.send.request", {"InvalidField": True}, "$.Messages", "required"),
    ("mailjet.send.request", {"Messages": []}, "$.Messages", "minItems"),
    # What the fake refuses with mj-0004 (a null variable, php#210) and send-0011 (a header that has a
    # message property), in a message or in Globals, any case of the header's name.
    ("mailjet.send.request", {"Messages": [{**SEND_REQUEST["Messages"][0], "Variables": {"a": None}}]}, "$.Messages[0].Variables.a", "not"),
    ("mailjet.send.request", {"Messages": [{**SEND_REQUEST["Messages"][0], "Headers": {"x-mj-templatelanguage": "1"}}]},
     "$.Messages[0].Headers", "not"),
    ("mailjet.send.request", {**SEND_REQUEST, "Globals": {"Headers": {"Subject": "x"}}}, "$.Globals.Headers", "not"),
    ("mailjet.send.request", {"Messages": [{**SEND_REQUEST["Messages"][0], "Subject": "s" * 256}]}, "$.Messages[0].Subject", "maxLength"),
    ("mailjet.send.request", {"Messages": [{"From": {"Email": "a@b.co"}, "To": [{"Email": "c@d.co"}]}]}, "$.Messages[0]", "anyOf"),
    ("mailjet.send.request", {"Messages": [{"TextPart": "t", "To": [{"Email": "c@d.co"}]}]}, "$.Messages[0].From", "required"),
    ("mailjet.send.request", {"Messages": [{**SEND_REQUEST["Messages"][0], "To": [{"Email": f"r{i}@x.co"} for i in range(51)]}]},
     "$.Messages[0].To", "maxItems"),
    # What Globals cannot stand in for: To (never allowed there), a part or sender given nowhere; Globals obey the message rules.
    ("mailjet.send.request", _with(SEND_GLOBALS, Globals={**SEND_GLOBALS["Globals"], "To": []}, Messages=[{"TextPart": "t"}]),
     "$.Messages[0].To", "required"),
    ("mailjet.send.request", _with(SEND_GLOBALS, Globals={**SEND_GLOBALS["Globals"], "To": [{"Email": "ops@example.com"}]}),
     "$.Globals", "not"),
    ("mailjet.send.request", _with(SEND_GLOBALS, Globals={**SEND_GLOBALS["Globals"], "To": [{"Email": "ops@example.com"}]},
                                   Messages=[{"TextPart": "t"}]), "$.Messages[0].To", "required"),
    ("mailjet.send.request", _with(SEND_GLOBAL_CC, Messages=[{"From": {"Email": "a@b.co"}, "To": [{"Email": "c@d.co"}]}]),
     "$.Messages[0]", "anyOf"),
    ("mailjet.send.request", _with(SEND_GLOBAL_CC, Messages=[{"TextPart": "t", "To": [{"Email": "c@d.co"}]}]),
     "$.Messages[0].From", "required"),
    ("mailjet.send.request", {"Messages": [{**SEND_REQUEST["Messages"][0], "TemplateErrorDeliver": True}]},
     "$.Messages[0]", "dependentRequired"),
    ("mailjet.send.request", {"Messages": [{**SEND_REQUEST["Messages"][0], "DeduplicateCampaign": True}]},
     "$.Messages[0].CustomCampaign", "required"),
    ("mailjet.send.request", _with(SEND_REQUEST, Globals={"Priority": 7}), "$.Globals.Priority", "enum"),
    ("mailjet.send.request", _with(SEND_REQUEST, Globals={"Headers": {f"X-H{i}": "v" for i in range(51)}}), "$.Globals.Headers", "maxProperties"),
    ("mailjet.send.request", _with(SEND_REQUEST, Globals={"Attachments": [{"ContentType": "text/plain", "Filename": "", "Base64Content": "YQ=="}]}),
     "$.Globals.Attachments[0].Filename", "minLength"),
    ("mailjet.send.request", _with(SEND_REQUEST, Globals={"Bogus": 1}), "$.Globals", "additionalProperties"),
    ("mailjet.send.request", _with(SEND_GO_SANDBOX, SandBoxMode="yes"), "$.SandBoxMode", "type"),
    ("mailjet.send.request", {"Messages": [{**SEND_REQUEST["Messages"][0], "StatisticsContactsListID": "42"}]},
     "$.Messages[0].StatisticsContactsListID", "type"),
    ("mailjet.send.request", {"messages": []}, "$.messages", "minItems"),
    # An empty part is no part: the fake answers send-0003 (emulator/mailjet/send.py).
    ("mailjet.send.request", {"Messages": [{"From": {"Email": "a@b.co"}, "To": [{"Email": "c@d.co"}], "TextPart": ""}]},
     "$.Messages[0]", "anyOf"),
    ("mailjet.send.request", {"Messages": [{**SEND_REQUEST["Messages"][0], "To": [{"Email": "a@b"}]}]},
     "$.Messages[0].To[0].Email", "pattern"),
    ("mailjet.managecontact.request", _with(MANAGECONTACT_REQUEST, Email="@example.com"), "$.Email", "pattern"),
    ("mailjet.send.response", {"Messages": [{"Status": "success", "To": [{"Email": "a@b.co", "MessageID": "1"}], "Cc": [], "Bcc": []}]},
     "$.Messages[0]", "oneOf"),
    ("mailjet.send.error", _without(SEND_ERROR, "ErrorIdentifier"), "$.ErrorIdentifier", "required"),
    ("mailjet.send.error", _with(SEND_ERROR, ErrorCode="E2"), "$.ErrorCode", "pattern"),
    # Digits are ASCII digits and a value ends where the text does (Python's \d and $ took "١٢" and "…\n").
    ("mailjet.send.error", _with(SEND_ERROR, ErrorCode="mj-\u0660\u0660\u0660\u0662"), "$.ErrorCode", "pattern"),
    ("mailjet.send.error", _with(SEND_ERROR, ErrorCode="mj-0002\n"), "$.ErrorCode", "pattern"),
    ("mailjet.error", {"ErrorInfo": "", "ErrorMessage": "x", "StatusCode": "4\u0660\u0660"}, "$.StatusCode", "anyOf"),
    ("mailjet.event.sent", _with(json.loads(EVENTS["sent"]), mj_message_id="\u0661\u0662"), "$.mj_message_id", "pattern"),
    ("mailjet.event.sent", _with(json.loads(EVENTS["sent"]), mj_message_id="12\n"), "$.mj_message_id", "pattern"),
    ("mailjet.contact", _with(CONTACT_OBSERVED, CreatedAt="2026-01-07T09:32:32Z\n"), "$.CreatedAt", "pattern"),
    ("mailjet.contact.managemanycontacts.request", _with(BULK_CONTACT_GO, ContactsLists=[{"ListID": "1\n", "Action": "addnoforce"}]),
     "$.ContactsLists[0].ListID", "anyOf"),
    ("mailjet.event.sent", _without(json.loads(EVENTS["sent"]), "smtp_reply"), "$.smtp_reply", "required"),
    ("mailjet.event.open", _without(json.loads(EVENTS["open"]), "agent"), "$.agent", "required"),
    ("mailjet.event.click", _with(json.loads(EVENTS["click"]), event="open"), "$.event", "const"),
    ("mailjet.event.bounce", _with(json.loads(EVENTS["bounce"]), hard_bounce="true"), "$.hard_bounce", "type"),
    ("mailjet.event.blocked", _with(json.loads(EVENTS["blocked"]), blocked=True), "$", "enum"),
    ("mailjet.event.spam", _with(json.loads(EVENTS["spam"]), time="1430812195"), "$.time", "type"),
    ("mailjet.event.unsub", _with(json.loads(EVENTS["unsub"]), mj_list_id="1"), "$.mj_list_id", "type"),
    ("mailjet.event.sent", _with(json.loads(EVENTS["sent"]), MessageID="19421777835146490"), "$.MessageID", "type"),
]


def test_every_mailjet_contract_has_valid_and_invalid_examples() -> None:
    assert sorted(VALID) == sorted(MAILJET_CONTRACTS)
    assert {name for name, *_ in INVALID} == set(MAILJET_CONTRACTS)


@pytest.mark.parametrize(("name", "payload"), [(n, p) for n, ps in VALID.items() for p in ps])
def test_valid_examples_pass(name: str, payload: dict) -> None:
    assert contracts.validate(name, payload) == []


# The fields each payload always carries (the reference's examples and observed bodies), written
# out here rather than read from the schemas: a field fallen out of a `required` list by mistake
# must fail a test, since the harness relies on these contracts to catch a fake or client dropping it.
REQUIRED_FIELDS = {
    "mailjet.contact": ["CreatedAt", "DeliveredCount", "Email", "ExclusionFromCampaignsUpdatedAt", "ID",
                        "IsExcludedFromCampaigns", "IsOptInPending", "IsSpamComplaining", "LastActivityAt",
                        "LastUpdateAt", "Name", "UnsubscribedAt", "UnsubscribedBy"],
    "mailjet.contactdata": ["ContactID", "Data", "ID"],
    "mailjet.contactmetadata": ["Datatype", "ID", "Name", "NameSpace"],
    "mailjet.contactslist": ["Address", "CreatedAt", "ID", "IsDeleted", "Name", "SubscriberCount"],
    "mailjet.error": ["ErrorInfo", "ErrorMessage", "StatusCode"],
    "mailjet.event.blocked": ["error_related_to", "error"],
    "mailjet.event.bounce": ["blocked", "hard_bounce", "error_related_to", "error", "comment"],
    "mailjet.event.click": ["url"],
    "mailjet.event.sent": ["mj_message_id", "smtp_reply"],
    "mailjet.event.spam": ["source"],
    "mailjet.event.unsub": ["mj_list_id"],
    "mailjet.eventcallbackurl": ["APIKeyID", "EventType", "ID", "IsBackup", "Status", "Url", "Version"],
    "mailjet.listrecipient": ["ContactID", "ID", "IsActive", "IsUnsubscribed", "ListID", "ListName", "UnsubscribedAt"],
    "mailjet.managemanycontacts.job": ["ContactsLists", "Count", "Error", "ErrorFile", "JobEnd", "JobStart", "Status"],
    "mailjet.send.error": ["ErrorIdentifier", "StatusCode", "ErrorMessage"],
    "mailjet.send.response": ["Messages"],
}


def test_the_required_fields_are_the_schemas() -> None:
    for name in MAILJET_CONTRACTS:
        assert sorted(contracts.schema(name).get("required", [])) == sorted(REQUIRED_FIELDS.get(name, [])), name


@pytest.mark.parametrize(("name", "key"), [(name, key) for name, keys in REQUIRED_FIELDS.items() for key in keys])
def test_a_valid_example_without_a_required_field_is_refused_there(name: str, key: str) -> None:
    violations = contracts.validate(name, _without(VALID[name][0], key))
    assert (f"$.{key}", "required") in [(v.path, v.rule) for v in violations], violations


@pytest.mark.parametrize(("name", "payload", "path", "rule"), INVALID)
def test_invalid_examples_fail_at_the_expected_place(name: str, payload: dict, path: str, rule: str) -> None:
    violations = contracts.validate(name, payload)
    assert (path, rule) in [(v.path, v.rule) for v in violations], violations


@pytest.mark.parametrize("globals_value", [None, "x", []])
def test_globals_that_are_no_object_are_a_type_error_alone(globals_value: object) -> None:
    # Its "no To" rule held for any value but an object, and said only "Every message property but To".
    violations = contracts.validate("mailjet.send.request", {**SEND_REQUEST, "Globals": globals_value})
    assert [(v.path, v.rule) for v in violations] == [("$.Globals", "type")], violations


def test_to_in_globals_is_named_in_the_violation() -> None:
    payload = _with(SEND_GLOBALS, Globals={**SEND_GLOBALS["Globals"], "To": [{"Email": "ops@example.com"}]})
    [violation] = [v for v in contracts.validate("mailjet.send.request", payload) if v.path == "$.Globals"]
    assert "To is not allowed in Globals" in violation.message, violation


def test_bounce_sample_with_the_docs_missing_comma_is_not_json() -> None:
    # The _event-api.md bounce sample lacks a comma; the DevGuide one (used above) is correct.
    broken = EVENTS["bounce"].replace('"user unknown",', '"user unknown"')
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken)


@pytest.mark.parametrize(
    "address",
    ["a@example.com", "é@ü.de", "a.b+c@d.example.org", "@example.com", "a@", "a@b", "a b@example.com", "a@@b.co",
     "a@b.co\n", "a@b.co ", " a@b.co\t", "a@b.", "ab"],
)
def test_the_email_rule_is_the_fakes(address: str) -> None:
    """Send v3.1 checks an address with EMAIL_PATTERN as it is, REST v3 once trimmed: what the
    contract passes, the service takes (jsonschema's "email" format passed "a@b" and "@example.com")."""
    from emulator.mailjet.models import EMAIL_PATTERN

    payload = {"Messages": [{**SEND_REQUEST["Messages"][0], "To": [{"Email": address}]}]}
    assert contracts.is_valid("mailjet.send.request", payload) == bool(EMAIL_PATTERN.fullmatch(address))
    takes = bool(EMAIL_PATTERN.fullmatch(address.strip()))  # as check_email reads an address given to REST v3
    assert contracts.is_valid("mailjet.managecontact.request", {"Email": address, "Action": "addnoforce"}) == takes
    assert contracts.is_valid("mailjet.managemanycontacts.request", {"Action": "addnoforce", "Contacts": [{"Email": address}]}) == takes
