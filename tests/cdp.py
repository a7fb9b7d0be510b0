"""A headless Chromium driven over the DevTools protocol, for the status
page's tests.

Chromium's `--remote-debugging-pipe` speaks the protocol on file
descriptors 3 (its input) and 4 (its output), one JSON message per
NUL-terminated frame: no websocket, no port, no extra Python package.
`Browser` starts Debian's `chromium`, `Browser.open(url)` gives a `Tab`
(a page target attached in flat mode) that evaluates JavaScript and takes
screenshots.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from harness import _die_with_parent, stop_process


class CdpError(RuntimeError):
    pass


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    def __init__(self, log_path: Path, binary: str | None = None):
        self.binary = binary or chromium_binary()
        if not self.binary:
            raise CdpError("chromium is not installed: run the suite through tests/run, which installs it")
        self.log_path = log_path
        self.profile = tempfile.mkdtemp(prefix="rustgi-chromium-")
        self._ids = itertools.count(1)
        self._replies: dict[int, dict] = {}
        self._cond = threading.Condition()
        self._closed = False
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()

        def child_setup():
            _die_with_parent()
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--headless",
                "--no-sandbox",  # the suite runs as root
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--mute-audio",
                "--remote-debugging-pipe",
                f"--user-data-dir={self.profile}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            preexec_fn=child_setup,
            pass_fds=(3, 4),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._out = to_chrome_w
        self._in = from_chrome_r
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        buffer = b""
        while True:
            try:
                chunk = os.read(self._in, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._closed = True
                    self._cond.notify_all()
                return
            buffer += chunk
            while b"\0" in buffer:
                frame, buffer = buffer.split(b"\0", 1)
                message = json.loads(frame)
                if "id" in message:
                    with self._cond:
                        self._replies[message["id"]] = message
                        self._cond.notify_all()

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        ident = next(self._ids)
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._out, data):]
        deadline = time.monotonic() + timeout
        with self._cond:
            while ident not in self._replies:
                if self._closed:
                    raise CdpError(f"chromium went away during {method} (see {self.log_path})")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CdpError(f"no answer to {method} in {timeout} s")
                self._cond.wait(left)
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def open(self, url: str, width: int = 1280, height: int = 1000) -> "Tab":
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        tab = Tab(self, session)
        tab.send("Emulation.setDeviceMetricsOverride",
                 {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        tab.send("Page.enable")
        tab.send("Page.navigate", {"url": url})
        tab.wait_for(f"document.readyState === 'complete' && location.href === {json.dumps(url)}")
        return tab

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except CdpError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)
        for fd in (self._out, self._in):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


class Tab:
    def __init__(self, browser: Browser, session: str):
        self.browser = browser
        self.session = session

    def send(self, method: str, params: dict | None = None, timeout: float = 30.0) -> dict:
        return self.browser.send(method, params, self.session, timeout)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression (a promise is awaited)."""
        result = self.send("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": True,
        })
        if "exceptionDetails" in result:
            raise CdpError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0, interval: float = 0.1):
        """Evaluates `expression` until it is truthy; returns its value. An
        expression that throws (the document is still loading) counts as
        false until the time is up."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except CdpError as e:
                value = e
            if value and not isinstance(value, CdpError):
                return value
            if time.monotonic() >= deadline:
                raise CdpError(f"{expression!r} still {value!r} after {timeout} s")
            time.sleep(interval)

    def screenshot(self, path: Path, full_page: bool = True):
        params: dict = {"format": "png", "captureBeyondViewport": full_page}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = self.send("Page.captureScreenshot", params)["data"]
        Path(path).write_bytes(base64.b64decode(data))
