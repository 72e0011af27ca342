"""The demo page (web/dist, built by scripts/build-web.sh) end to end in headless
Chromium on WebGPU, driven through ChromeDriver:
  1. ?checkpoint=... of a checkpoint `gru train` wrote: #result is exactly what
     `gru generate --temperature 0` printed (web/tests/fixtures/lm.generate.txt);
  2. ?train=... with the flags of a native run: #result is the JSON line
     `gru train --json` printed, losses equal up to the GPU-vs-CPU tolerance;
  3. a bad URL: the title says `error: ...`;
  4. as a person would: the sample text, Train, then Generate by clicks; the page's
     screenshot is saved to target/artifacts/web-demo.png (a CI artifact; $SCREENSHOT
     moves it), from which docs/web-demo.png, the README's picture, is taken.
Exits non-zero on the first failure."""

import functools
import http.server
import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))
from webdriver import Browser  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
FIXTURES = os.path.join(ROOT, "web", "tests", "fixtures")


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve():
    handler = functools.partial(Quiet, directory=ROOT)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}"


def check(ok, what):
    if not ok:
        raise AssertionError(what)
    print(f"ok: {what.splitlines()[0]}")


def main():
    base = serve()
    page = f"{base}/web/dist/index.html"
    b = Browser()
    try:
        # 1. Generation from the URL.
        b.open(page + "?checkpoint=/web/tests/fixtures/lm.safetensors&prompt=The%20&length=120&temperature=0")
        title = b.wait_title(300)
        want = open(os.path.join(FIXTURES, "lm.generate.txt"), encoding="utf-8").read()
        got = b.text_of("result")
        check(title == "done" and got == want,
              f"greedy generation from the URL prints what `gru generate` printed\n{title}\n{got!r}\n{want!r}")
        print("  adapter line:", b.text_of("adapter"))

        # 2. Training from the URL.
        b.open(page + "?train=/web/tests/fixtures/lm.txt&steps=20&hidden=32&embed=16&batch=8&seqLen=32&seed=1")
        title = b.wait_title(600)
        got = json.loads(b.text_of("result")) if title == "done" else {}
        want = json.loads(open(os.path.join(FIXTURES, "lm.train.json")).read())
        same = title == "done" and all(got.get(k) == want[k] for k in ("step", "epoch")) and all(
            abs(got[k] - want[k]) <= 1e-4 * max(1.0, abs(want[k]))
            for k in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"))
        check(same, f"training from the URL ends on `gru train --json`'s line\n{title}\n{got}\n{want}")

        # 3. A file that is not a checkpoint.
        b.open(page + "?checkpoint=/web/tests/fixtures/lm.txt")
        title = b.wait_title(120)
        check(title.startswith("error: ") and "lm.txt" in title,
              f"a bad checkpoint gives an error title: {title}")

        # 4. By clicks: sample text, a short run, generation, a screenshot.
        b.open(page)
        b.run("""
            document.getElementById('steps').value = '40';
            document.getElementById('hidden').value = '48';
            document.getElementById('text').value = arguments[0];
        """, open(os.path.join(FIXTURES, "lm.txt"), encoding="utf-8").read())
        b.click("#train")
        title = b.wait_title(600)
        check(title == "done", f"training by clicks ends: {title}")
        b.run("document.title = ''; document.getElementById('prompt').value = 'The ';"
              "document.getElementById('length').value = '200';")
        b.click("#generate")
        title = b.wait_title(300)
        out = b.text_of("output")
        check(title == "done" and out.startswith("The ") and len(out) == 204,
              f"generation by clicks streams 200 characters: {title} {out!r}")
        print("  ", b.text_of("train-status"))
        print("  ", b.text_of("gen-status"))
        shot = os.environ.get("SCREENSHOT", os.path.join(ROOT, "target", "artifacts", "web-demo.png"))
        os.makedirs(os.path.dirname(shot), exist_ok=True)
        b.screenshot(shot)
        print(f"screenshot: {shot}")
    finally:
        b.close()


if __name__ == "__main__":
    main()
