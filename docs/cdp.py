"""A headless Chromium page driven over the Chrome DevTools Protocol, with the standard library.

For screenshots that need a click first (docs/screenshots.py: unfolding the MLflow parent run):
``chromium --screenshot`` cannot click, and a websocket or browser-automation package would be
a dependency for one script. The protocol is JSON over one websocket; this speaks just enough of
it (client frames masked, server frames of any length) to evaluate JavaScript and capture the
page.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class _Socket:
    """A websocket client connection (RFC 6455 text frames)."""

    def __init__(self, url: str) -> None:
        hostport, _, path = url.removeprefix("ws://").partition("/")
        host, _, port = hostport.partition(":")
        self._sock = socket.create_connection((host, int(port)), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self._sock.sendall(
            (
                f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self._read(1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"no websocket at {url}: {head[:200]!r}")

    def _read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self._sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("the browser closed the connection")
            buf += chunk
        return buf

    def send(self, text: str) -> None:
        data, mask = text.encode(), os.urandom(4)
        n = len(data)
        if n < 126:
            head = bytes([0x81, 0x80 | n])
        elif n < 1 << 16:
            head = bytes([0x81, 0x80 | 126]) + struct.pack(">H", n)
        else:
            head = bytes([0x81, 0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self._sock.sendall(head + mask + masked)

    def receive(self) -> str:
        out = b""
        while True:
            first, second = self._read(2)
            n = second & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            out += self._read(n)
            if first & 0x80:  # FIN: the message is complete
                return out.decode()

    def close(self) -> None:
        self._sock.close()


class Page:
    """One browser tab: protocol calls, JavaScript, waiting and screenshots."""

    def __init__(self, websocket_url: str) -> None:
        self._ws = _Socket(websocket_url)
        self._id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One protocol command; its result (events on the way are skipped)."""
        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self._ws.receive())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))

    def js(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60.0) -> None:
        """Wait until ``expression`` is truthy in the page."""
        end = time.monotonic() + timeout
        while not self.js(expression):
            if time.monotonic() > end:
                raise RuntimeError(f"the page never satisfied {expression!r}")
            time.sleep(0.25)

    def screenshot(self, png: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        png.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        self._ws.close()


@contextlib.contextmanager
def open_page(chromium: str, url: str, window: str = "1600,1000") -> Iterator[Page]:
    """Headless Chromium on ``url`` (a fresh profile); yields its :class:`Page`."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                f"--window-size={window}",
                url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        page = None
        try:
            port_file = Path(profile) / "DevToolsActivePort"  # Chromium writes its port here
            for _ in range(300):
                if port_file.is_file() and port_file.read_text().strip():
                    break
                if proc.poll() is not None:
                    raise RuntimeError(f"{chromium} exited ({proc.returncode})")
                time.sleep(0.1)
            else:
                raise RuntimeError(f"{chromium} opened no debugging port")
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as r:
                tabs = [t for t in json.load(r) if t.get("type") == "page"]
            page = Page(tabs[0]["webSocketDebuggerUrl"])
            yield page
        finally:
            if page is not None:
                page.close()
            proc.kill()
            proc.wait()
