"""Display names: what a person reads in lists, dashboards and downloads (audio, campaign, API key
and account names, uploaded file names).

A name is visible text. Refused anywhere in it (Unicode general categories):

* ``Cc`` control characters (NUL, tab, line feed, ESC ...): they cut or garble logs and terminals;
* ``Cf`` format characters: direction overrides and isolates (``a\\u202egnp.wav`` shows as
  ``avw.png``), zero-width spaces and joiners, the BOM, soft hyphens;
* ``Cs`` lone surrogates: not text at all (a JSON ``\\ud800`` escape makes one);
* ``Zl`` / ``Zp`` line and paragraph separators.

Ordinary spaces (``Zs``) are allowed inside a name, but a name must show at least one visible
character. Standard library only.
"""

from __future__ import annotations

import unicodedata
from typing import Final

__all__ = ["REFUSED_CATEGORIES", "InvalidName", "check_display_name", "name_problem"]

REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_WHAT: Final = {"Cc": "control", "Cf": "invisible formatting", "Cs": "surrogate", "Zl": "line separator",
                "Zp": "paragraph separator"}


class InvalidName(ValueError):
    """The name cannot be shown as it is; the message says why."""


def name_problem(value: str) -> str | None:
    """Why ``value`` is not a display name, or None when it is one."""
    for position, char in enumerate(value, start=1):
        category = unicodedata.category(char)
        if category in REFUSED_CATEGORIES:
            return (f"must not contain {_WHAT[category]} characters "
                    f"(U+{ord(char):04X} at position {position})")
    if not value.strip():
        return "must contain a visible character"
    return None


def check_display_name(value: str) -> str:
    """``value`` unchanged when it is a display name; raises ``InvalidName`` otherwise."""
    problem = name_problem(value)
    if problem is not None:
        raise InvalidName(problem)
    return value
