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
    # Real ContactID values are ints; Mailjet's own doc example shows a string ("10"). ASCII only:
    # isdigit() also accepts other scripts' digits, and int() refuses some of them ("²").
    value = contact.get("ContactID")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else None


class _MayBeStale(Exception):
    """A value does not fit the cached definition of its property, which may be out of date."""


async def _apply(
    client: MailjetClient, list_id: int, update: ContactUpdate, created: list[PropertyDefinition], *, cache_checked: bool
) -> IdentifyOutcome:
    # `created` is shared by both attempts: properties created by a first attempt that then has to
    # be made again are reported too.
    definitions, newly_created, refused = await client.define_properties({prop.name: prop.datatype for prop in update.properties})
    created.extend(newly_created)
    properties: list[Property] = []
    skipped = list(update.skipped)
    for prop in update.properties:
        if prop.name in refused:
            skipped.append(SkippedTrait(prop.source, f"Mailjet refused to define property {prop.name!r}: {refused[prop.name]}"))
            continue
        definition = definitions[prop.name.lower()]
        try:
            fitted = conform_to_definition(prop, definition.datatype)
        except ValueError as exc:
            if not cache_checked:
                raise _MayBeStale from exc
            skipped.append(SkippedTrait(prop.source, f"Mailjet property {definition.name!r} is defined as {definition.datatype}: {exc}"))
            continue
        # Send the name as Mailjet spells it ("Plan" when the trait says "plan").
        properties.append(replace(fitted, name=definition.name))
    contact = await client.upsert_contact(list_id, update.email, update.name, {prop.name: prop.value for prop in properties})
    return IdentifyOutcome(update, list_id, _contact_id(contact), tuple(properties), tuple(created), tuple(skipped))


async def apply_identify(client: MailjetClient, list_id: int, update: ContactUpdate) -> IdentifyOutcome:
    """Make sure every property is defined, then upsert the contact with `addnoforce`.

    Property definitions are cached, and a property may have been deleted or retyped in Mailjet
    since they were read. So before a value is skipped for not fitting its cached definition, and
    when Mailjet refuses a property as not defined or mistyped, the definitions are read again and
    the identify applied once more: one extra read at most, and none when the cache agrees.
    """
    created: list[PropertyDefinition] = []
    try:
        return await _apply(client, list_id, update, created, cache_checked=False)
    except _MayBeStale:
        pass
    except MailjetError as exc:
        if not exc.about_property_definitions:
            raise
    client.forget_property_definitions()
    return await _apply(client, list_id, update, created, cache_checked=True)
