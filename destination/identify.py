"""Applying one mapped identify to a Mailjet account: define missing properties, then upsert."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .client import MANAGECONTACT_ACTION, MailjetClient, MailjetError, PropertyDefinition
from .mapping import ContactUpdate, Property, SkippedTrait, conform_to_definition


@dataclass(frozen=True)
class IdentifyOutcome:
    update: ContactUpdate
    list_id: int
    contact_id: int | None
    properties: tuple[Property, ...]
    created: tuple[PropertyDefinition, ...]
    skipped: tuple[SkippedTrait, ...]

    def to_json(self) -> dict[str, Any]:
        """The destination's 200 body (contract `destination.response`)."""
        return {
            "message": f"contact {self.update.email} upserted in Mailjet list {self.list_id}",
            "email": self.update.email,
            "listId": self.list_id,
            "contactId": self.contact_id,
            "action": MANAGECONTACT_ACTION,
            "name": self.update.name,
            "properties": [
                {"name": prop.name, "trait": prop.source, "datatype": prop.datatype, "value": prop.value} for prop in self.properties
            ],
            "createdProperties": [{"name": definition.name, "datatype": definition.datatype} for definition in self.created],
            "skipped": [{"trait": skipped.trait, "reason": skipped.reason} for skipped in self.skipped],
            "renamed": [{"trait": renamed.trait, "property": renamed.property} for renamed in self.update.renamed],
        }


def _contact_id(contact: dict[str, Any]) -> int | None:
    # Real ContactID values are ints; Mailjet's own doc example shows a string ("10").
    value = contact.get("ContactID")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else None


async def _apply(client: MailjetClient, list_id: int, update: ContactUpdate) -> IdentifyOutcome:
    definitions, created = await client.define_properties({prop.name: prop.datatype for prop in update.properties})
    properties: list[Property] = []
    skipped = list(update.skipped)
    for prop in update.properties:
        definition = definitions[prop.name.lower()]
        fitted = conform_to_definition(prop, definition.datatype)
        if fitted is None:
            skipped.append(SkippedTrait(prop.source, f"Mailjet property {definition.name!r} is defined as {definition.datatype}; the value is {prop.datatype}"))
        else:
            # Send the name as Mailjet spells it ("Plan" when the trait says "plan").
            properties.append(replace(fitted, name=definition.name))
    contact = await client.upsert_contact(list_id, update.email, update.name, {prop.name: prop.value for prop in properties})
    return IdentifyOutcome(update, list_id, _contact_id(contact), tuple(properties), tuple(created), tuple(skipped))


async def apply_identify(client: MailjetClient, list_id: int, update: ContactUpdate) -> IdentifyOutcome:
    """Make sure every property is defined, then upsert the contact with `addnoforce`."""
    try:
        return await _apply(client, list_id, update)
    except MailjetError as exc:
        # "Object properties invalid" with cached definitions means a property was deleted or
        # retyped in Mailjet since they were read: read them again and try once more.
        if exc.status != 400 or "propert" not in str(exc).lower():
            raise
    client.forget_property_definitions()
    return await _apply(client, list_id, update)
