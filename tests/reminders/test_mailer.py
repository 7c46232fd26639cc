"""Sending against a real SMTP server (aiosmtpd's Controller, in this process, on a free loopback
port): delivery, login, refusals mapped to permanent or temporary errors, timeouts, STARTTLS and
implicit TLS with a self-signed certificate; and the .eml folder."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import logging
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from scheduler.reminders.mailer import FileMailer, Mailer, SendError, SmtpMailer, eml_name
from scheduler.reminders.messages import Kind, MessageData, render
from scheduler.settings import SmtpTls

HOST = "127.0.0.1"
TO = "maria.schulz@example.de"
SENDER = "termine@stadt.example.de"
USER, PASSWORD = "termine", "s3cret-Passw0rd"
MESSAGE_ID = "<outbox-42.f00d@termine.example.de>"
START = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def message(message_id: str = MESSAGE_ID, to: str = TO) -> Any:
    return render(
        MessageData(
            kind=Kind.CONFIRMATION,
            language="de",
            to_name="Maria Schulz",
            to_email=to,
            attendee_name="Paul Schulz",
            reference="K7QM-2X9D",
            services=["Hund anmelden"],
            start=START,
            end=START.replace(minute=15),
            tz=ZoneInfo("Europe/Berlin"),
            place_name="Bürgerbüro",
            place_address="Marktplatz 1, 12345 Musterstadt",
            what_to_bring=["Personalausweis"],
            manage_url="https://termine.example.de/buchung/K7QM-2X9D?token=t",
            ics=b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n",
            ics_method="REQUEST",
            message_id=message_id,
            sender=f"Terminvergabe Stadt Köln <{SENDER}>",
        ),
        now=START,
    )


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool
    authenticated: bool


@dataclass
class Collector:
    """An aiosmtpd handler that keeps what it accepts, or answers as told."""

    rcpt_reply: str | None = None  # e.g. "550 no such user"
    data_reply: str | None = None  # e.g. "451 try later"
    received: list[Received] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply:
            return self.data_reply
        assert isinstance(envelope.content, bytes)
        self.received.append(
            Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                content=envelope.content,
                tls=session.ssl is not None,
                authenticated=bool(session.authenticated),
            )
        )
        return "250 Message accepted for delivery"


def authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (USER.encode(), PASSWORD.encode())
    # handled=False: aiosmtpd then answers "535"; its default (handled=True) means "I already
    # replied" and leaves the client waiting
    return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@contextmanager
def smtp_server(handler: Collector, **smtp_kwargs: Any) -> Iterator[int]:
    port = free_port()
    controller = Controller(
        handler, hostname=HOST, port=port, server_hostname="smtp.test", **smtp_kwargs
    )
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def mailer(port: int, **kwargs: Any) -> SmtpMailer:
    kwargs.setdefault("local_hostname", "client.test")
    kwargs.setdefault("timeout", 5.0)
    return SmtpMailer(HOST, port, **kwargs)


def parsed(content: bytes) -> Any:
    return email.message_from_bytes(content, policy=email.policy.default)


async def refusal(
    handler: Collector, smtp_kwargs: dict[str, Any], **mailer_kwargs: Any
) -> SendError:
    """Send to a server set up with ``smtp_kwargs`` and return the SendError it leads to."""
    with smtp_server(handler, **smtp_kwargs) as port:
        try:
            await mailer(port, **mailer_kwargs).send(message())
        except SendError as exc:
            return exc
    pytest.fail("the message was accepted")


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- certificates --------------------------------------------------------------------------


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        # verification stays on: the context trusts exactly this certificate (SAN 127.0.0.1)
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="session")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    """A self-signed certificate for 127.0.0.1 (made with openssl: the `cryptography` package
    is not installed in this environment)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=smtp.test",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return Cert(cert, key)


# --- SmtpMailer ----------------------------------------------------------------------------


async def test_the_message_arrives_once_with_its_message_id() -> None:
    handler = Collector()
    with smtp_server(handler) as port:
        await mailer(port).send(message())
    (got,) = handler.received
    assert got.rcpt_tos == [TO]
    assert got.mail_from == SENDER
    assert not got.tls
    mail = parsed(got.content)
    assert mail["Message-ID"] == MESSAGE_ID
    assert mail["Subject"].startswith("Terminbestätigung: Hund anmelden am Montag")
    assert "09:00" in mail.get_body(("plain",)).get_content()


