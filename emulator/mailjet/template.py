"""Mailjet's template language, as far as an inline Send v3.1 message uses it.

With `TemplateLanguage: true`, `{{var:name:default}}` prints one of the message's `Variables` and
`{{data:name:default}}` one of the recipient's contact properties, in Subject, TextPart and HTMLPart
(dev.mailjet.com/template-language/reference, "Vars and Custom Vars" and "Contact properties -
ContactData"; the Send API's own example writes `{{var:day:"monday"}}`). A value that is missing
with no default is an error in the template language: Mailjet then blocks the message (a `blocked`
event, `content` / `error in template language`) unless `TemplateErrorDeliver` is true.

Only these two forms are interpreted. Statements (`{% if %}`, `{% for %}`), functions, operators and
the `mj:` and `segmentation:` namespaces are left as written, and so is anything else between
`{{` and `}}`, and the templates' simple personalization (`[[var:x]]`, `[[data:x]]`). An
expression inside a statement's block is printed too, but a missing value there is no error (GUESS:
the block may be one whose condition fails, as `{% if var:x %}...{% endif %}` means to make a value
optional; mjml#676 saw Mailjet fail on such a value all the same). A block left open, or a closing
tag with no block, is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# A statement tag, or an expression; a default is a double-quoted JSON-style string (the documented
# form) or a bare word such as 0.
_TOKEN = re.compile(
    # A tag's body holds no brace nor percent sign: a stray "{%" then matches nothing (not the text
    # up to some later "%}", such as CSS's "100%}"), and no scan runs past the next brace. Every run
    # is possessive: where two runs could take the same characters (spaces, then a word, then the
    # rest), a "{%" or "{{var:x" left open before 64,000 of them was tried at every split, for seconds.
    r'\{%\s*+(?P<tag>\w*+)[^{}%]*+%\}'
    r'|\{\{\s*+(?P<namespace>var|data)\s*+:\s*+(?P<name>[^\s:{}"]++)\s*+'
    r'(?::\s*+(?:"(?P<quoted>(?:[^"\\]|\\.)*+)"|(?P<bare>[^\s{}"]*+)))?\s*+\}\}',
)
_OPENING_TAGS = frozenset({"if", "for"})
_CLOSING_TAGS = frozenset({"endif", "endfor"})


class RenderedTooLong(Exception):
    """The printed text would be longer than the limit `render` was given."""


@dataclass(frozen=True)
class Rendered:
    text: str
    # What the template language found wrong: a value printed empty, having none and no default
    # (outside a statement's block), and a block left open or closing none.
    errors: tuple[str, ...]


def render(
    text: str, variables: Mapping[str, Any], contact_data: Callable[[str], str | None], limit: int | None = None
) -> Rendered:
    """`text` with each `{{var:...}}` and `{{data:...}}` replaced by its value, else its default.

    Variable names are matched as written (GUESS, as `Variables` merge with Globals); contact
    properties as the REST API matches them, in any case. A text with nothing to read is given back
    as it is, the same object; otherwise, past `limit` characters of printed text, RenderedTooLong,
    raised before the text is put together: a variable printed in a loop of expressions would
    otherwise hold many times the request's size.
    """
    errors: list[str] = []
    depth = 0  # of the statement blocks around the current token
    grown = 0  # how much longer than `text` the printed text is so far

    def printed_within_limit(match: re.Match[str]) -> str:
        nonlocal grown
        value = printed(match)
        grown += len(value) - len(match[0])
        if limit is not None and match.end() + grown > limit:
            raise RenderedTooLong
        return value

    def printed(match: re.Match[str]) -> str:
        nonlocal depth
        if match["namespace"] is None:
            if match["tag"] in _OPENING_TAGS:
                depth += 1
            elif match["tag"] in _CLOSING_TAGS:
                if depth == 0:
                    errors.append(f"{match[0]} closes no block")
                depth = max(depth - 1, 0)
            return match[0]
        namespace, name = match["namespace"], match["name"]
        value = _variable(variables, name) if namespace == "var" else contact_data(name)
        if value is not None:
            return _text_of(value)
        if match["quoted"] is not None:
            return _unescaped(match["quoted"])
        if match["bare"] is not None:
            return match["bare"]
        if depth == 0:
            what = "variable" if namespace == "var" else "contact property"
            errors.append(f'{{{{{namespace}:{name}}}}}: the {what} "{name}" has no value and the expression no default')
        return ""

    rendered, count = _TOKEN.subn(printed_within_limit, text)
    if count == 0:
        return Rendered(text, ())
    if limit is not None and len(rendered) > limit:
        raise RenderedTooLong
    if depth:
        errors.append(f"{depth} {{% if %}} or {{% for %}} block(s) not closed")
    return Rendered(rendered, tuple(errors))


def _variable(variables: Mapping[str, Any], name: str) -> Any:
    """A Variables value by name, or (a name no key has) by a dotted path into nested objects:
    GUESS, Mailjet's help centre names "multidimensional objects" without their syntax."""
    if name in variables:
        return variables[name]
    value: Any = variables
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _text_of(value: Any) -> str:
    """A value as the email prints it. GUESS: non-strings as their JSON text (42, 4.5, true)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _unescaped(quoted: str) -> str:
    try:
        return json.loads(f'"{quoted}"')
    except ValueError:  # an escape JSON does not know, such as \x: printed as written
        return quoted
