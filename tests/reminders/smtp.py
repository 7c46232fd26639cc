"""A real SMTP server for tests that run senders in other processes: aiosmtpd's Controller on a
free loopback port, with a handler that records every message's Message-ID.

    server = SmtpServer()
    server.start()
    server.recorder.reply = "451 4.3.0 try later"   # refuse DATA (temporarily) from now on
    server.recorder.delay_first = 3.0               # the first message waits before its "250"
    server.stop()                                   # nothing listens on the port any more
    server.start()                                  # the same port again

A message counts as *received* when its data has arrived, and as *accepted* once the server has
answered "250" (a sender killed while the first message waits never sees that answer: aiosmtpd
then cancels the handler, and the message is received but not accepted — the worst case a real
server can produce, where it keeps the message anyway).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller

from tests.serverproc import free_port

HOST = "127.0.0.1"
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


def message_id_of(content: bytes) -> str:
    """The Message-ID header of a raw message ("" when it has none)."""
    head = content.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    found = _MESSAGE_ID.search(head)
    return found.group(1).decode() if found else ""


@dataclass
class Received:
    message_id: str
    rcpt_tos: list[str]
    content: bytes
    accepted: bool = False  # the server answered 250 (set after the delay, if any)


@dataclass
class Recorder:
    """An aiosmtpd handler: records each message's Message-ID, or answers as told.

    Its state is read and changed from the test's thread while the server's thread runs the
    handler; everything goes through ``lock``."""

    reply: str | None = None  # answer to DATA instead of "250", e.g. "451 …" or "550 …"
    delay_first: float = 0.0  # seconds the first message waits before it is answered
    received: list[Received] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # Message-IDs answered with ``reply``
    data_started: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _data_count: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", errors="surrogateescape")
        message_id = message_id_of(content)
        with self.lock:
            self._data_count += 1
            first = self._data_count == 1
            reply = self.reply
            if reply is not None:
                self.refused.append(message_id)
                item = None
            else:
                item = Received(message_id, list(envelope.rcpt_tos), content)
                self.received.append(item)
        self.data_started.set()
        if first and self.delay_first > 0:
            await asyncio.sleep(self.delay_first)  # cancelled when the sender goes away
        if item is None:
            return reply or "451 try later"
        with self.lock:
            item.accepted = True
        return "250 OK"

    def message_ids(self) -> list[str]:
        """The Message-IDs received so far, in order of arrival (repeats included)."""
        with self.lock:
            return [r.message_id for r in self.received]

    def counts(self) -> Counter[str]:
        with self.lock:
            return Counter(r.message_id for r in self.received)

    def accepted(self) -> Counter[str]:
        with self.lock:
            return Counter(r.message_id for r in self.received if r.accepted)


class SmtpServer:
    """aiosmtpd on ``127.0.0.1:port`` (a free port unless given); stop and start it again on the
    same port to simulate an outage. The recorder lives on across restarts."""

    def __init__(self, recorder: Recorder | None = None, port: int | None = None) -> None:
        self.recorder = recorder or Recorder()
        self.port = port or free_port()
        self._controller: Controller | None = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        if self._controller is not None:
            return
        # a Controller cannot be started twice (its loop is closed by stop): a new one each time
        controller = Controller(
            self.recorder, hostname=HOST, port=self.port, server_hostname="smtp.test"
        )
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> SmtpServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
