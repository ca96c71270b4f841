"""Logging in to the Prefect UI with headless Chromium over the DevTools protocol.

The UI's login page (shown when the server requires an auth string) keeps what is typed, base64
encoded, in the browser's local storage; a profile logged in here and closed cleanly keeps it, so
later `chromium --dump-dom` runs with that profile render the UI's pages as a logged-in user does.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

START_SECONDS = 60
LOGIN_SECONDS = 60
PASSWORD_INPUT = "document.querySelector('input[type=password]')"


class DevTools:
    """One page's DevTools session: commands in, results out (events are skipped)."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=30))
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout_seconds: float, what: str) -> None:
        deadline = time.monotonic() + timeout_seconds
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                body = self.evaluate("document.body ? document.body.innerText.slice(0, 500) : ''")
                raise AssertionError(f"{what}: not within {timeout_seconds:.0f} s; the page shows {body!r}")
            time.sleep(0.25)


@contextmanager
def devtools_page(profile: Path, flags: tuple[str, ...]) -> Iterator[DevTools]:
    """Chromium with ``profile``, driven over DevTools; closed cleanly (the profile is saved)."""
    browser = shutil.which("chromium")
    assert browser, "chromium is not installed: run `make install` (scripts/install-system.sh installs it)"
    process = subprocess.Popen(
        [browser, *flags, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_SECONDS
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            assert process.poll() is None, f"chromium exited ({process.returncode}) before DevTools listened"
            assert time.monotonic() < deadline, f"chromium's DevTools did not listen within {START_SECONDS} s"
            time.sleep(0.1)
        port, browser_path = port_file.read_text().splitlines()[:2]
        pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json() if t["type"] == "page"]
        with connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as page_socket:
            yield DevTools(page_socket)
        with connect(f"ws://127.0.0.1:{port}{browser_path}", max_size=None) as browser_socket:
            DevTools(browser_socket).call("Browser.close")
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def log_in_to_the_ui(ui_url: str, page_path: str, auth_string: str, profile: Path, flags: tuple[str, ...]) -> str:
    """Open ``page_path`` of the UI, find the login page instead (it asks for the auth string),
    type the string, submit, and wait until the UI lets the user in; returns the text the page
    showed before the login. Raises AssertionError when any of it does not happen."""
    with devtools_page(profile, flags) as page:
        page.call("Page.navigate", url=f"{ui_url}{page_path}")
        page.wait_for(f"!!{PASSWORD_INPUT}", LOGIN_SECONDS, "the UI's login page (a password field)")
        before = page.evaluate("document.body.innerText")
        page.evaluate(f"{PASSWORD_INPUT}.focus()")
        page.call("Input.insertText", text=auth_string)
        page.evaluate("document.querySelector('form button[type=submit]').click()")
        page.wait_for(
            f"localStorage.getItem('prefect-password') !== null && !{PASSWORD_INPUT}",
            LOGIN_SECONDS,
            "the UI letting the user in after the login",
        )
    return str(before)
