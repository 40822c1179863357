"""An SMTP server for the send benchmark: aiosmtpd keeping each message's bytes as received, one
file each (`python bench/smtp_keep.py PORT DIR`; stops on SIGTERM)."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from aiosmtpd.controller import Controller


class Keep:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    async def handle_DATA(self, _server, _session, envelope) -> str:
        self.count += 1
        rcpt = envelope.rcpt_tos[0]
        (self.folder / f"{self.count:06d}.eml").write_bytes(
            rcpt.encode() + b"\n" + envelope.original_content
        )
        return "250 Message accepted for delivery"


def main() -> None:
    port, folder = int(sys.argv[1]), Path(sys.argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    controller = Controller(Keep(folder), hostname="127.0.0.1", port=port)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
