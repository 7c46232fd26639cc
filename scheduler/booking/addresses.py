"""E-mail addresses as SMTP can carry them without extensions (the booking checks them with
the same rule the message renderer writes them by)."""

from __future__ import annotations

import re

__all__ = ["addr_spec"]

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def addr_spec(value: str) -> str:
    """An address as SMTP can carry it without extensions, or ``ValueError``: a dot-atom local
    part (``max..muster@`` is refused) and a domain of letter-digit-hyphen labels (an
    internationalized domain is written as IDNA)."""
    local, at, domain = value.strip().rpartition("@")
    if not at or not _LOCAL.fullmatch(local):
        raise ValueError("not a deliverable address")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError("not a deliverable address") from exc
    labels = domain.split(".")  # one label is allowed: the demo sends as termine@localhost
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError("not a deliverable address")
    spec = f"{local}@{domain}"
    if len(spec) > 254:
        raise ValueError("not a deliverable address")
    return spec
