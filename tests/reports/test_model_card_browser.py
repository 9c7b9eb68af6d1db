"""The model card in a real headless browser: the plots are laid out and drawn.

Chromium (Debian's `chromium` package, which `.ci/run` installs) loads the card from a file
and is asked over the DevTools protocol where each chart, line and bar ended up on the page.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

from appliance.reports import build_model_card, render
from appliance.store import session_scope

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Runs in the page: every chart's kind, box, and what it drew.
_PROBE = """JSON.stringify([...document.querySelectorAll('svg[data-chart]')].map(s => {
  const box = s.getBoundingClientRect();
  const lines = [...s.querySelectorAll('polyline')].map(p => p.getBBox().width);
  return {kind: s.dataset.chart, section: s.closest('section').id,
          svg: s instanceof SVGSVGElement, width: box.width, height: box.height,
          lines: lines, bars: s.querySelectorAll('rect[data-bar]').length,
          cells: s.querySelectorAll('rect > title').length};
}))"""


def _page_socket(port: int, deadline: float) -> str:
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                pages = [t for t in json.load(r) if t["type"] == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("chromium offered no page to inspect")
        time.sleep(0.2)


def _evaluate(page: Path, profile: Path, expression: str) -> object:
    proc = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-extensions", "--remote-debugging-address=127.0.0.1",
         "--remote-debugging-port=0", f"--user-data-dir={profile}", page.as_uri()],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        port_file = profile / "DevToolsActivePort"
        while not port_file.exists() or not port_file.read_text().strip():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit {proc.returncode})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with connect(_page_socket(port, deadline), max_size=None, open_timeout=30) as ws:
            # The page starts as about:blank (already "complete"); wait for the file itself.
            loaded = "document.readyState === 'complete' && location.protocol === 'file:'"
            attempt = 0
            while True:
                attempt += 1
                ws.send(json.dumps({"id": attempt, "method": "Runtime.evaluate",
                                    "params": {"expression": loaded, "returnByValue": True}}))
                if json.loads(ws.recv(timeout=30))["result"]["result"]["value"] is True:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"chromium did not load {page}")
                time.sleep(0.1)
            ws.send(json.dumps({"id": attempt + 1, "method": "Runtime.evaluate",
                                "params": {"expression": expression, "returnByValue": True}}))
            reply = json.loads(ws.recv(timeout=30))
        return json.loads(reply["result"]["result"]["value"])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_cards_plots_render_in_a_headless_browser(world, tmp_path):
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: apt-get install chromium (.ci/run does)")
    with session_scope(world.url) as s:
        # v1: the version that served, with its importance and its windows' fairness.
        card = build_model_card(s, "credit", 1)
    page = tmp_path / "card.html"
    page.write_text(render(card, "html"))
    charts = _evaluate(page, tmp_path / "profile", _PROBE)
    assert [(c["kind"], c["section"]) for c in charts] == [
        ("bar", "evaluation"), ("bar", "feature-importance"), ("line", "feature-importance"),
        ("line", "fairness"), ("line", "fairness"), ("line", "performance"),
        ("line", "performance"), ("heatmap", "performance")]
    for chart in charts:
        assert chart["svg"] and chart["width"] > 100 and chart["height"] > 50, chart
    importance, ratio = charts[1], charts[3]
    assert importance["bars"] == 3  # income, debt, region
    # The version's ratio and the four-fifths line, each across the four windows.
    assert len(ratio["lines"]) == 2 and all(w > 100 for w in ratio["lines"])
    accuracy, share, heat = charts[5], charts[6], charts[7]
    # Two series (live, estimated), each drawn across the windows it has values for.
    assert len(accuracy["lines"]) == 2 and all(w > 100 for w in accuracy["lines"])
    assert len(share["lines"]) == 1 and share["lines"][0] > 100
    assert heat["cells"] == 3 * 4  # three features over four windows
    assert charts[0]["bars"] == 2  # accuracy and auc
