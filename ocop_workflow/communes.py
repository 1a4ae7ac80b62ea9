"""Known communes and "did you mean …": a misspelt commune or id is an error, never "nothing".

Vietnamese names are typed with and without diacritics, in any case, with or without spaces
("Ia le", "Ia Lê", "IaLe" for "Ia Le"). Names are compared on a folded key — diacritics removed
(Unicode NFD, combining marks dropped, đ → d), case folded, spaces and hyphens dropped — so a near
miss finds the name the user meant; an exact spelling is still required to act, so that a dossier
never records a commune under two spellings.

With ``[communes] names`` configured (the province's official list) every commune is checked
against it. Without it the known communes are those the configuration names (users' and councils'
scopes) and, for filters, those of the dossiers on file; a new name is accepted when it is not a
near miss of a known one, as before the list existed.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Iterable

from .errors import NotFound


def fold(name: str) -> str:
    """The matching key: no diacritics, no case, no spaces ("Ia Lê" → "iale")."""
    decomposed = unicodedata.normalize("NFD", name.replace("đ", "d").replace("Đ", "D"))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return "".join(c for c in bare.casefold() if c.isalnum())


def suggestions(name: str, known: Iterable[str], limit: int = 3) -> list[str]:
    """Known names that ``name`` probably meant: the same folded key first, then close ones."""
    names = sorted(set(known))
    key = fold(name)
    same = [n for n in names if fold(n) == key and n != name]
    if same:
        return same[:limit]
    by_key: dict[str, str] = {}
    for n in names:
        by_key.setdefault(fold(n), n)
    close = difflib.get_close_matches(key, list(by_key), n=limit, cutoff=0.75)
    return [by_key[k] for k in close]


def hint(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'X'?)`` or an empty string."""
    found = suggestions(name, known)
    if not found:
        return ""
    return " (did you mean " + " or ".join(f"'{n}'" for n in found) + "?)"


def check_commune(name: str, known: Iterable[str], *, closed: bool) -> None:
    """Refuse an unknown commune (exit 3) naming the ones meant.

    ``closed``: ``known`` is the complete list (``[communes] names``); otherwise only a near miss
    of a known name is refused and a new name passes.
    """
    known = set(known)
    if name in known:
        return
    near = hint(name, known)
    if closed:
        listed = "" if near else f" (known: {', '.join(sorted(known, key=fold)) or 'none'})"
        raise NotFound(f"'{name}' is not a known commune{near}{listed}", fields=("commune",))
    if any(fold(n) == fold(name) for n in known):  # another spelling of a known name
        raise NotFound(f"'{name}' is not a known commune{near}", fields=("commune",))
