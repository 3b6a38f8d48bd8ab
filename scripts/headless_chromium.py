"""Debian's Chromium, headless, driven over the DevTools protocol: what the README's MLflow picture
(``mlflow_screenshot.py``) and the tests that read the MLflow UI and the offline ``dvc plots`` page use.

Started as root with the flags that work on these machines and a fresh profile each time; ``offline=True`` sends
every request through a proxy that does not exist, so a page that needs the network shows it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--remote-debugging-port=0"]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise SystemExit("chromium not found; install Debian's chromium package (`make install` does, with the dev "
                         "extras)")
    return found


class Page:
    """One Chromium tab driven over the DevTools protocol."""

    def __init__(self, ws_url: str):
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=None)
        self.next_id = 0

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression: str):
        return self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                         awaitPromise=True).get("result", {}).get("value")

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def text(self) -> str:
        return self.js("document.body ? document.body.innerText : ''") or ""

    def wait_for(self, expression: str, seconds: float = 60) -> bool:
        """Whether the JavaScript ``expression`` became true within ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.js(expression):
                return True
            time.sleep(0.5)
        return False

    def wait_text(self, text: str, seconds: float = 60) -> bool:
        """Whether the page showed ``text`` within ``seconds``."""
        return self.wait_for(f"document.body && document.body.innerText.includes({json.dumps(text)})", seconds)

    def click_text(self, text: str) -> bool:
        """Click the innermost element whose text is exactly ``text`` (MLflow's switches are divs, role=button)."""
        return bool(self.js(CLICK_TEXT % json.dumps(text)))


CLICK_TEXT = """
((text) => {
  const hits = [...document.querySelectorAll('[role=button], button, a, span, div')]
    .filter(e => e.textContent.trim() === text);
  const target = hits.find(e => e.matches('[role=button], button, a')) || hits[hits.length - 1];
  if (target) target.click();
  return Boolean(target);
})(%s)
"""


@contextmanager
def chromium(width: int = 1400, height: int = 1150, offline: bool = False) -> Iterator[Page]:
    """A headless Chromium with a fresh profile and its first tab; stopped on exit."""
    extra = ["--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"] if offline else []
    with tempfile.TemporaryDirectory(prefix="rosetta-chromium-") as profile:
        browser = subprocess.Popen([chromium_path(), *FLAGS, *extra, f"--user-data-dir={profile}",
                                    f"--window-size={width},{height}", "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 60
            while not port_file.is_file() and time.monotonic() < deadline:
                time.sleep(0.2)
            devtools = port_file.read_text().split()[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{devtools}/json/list", timeout=10) as r:
                tab = next(t for t in json.load(r) if t["type"] == "page")
            page = Page(tab["webSocketDebuggerUrl"])
            page.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                      mobile=False)
            yield page
        finally:
            os.killpg(browser.pid, 15)
            browser.wait(timeout=30)
