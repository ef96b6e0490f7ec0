"""Route options of the built-in handlers, checked once when the worker starts.

Each handler declares a check per option it takes (geoq.config.schema's checks,
or its own raising Invalid); `checked` applies them and turns the first
unknown or invalid option into a one-line ConfigError naming it.
"""

from __future__ import annotations

from typing import Any, Collection, Mapping

from geoq.config.schema import Check, Invalid
from geoq.errors import ConfigError

__all__ = ["checked"]


def checked(given: Mapping[str, Any], checks: Mapping[str, Check], *, hidden: Collection[str] = ()
            ) -> dict[str, Any]:
    """Each given option's checked value by name, in the order given; options not given are left out.

    ConfigError for an option with no check ("unknown option ..."), and for the first value its
    check refuses ("option 'port': expected an integer >= 1, got 'x'"), naming the option and
    showing the value, except `hidden` ones (passwords), shown as <hidden>. A check may also
    raise ConfigError itself, with its own wording.
    """
    unknown = sorted(set(given) - set(checks))
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r}; expected some of {', '.join(sorted(checks))}")
    return {name: _checked(name, value, checks[name], name in hidden) for name, value in given.items()}


def _checked(name: str, value: Any, check: Check, hidden: bool) -> Any:
    try:
        return check(value)
    except Invalid as e:
        shown = "<hidden>" if hidden else repr(value)
        raise ConfigError(f"option {name!r}: expected {e.expected}, got {shown}") from None
