"""Open an HTML file in headless Chromium (Debian's ``chromium`` package): what loaded, which
images rendered, which errors the page raised, and a screenshot.

Plain Chromium, no driver: the page is copied with a small probe script as the first thing in
its ``<head>``. The probe records ``console.error`` calls, uncaught exceptions, unhandled
rejections and resources that failed to load; on ``load`` it writes, into the DOM, every
``<img>``'s natural size and the position of chosen elements. ``--dump-dom`` then returns the
DOM, probe included. The screenshot is taken of the original file.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]

PROBE = """<script>
(function () {
  var errors = [];
  var origError = console.error;
  console.error = function () {
    errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    return origError.apply(console, arguments);
  };
  window.addEventListener("error", function (e) {
    var t = e.target;
    if (t && t.tagName) {
      errors.push("failed to load <" + t.tagName.toLowerCase() + "> "
                  + String(t.src || t.href || "").slice(0, 80));
    } else {
      errors.push("uncaught: " + e.message);
    }
  }, true);
  window.addEventListener("unhandledrejection", function (e) {
    errors.push("unhandled rejection: " + e.reason);
  });
  window.addEventListener("load", function () {
    var images = Array.prototype.map.call(document.images, function (img) {
      var r = img.getBoundingClientRect();
      return {src: String(img.getAttribute("src") || "").slice(0, 60), alt: img.alt,
              width: img.naturalWidth, height: img.naturalHeight, top: r.top};
    });
    var headings = Array.prototype.map.call(document.querySelectorAll("h1, h2, h3"),
      function (h) { return {text: h.textContent.trim(), top: h.getBoundingClientRect().top}; });
    var items = Array.prototype.filter.call(document.querySelectorAll("li"),
      function (li) { return li.offsetParent !== null; }).map(function (li) {
        return {text: li.textContent.trim().slice(0, 160), top: li.getBoundingClientRect().top};
      });
    var tables = Array.prototype.map.call(document.querySelectorAll("table"), function (t) {
      var h = t.previousElementSibling;
      while (h && !/^H[23]$/.test(h.tagName)) { h = h.previousElementSibling; }
      return {section: h ? h.textContent.trim() : "", right: t.getBoundingClientRect().right};
    });
    var out = document.createElement("pre");
    out.id = "kdfair-probe";
    out.textContent = JSON.stringify({title: document.title, images: images,
                                      headings: headings, items: items, tables: tables,
                                      viewport: document.documentElement.clientWidth,
                                      errors: errors});
    document.body.appendChild(out);
  });
})();
</script>"""


def chromium() -> str | None:
    """The Chromium binary: $KDFAIR_CHROMIUM, else chromium / chromium-browser on PATH."""
    given = os.environ.get("KDFAIR_CHROMIUM")
    if given:
        return given
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(binary: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="kdfair-chromium-") as profile:
        return subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)


def probe(page: Path, binary: str, width: int = 1400, height: int = 900,
          timeout: float = 120) -> dict:
    """Load ``page`` (a copy with the probe, resolving relative links against the original's
    folder) and return the probe's findings plus ``stderr_errors`` (uncaught errors Chromium
    logged)."""
    page = Path(page).resolve()
    text = page.read_text(encoding="utf-8")
    base = f'<base href="{page.parent.as_uri()}/">'
    m = re.search(r"<head[^>]*>", text, re.I)
    at = m.end() if m else 0
    with tempfile.TemporaryDirectory(prefix="kdfair-probe-") as tmp:
        copy = Path(tmp) / page.name
        copy.write_text(text[:at] + base + PROBE + text[at:], encoding="utf-8")
        proc = _run(binary, [f"--window-size={width},{height}", "--virtual-time-budget=10000",
                             "--dump-dom", copy.as_uri()], timeout)
    found = re.search(r'<pre id="kdfair-probe">(.*?)</pre>', proc.stdout, re.S)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"chromium did not load {page} (exit {proc.returncode}): "
                           f"{proc.stderr[-2000:]}")
    result = json.loads(html.unescape(found.group(1)))
    result["stderr_errors"] = re.findall(r'CONSOLE\S*\] "(Uncaught[^"]*)"', proc.stderr)
    return result


def screenshot(page: Path, target: Path, binary: str, width: int = 1400, height: int = 900,
               timeout: float = 120) -> Path:
    """A PNG of the first ``width`` × ``height`` screen of ``page``."""
    proc = _run(binary, [f"--window-size={width},{height}", "--virtual-time-budget=10000",
                         f"--screenshot={Path(target).resolve()}", Path(page).resolve().as_uri()],
                timeout)
    if proc.returncode != 0 or not Path(target).exists():
        raise RuntimeError(f"chromium took no screenshot of {page}: {proc.stderr[-2000:]}")
    return Path(target)
