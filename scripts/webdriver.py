"""A minimal W3C WebDriver client over ChromeDriver (standard library only): start
headless Chromium with WebGPU, open pages, read elements, take screenshots. Used by
scripts/browser_e2e.py; `python3 scripts/webdriver.py URL` prints the page's title and
#result once the title says it is done."""

import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

# Chromium headless with WebGPU on its software adapter (SwiftShader), without the
# background connections a closed network refuses.
CHROME_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--enable-unsafe-webgpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1000,1400",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """One ChromeDriver process and one session."""

    def __init__(self, chromium="/usr/bin/chromium", chromedriver="/usr/bin/chromedriver"):
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="gru-chromium-")
        self.driver = subprocess.Popen(
            [chromedriver, f"--port={self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        while True:
            try:
                self._call("GET", "/status")
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("chromedriver did not start within 30 s")
                time.sleep(0.2)
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": CHROME_ARGS + [f"--user-data-dir={self.profile}"],
                    },
                }
            }
        }
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=600) as r:
            out = json.loads(r.read() or b"{}")
        value = out.get("value", out)
        return value

    def _s(self, method, path, body=None):
        return self._call(method, f"/session/{self.session}{path}", body)

    def open(self, url):
        self._s("POST", "/url", {"url": url})

    def title(self):
        return self._s("GET", "/title")

    def run(self, script, *args):
        return self._s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def text_of(self, element_id):
        """The text of element `element_id`, or None when the page has none."""
        return self.run(
            "const e = document.getElementById(arguments[0]); return e ? e.textContent : null;",
            element_id,
        )

    def wait_title(self, timeout):
        """Waits until the title is `done` or starts with `error:`; returns it."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            t = self.title()
            if t == "done" or t.startswith("error:"):
                return t
            time.sleep(0.5)
        raise TimeoutError(f"the page's title is still {self.title()!r} after {timeout} s")

    def click(self, css):
        """Clicks the element `css` selects, as a user would."""
        el = self._s("POST", "/element", {"using": "css selector", "value": css})
        ref = next(iter(el.values()))
        self._s("POST", f"/element/{ref}/click", {})

    def screenshot(self, path):
        png = base64.b64decode(self._s("GET", "/screenshot"))
        with open(path, "wb") as f:
            f.write(png)

    def close(self):
        try:
            self._s("DELETE", "")
        finally:
            self.driver.terminate()
            self.driver.wait(10)


if __name__ == "__main__":
    b = Browser()
    try:
        b.open(sys.argv[1])
        print(b.wait_title(float(os.environ.get("TIMEOUT", "300"))))
        adapter = b.text_of("adapter")
        if adapter is not None:
            print(adapter)
        print(b.text_of("result"), end="")
    finally:
        b.close()