async def test_one_mailer_sends_many_messages_one_connection_each() -> None:
    handler = Collector()
    with smtp_server(handler) as port:
        smtp = mailer(port)
        for n in range(3):
            await smtp.send(message(f"<outbox-{n}.x@termine.example.de>"))
    ids = [parsed(r.content)["Message-ID"] for r in handler.received]
    assert ids == [f"<outbox-{n}.x@termine.example.de>" for n in range(3)]


async def test_login_with_the_right_password() -> None:
    handler = Collector()
    with smtp_server(handler, authenticator=authenticator, auth_require_tls=False) as port:
        await mailer(port, user=USER, password=PASSWORD).send(message())
    (got,) = handler.received
    assert got.authenticated


async def test_a_wrong_password_is_permanent() -> None:
    handler = Collector()
    smtp_kwargs = {"authenticator": authenticator, "auth_require_tls": False}
    error = await refusal(handler, smtp_kwargs, user=USER, password="wrong")
    assert error.permanent
    assert error.code == 535
    assert handler.received == []
    assert "wrong" not in str(error)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_a_server_that_requires_login_refuses_a_mailer_without_one() -> None:
    handler = Collector()
    kwargs = {"authenticator": authenticator, "auth_require_tls": False, "auth_required": True}
    error = await refusal(handler, kwargs)
    assert error.permanent
    assert error.code == 530
    assert handler.received == []


@pytest.mark.parametrize(
    ("stage", "reply", "permanent"),
    [
        ("rcpt", "550 no such user", True),
        ("rcpt", "451 try later", False),
        ("data", "550 message rejected", True),
        ("data", "451 try later", False),
    ],
)
async def test_refusals_are_permanent_for_5xx_and_temporary_for_4xx(
    stage: str, reply: str, permanent: bool
) -> None:
    handler = Collector(**{f"{stage}_reply": reply})
    error = await refusal(handler, {})
    assert error.permanent is permanent
    assert error.code == int(reply[:3])
    assert reply[4:] in str(error)
    assert handler.received == []


async def test_an_address_the_server_echoes_is_not_in_the_error() -> None:
    handler = Collector(rcpt_reply=f"550 5.1.1 <{TO}>: Recipient address rejected")
    error = await refusal(handler, {})
    assert error.permanent
    assert TO not in str(error)
    assert "Recipient address rejected" in str(error)


async def test_nothing_listening_is_temporary_and_fast() -> None:
    port = free_port()  # bound, then closed: nobody listens there
    smtp = SmtpMailer(HOST, port, timeout=1.0)  # the default EHLO name, as in production
    started = time.monotonic()
    with pytest.raises(SendError) as caught:
        await smtp.send(message())
    assert not caught.value.permanent
    assert caught.value.code is None
    assert time.monotonic() - started < 2.0


async def test_a_server_that_never_greets_times_out_as_temporary() -> None:
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(1)  # the kernel accepts the connection; nobody ever says "220"
        started = time.monotonic()
        with pytest.raises(SendError) as caught:
            await mailer(listener.getsockname()[1], timeout=0.5).send(message())
        elapsed = time.monotonic() - started
    assert not caught.value.permanent
    assert "timeout" in str(caught.value).lower()
    assert 0.4 < elapsed < 2.5


async def test_starttls_with_login(cert: Cert) -> None:
    handler = Collector()
    kwargs = {
        "tls_context": cert.server_context(),
        "require_starttls": True,
        "authenticator": authenticator,  # AUTH only after STARTTLS (auth_require_tls default)
    }
    with smtp_server(handler, **kwargs) as port:
        smtp = mailer(
            port, tls="starttls", tls_context=cert.client_context(), user=USER, password=PASSWORD
        )
        await smtp.send(message())
    (got,) = handler.received
    assert got.tls
    assert got.authenticated
    assert parsed(got.content)["Message-ID"] == MESSAGE_ID


async def test_starttls_verifies_the_certificate_by_default(cert: Cert) -> None:
    handler = Collector()
    smtp_kwargs = {"tls_context": cert.server_context(), "require_starttls": True}
    error = await refusal(handler, smtp_kwargs, tls="starttls")  # system CAs: self-signed fails
    assert not error.permanent
    assert "certificate" in str(error).lower()
    assert handler.received == []


async def test_tls_none_does_not_upgrade_even_when_offered(cert: Cert) -> None:
    # aiosmtplib's own default would STARTTLS whenever the server offers it
    handler = Collector()
    with smtp_server(handler, tls_context=cert.server_context()) as port:
        await mailer(port, tls="none").send(message())
    (got,) = handler.received
    assert not got.tls


