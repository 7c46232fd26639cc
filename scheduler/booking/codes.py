"""Reference codes, manage tokens and person keys.

* Reference codes: 8 random characters of Crockford base32 (no I, L, O, U), shown as
  ``XXXX-XXXX``; case, dashes and the look-alikes I/L→1 and O→0 are forgiven on input. They are
  not secrets.
* Manage tokens: HMAC-SHA256 over the booking id and a token version under the server secret,
  base64url (256 bits). Never stored; bumping the version revokes every link.
* Waiting-list tokens: the same HMAC over ``waitlist:<entry id>`` (another namespace, so an
  entry's token never equals a booking's manage token). Never stored either.
* Person keys: keyed hashes of normalized e-mail, phone (E.164) and name + birth date, so the
  per-person limit can be enforced without storing identifiers twice.
* Stored digests: SHA-256 of a random secret (API keys, feed tokens, a booking's spent hold
  token), so the database only ever holds what cannot be turned back into the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import unicodedata
from datetime import date

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = str.maketrans({"I": "1", "L": "1", "O": "0", "-": None, " ": None})
_REFERENCE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{8}$")


def stored_digest(secret: str) -> str:
    """The hex SHA-256 a random secret (≥ 128 bits) is stored and looked up by."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


PHONETIC_DE = {
    "A": "Anton", "B": "Berta", "C": "Cäsar", "D": "Dora", "E": "Emil", "F": "Friedrich",
    "G": "Gustav", "H": "Heinrich", "J": "Julius", "K": "Kaufmann", "M": "Martha",
    "N": "Nordpol", "P": "Paula", "Q": "Quelle", "R": "Richard", "S": "Samuel",
    "T": "Theodor", "V": "Viktor", "W": "Wilhelm", "X": "Xanthippe", "Y": "Ypsilon",
    "Z": "Zacharias", "0": "Null", "1": "Eins", "2": "Zwei", "3": "Drei", "4": "Vier",
    "5": "Fünf", "6": "Sechs", "7": "Sieben", "8": "Acht", "9": "Neun",
}  # fmt: skip


def new_reference() -> str:
    """8 characters from 40 random bits."""
    bits = int.from_bytes(secrets.token_bytes(5), "big")
    return "".join(ALPHABET[(bits >> shift) & 31] for shift in range(35, -1, -5))


def format_reference(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def parse_reference(text: str) -> str | None:
    """The canonical 8-character code of user input, or None if it cannot be one."""
    if len(text) > 20:
        return None
    code = text.upper().translate(_DECODE)
    return code if _REFERENCE.match(code) else None


def spell(code: str) -> str:
    """``K wie Kaufmann, 7 wie Sieben, …`` for reading a code out on the phone."""
    return ", ".join(f"{c} wie {PHONETIC_DE[c]}" for c in code if c in PHONETIC_DE)


def manage_token(secret: str, booking_id: str, version: int) -> str:
    digest = hmac.new(
        secret.encode(), f"manage:{booking_id}:{version}".encode(), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token_matches(secret: str, booking_id: str, version: int, presented: str) -> bool:
    expected = manage_token(secret, booking_id, version)
    return hmac.compare_digest(expected.encode(), presented.encode("utf-8", "replace"))


def opt_in_token(secret: str, booking_id: str, version: int) -> str:
    """The token of an e-mail opt-in's link: sent only to the contact address, never answered
    to the caller who booked (that one gets the manage token) — following the link proves the
    address."""
    digest = hmac.new(
        secret.encode(), f"opt-in:{booking_id}:{version}".encode(), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def opt_in_matches(secret: str, booking_id: str, version: int, presented: str) -> bool:
    expected = opt_in_token(secret, booking_id, version)
    return hmac.compare_digest(expected.encode(), presented.encode("utf-8", "replace"))


def waitlist_token(secret: str, entry_id: int) -> str:
    """The token a person on a waiting list sees and leaves their entry with."""
    digest = hmac.new(secret.encode(), f"waitlist:{entry_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def waitlist_token_matches(secret: str, entry_id: int, presented: str) -> bool:
    expected = waitlist_token(secret, entry_id)
    return hmac.compare_digest(expected.encode(), presented.encode("utf-8", "replace"))


def normalize_email(email: str) -> str:
    return email.strip().lower()


def normalize_phone(phone: str) -> str | None:
    """E.164 for German numbers: ``0391 123`` → ``+49391123``; None if it is no phone number."""
    digits = re.sub(r"[\s()/.\-]", "", phone.strip())
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    elif digits.startswith("0"):
        digits = "+49" + digits[1:]
    if not re.fullmatch(r"\+[1-9]\d{6,14}", digits):
        return None
    return digits


def normalize_name(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return " ".join(re.sub(r"[^a-z ]", " ", folded).split())


def person_keys(
    secret: str,
    *,
    email: str | None = None,
    phone: str | None = None,
    name: str | None = None,
    birth_date: date | None = None,
) -> list[str]:
    """Keyed hashes of every identifier a booking carries (DESIGN §3, Person)."""
    raw = []
    if email:
        raw.append("e:" + normalize_email(email))
    if phone and (e164 := normalize_phone(phone)):
        raw.append("p:" + e164)
    if name and birth_date:
        raw.append(f"n:{normalize_name(name)}:{birth_date.isoformat()}")
    return [
        hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()[:32] for value in raw
    ]


def name_key(secret: str, name: str, birth_date: date) -> str:
    """The look-up key agents use to find a caller's bookings by name and birth date."""
    return person_keys(secret, name=name, birth_date=birth_date)[0]
