"""Sending rendered messages: over SMTP, or as ``.eml`` files when no SMTP server is configured.

Both implementations sit behind :class:`Mailer`; the outbox job only calls ``send`` and looks at
the one error it may raise::

    Exception
    └── SendError        .permanent: retrying will not help (5xx: recipient or message refused,
                                     login rejected); otherwise retry later (4xx, connection
                                     refused, timeout, TLS handshake failed)
                         .code:      the SMTP reply code, when the server gave one

A SendError's text never carries an e-mail address (addresses the server echoes are blanked)
and nothing here logs a body, an address or the password: the outbox row's id and Message-ID
identify a message in logs and in the admin view.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Protocol, runtime_checkable

import aiosmtplib

from scheduler.reminders.mime import Outgoing

__all__ = ["FileMailer", "Mailer", "SendError", "SmtpConnection", "SmtpMailer"]

log = logging.getLogger(__name__)

TLS_MODES = ("none", "starttls", "tls")

_ADDRESS = re.compile(r"<?[^\s<>@,;:\"']+@[^\s<>@,;:\"']+>?")


class SendError(Exception):
    """A message could not be handed over; ``permanent`` says whether a retry can help."""

    def __init__(self, message: str, *, permanent: bool, code: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code

    def __repr__(self) -> str:
        return f"SendError({str(self)!r}, permanent={self.permanent}, code={self.code})"


@runtime_checkable
class Mailer(Protocol):
    async def send(self, message: Outgoing) -> None:
        """Hand the message over, or raise :class:`SendError`."""
        ...


def _redact(text: str, limit: int = 200) -> str:
    """A server's reply without the addresses it may echo, on one line, short."""
    return " ".join(_ADDRESS.sub("<address>", text).split())[:limit]


def _error(exc: BaseException) -> SendError:
    """Map an aiosmtplib (or socket) error to a SendError."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        permanent = bool(codes) and all(code >= 500 for code in codes)
        # one temporary refusal decides: a retry may get the message through
        decisive = next((r for r in exc.recipients if r.code < 500 or permanent), None)
        code = decisive.code if decisive else None
        text = _redact(decisive.message) if decisive else ""
        return SendError(f"recipients refused: {code} {text}", permanent=permanent, code=code)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        # before the connection errors: SMTPConnectResponseError is both
        stage = type(exc).__name__.removeprefix("SMTP")
        return SendError(
            f"{stage}: {exc.code} {_redact(exc.message)}",
            permanent=exc.code >= 500,
            code=exc.code,
        )
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        # the server lacks something this message needs (SMTPUTF8 for a non-ASCII address)
        return SendError(f"not supported: {_redact(str(exc))}", permanent=True)
    if isinstance(exc, TimeoutError):  # SMTPTimeoutError and its subclasses are TimeoutErrors
        return SendError(f"timeout: {_redact(str(exc))}", permanent=False)
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return SendError(f"TLS failed: {_redact(str(exc))}", permanent=False)
    if isinstance(exc, OSError | aiosmtplib.SMTPException):
        # SMTPConnectError, SMTPServerDisconnected, "AUTH not supported", refused connections
        return SendError(f"{type(exc).__name__}: {_redact(str(exc))}", permanent=False)
    if isinstance(exc, ValueError):
        # aiosmtplib refuses an address it cannot put on the wire, or a message without one
        return SendError(f"invalid message: {_redact(str(exc))}", permanent=True)
    raise TypeError(f"not a sending error: {type(exc).__name__}") from exc


class SmtpMailer:
    """``send`` uses one SMTP connection per message: connect, STARTTLS or implicit TLS as
    configured, log in when a user is given, send, quit. ``connection()`` keeps one connection
    for several messages in a row (the outbox uses one per claimed batch).

    ``tls="none"`` means no TLS at all, even if the server offers STARTTLS (aiosmtplib would
    otherwise upgrade opportunistically). ``tls_context`` replaces the default verifying
    context (tests pass one that trusts their own certificate). ``timeout`` applies to each
    step (connect, each reply), as in aiosmtplib.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: str = "none",
        user: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        if tls not in TLS_MODES:
            raise ValueError(f"tls must be one of {', '.join(TLS_MODES)}, not {tls!r}")
        if password is not None and user is None:
            raise ValueError("an SMTP password needs a user")
        self.host = host
        self.port = port
        self.tls = str(tls)  # a settings StrEnum member works too
        self.user = user
        self._password = password
        self.timeout = timeout
        self.tls_context = tls_context
        self._local_hostname = local_hostname

    def __repr__(self) -> str:
        login = "with login" if self.user else "without login"
        return f"SmtpMailer({self.host}:{self.port}, tls={self.tls}, {login})"

    async def _ehlo_name(self) -> str:
        """The name we greet with. aiosmtplib would call socket.getfqdn() before every
        connection, outside its timeout; a host with slow reverse DNS would stall every send."""
        if self._local_hostname is None:
            try:
                async with asyncio.timeout(self.timeout):
                    name = await asyncio.to_thread(socket.getfqdn)
            except TimeoutError:
                name = socket.gethostname()
            self._local_hostname = name if name and "." in name else "localhost.localdomain"
        return self._local_hostname

    async def _client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.tls == "tls",
            start_tls=self.tls == "starttls",
            tls_context=self.tls_context,
            username=self.user,
            password=self._password,
            timeout=self.timeout,
            local_hostname=await self._ehlo_name(),
        )

    async def send(self, message: Outgoing) -> None:
        async with self.connection() as connection:
            await connection.send(message)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[SmtpConnection]:
        """One connection for several messages: opened by the first ``send``, closed (QUIT)
        when the block ends. After a failed send it is dropped, and the next message opens a
        new one, so a refusal or a broken connection never carries over to the next message."""
        connection = SmtpConnection(self)
        try:
            yield connection
        finally:
            await connection.close()