async def test_starttls_required_by_the_server_but_not_configured_is_refused(cert: Cert) -> None:
    handler = Collector()
    smtp_kwargs = {"tls_context": cert.server_context(), "require_starttls": True}
    error = await refusal(handler, smtp_kwargs, tls="none")
    assert error.code == 530
    assert handler.received == []


async def test_implicit_tls(cert: Cert) -> None:
    handler = Collector()
    port = free_port()
    controller = Controller(
        handler,
        hostname=HOST,
        port=port,
        server_hostname="smtp.test",
        ssl_context=cert.server_context(),
    )
    controller.start()
    try:
        await mailer(port, tls="tls", tls_context=cert.client_context()).send(message())
    finally:
        controller.stop()
    (got,) = handler.received
    assert parsed(got.content)["Message-ID"] == MESSAGE_ID


async def test_no_address_name_body_or_password_in_the_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="scheduler")
    handler = Collector()
    with smtp_server(handler, authenticator=authenticator, auth_require_tls=False) as port:
        await mailer(port, user=USER, password=PASSWORD).send(message())
        with pytest.raises(SendError):
            await mailer(port, user=USER, password=PASSWORD + "x").send(message())
    ours = [r for r in caplog.records if r.name.startswith("scheduler")]
    assert ours  # the check must see something
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in ours)
    for secret in (TO, "Maria", "Schulz", PASSWORD, "Hund anmelden", "K7QM"):
        assert secret not in logged
    assert MESSAGE_ID in logged


def test_settings_are_checked_and_the_password_is_not_shown() -> None:
    with pytest.raises(ValueError, match="tls must be one of"):
        SmtpMailer(HOST, 25, tls="ssl")
    smtp = SmtpMailer(HOST, 587, tls="starttls", user=USER, password=PASSWORD)
    assert PASSWORD not in repr(smtp)
    assert SmtpMailer(HOST, 465, tls=SmtpTls.TLS).tls == "tls"  # the settings' enum is accepted


def test_both_mailers_are_mailers(tmp_path: Path) -> None:
    assert isinstance(SmtpMailer(HOST, 25), Mailer)
    assert isinstance(FileMailer(tmp_path), Mailer)


# --- FileMailer ----------------------------------------------------------------------------


async def test_file_mailer_writes_one_readable_eml_per_message_id(tmp_path: Path) -> None:
    folder = tmp_path / "mail" / "out"  # created on first use
    files = FileMailer(folder)
    await files.send(message())
    await files.send(message())  # a resend after a crash: same Message-ID, same file
    await files.send(message("<outbox-43.beef@termine.example.de>"))

    assert names(folder) == [
        "outbox-42.f00d@termine.example.de.eml",
        "outbox-43.beef@termine.example.de.eml",
    ]  # and no temporary files left behind
    mail = parsed((folder / "outbox-42.f00d@termine.example.de.eml").read_bytes())
    assert mail["Message-ID"] == MESSAGE_ID
    assert mail["Subject"].startswith("Terminbestätigung: ")
    assert "Termin ansehen, verlegen oder absagen" in mail.get_body(("plain",)).get_content()
    assert [a.get_filename() for a in mail.iter_attachments()] == ["termin.ics"]


async def test_file_mailer_keeps_odd_message_ids_inside_the_folder(tmp_path: Path) -> None:
    files = FileMailer(tmp_path)
    odd = ["<../../etc/passwd@x>", "<a/b@x>", "<a_b@x>", "<.hidden@x>"]
    for message_id in odd:
        await files.send(message(message_id))
    written = names(tmp_path)
    assert len(written) == len(odd)  # "a/b" and "a_b" do not collide
    assert all(not n.startswith(".") and "/" not in n and n.endswith(".eml") for n in written)
    assert eml_name("<a/b@x>") == eml_name(" <a/b@x> ")


async def test_file_mailer_needs_a_message_id(tmp_path: Path) -> None:
    m = dataclasses.replace(message(), message_id=" ")
    with pytest.raises(ValueError, match="Message-ID"):
        await FileMailer(tmp_path).send(m)


async def test_file_mailer_write_failure_is_temporary(tmp_path: Path) -> None:
    blocker = tmp_path / "mail"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(SendError) as caught:
        await FileMailer(blocker).send(message())
    assert not caught.value.permanent