class SmtpConnection:
    """A :class:`Mailer` on one SMTP connection of an :class:`SmtpMailer` (see ``connection``)."""

    def __init__(self, mailer: SmtpMailer) -> None:
        self._mailer = mailer
        self._client: aiosmtplib.SMTP | None = None

    async def send(self, message: Outgoing) -> None:
        message_id = message.message_id
        try:
            if self._client is None or not self._client.is_connected:
                self._drop()
                client = await self._mailer._client()
                await client.connect()
                self._client = client
            refused, _ = await self._client.sendmail(
                message.sender, list(message.recipients), message.data
            )
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            self._drop()  # no QUIT: after a timeout it would only wait for another one
            error = _error(exc)
            log.debug(
                "smtp send failed",
                extra={"message_id": message_id, "permanent": error.permanent, "code": error.code},
            )
            raise error from exc
        if refused:
            # accepted for at least one recipient: a retry would duplicate it for the others
            log.warning(
                "smtp recipients partly refused",
                extra={"message_id": message_id, "refused": len(refused)},
            )
        log.debug("smtp sent", extra={"message_id": message_id})

    async def close(self) -> None:
        """QUIT politely; a server that is already gone or slow to answer is just dropped."""
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            with suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()
        if client is not None:
            client.close()

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]")


def eml_name(message_id: str) -> str:
    """The file name for a Message-ID: the same id always gives the same name, different ids
    give different names (a hash is added whenever characters had to be replaced)."""
    bare = message_id.strip().removeprefix("<").removesuffix(">")
    safe = _UNSAFE.sub("_", bare).lstrip(".")
    if safe != bare or not safe or len(safe) > 150:
        digest = hashlib.sha256(message_id.strip().encode()).hexdigest()[:16]
        safe = f"{safe[:100]}.{digest}"
    return f"{safe}.eml"


class FileMailer:
    """Writes each message to ``<folder>/<Message-ID>.eml`` (for the demo and for setups without
    SMTP). Sending the same Message-ID again replaces the file with the same name, so a resend
    after a crash leaves one file. The file appears whole or not at all (written to a temporary
    file in the folder, then renamed), and is readable by the owner only, as it holds personal
    data."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def __repr__(self) -> str:
        return f"FileMailer({str(self.folder)!r})"

    def path_for(self, message: Outgoing) -> Path:
        if not message.message_id.strip():
            raise ValueError("FileMailer needs a Message-ID to name the file")
        return self.folder / eml_name(message.message_id)

    async def send(self, message: Outgoing) -> None:
        path = self.path_for(message)
        try:
            await asyncio.to_thread(_write_atomically, path, message.data)
        except OSError as exc:
            raise SendError(
                f"could not write {path.name}: {exc.strerror or type(exc).__name__}",
                permanent=False,
            ) from exc
        log.debug("eml written", extra={"message_id": message.message_id})


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem[:50]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
