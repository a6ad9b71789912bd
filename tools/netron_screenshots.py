#!/usr/bin/env python3
"""Render onnx2snn's ``*.snn.onnx`` graphs in Netron (headless Chromium) and save PNGs.

For each model this writes, into the output folder (default ``docs/netron/``):

* ``<stem>_graph.png``      the top of the graph view (first layers), with Netron's
                            "Show Attributes" turned on, so IF nodes appear as nodes
                            labelled ``IF`` with their threshold/reset/v_init inline;
* ``<stem>_if_node.png``    the Node Properties side panel of the first ``IF`` node
                            (an ONNX model-local function of domain ``onnx2snn``);
* ``<stem>_conv_node.png``  the Node Properties side panel of the first ``Conv`` node
                            (name with `` λ <value>``, multi-line description, metadata
                            ``lambda_in`` / ``lambda`` / ``statistic``).

It is a documentation tool: CI does not run it and nothing it needs is a project
dependency. Everything stays on the machine: Netron is served on 127.0.0.1 by the
``netron`` Python package and every browser request to any other host is aborted
(Netron's page would otherwise try ipinfo.io and Google Analytics).

Set-up (a separate venv, not the project's; Chromium from Debian, not from
``playwright install``)::

    python3 -m venv /work/netron-venv
    /work/netron-venv/bin/pip install netron playwright
    apt-get install -y chromium fonts-wqy-microhei    # with sudo if not root

(``fonts-wqy-microhei`` is for the ``〈 〉`` (U+3008/U+3009) brackets Netron draws
around tensor shapes, e.g. ``W〈32×1×3×3〉``; the stock DejaVu/Liberation fonts lack them
and Chromium would draw empty boxes.)

Make the ``.snn.onnx`` files with the project's own venv, e.g.::

    . .venv/bin/activate
    python -m onnx2snn ../shared/models/mnist_cnn.onnx data/mnist_calib.npy -T 32 -q -o /tmp/nt/mnist

Run (from the repository root)::

    /work/netron-venv/bin/python tools/netron_screenshots.py \\
        /tmp/nt/mnist/mnist_cnn.snn.onnx /tmp/nt/resnet/cifar_resnet20.snn.onnx \\
        /tmp/nt/vgg/cifar_vgg16.snn.onnx --out docs/netron/

It also writes ``<stem>_graph_names.png``: the same view with "Show Names" on as well
(node headers carry the node names, e.g. ``/conv/Conv λ 2.5``; edges the tensor names).

Options: ``--chromium PATH`` (default: ``chromium`` on PATH), ``--width/--height``
(viewport, default 1600x1200), ``--graph-height`` (most pixels of the graph view kept,
default 1200), ``--horizontal`` (left-to-right layout), ``--no-names``.

The script prints the Netron and Chromium versions it used. Netron's View options are
switched with its own keyboard shortcuts (view.js): Ctrl+D Show Attributes, Ctrl+U Show
Names, Ctrl+K Show Horizontal.
"""

import argparse
import importlib.metadata
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.parse

import netron
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

LOCAL_HOSTS = {"127.0.0.1", "localhost"}

# Netron's browser host replaces window.eval with a function that throws; Playwright's
# page.evaluate / wait_for_function need it in the page's main world. This init script
# (run before Netron's code) keeps the original eval and ignores the reassignment.
KEEP_EVAL = """
(() => {
    const original = window.eval;
    Object.defineProperty(window, 'eval', {
        configurable: false, get: () => original, set: () => {} });
})();
"""


def chromium_version(executable):
    """The version line of the Chromium binary (e.g. 'Chromium 150.0.7871.100 ...')."""
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True,
                             timeout=60, check=False)
        return out.stdout.strip() or out.stderr.strip()
    except OSError as exc:
        return f"unknown ({exc})"


def bracket_font():
    """Font families that have U+3008 (Netron's shape bracket), per fontconfig."""
    try:
        out = subprocess.run(["fc-list", ":charset=3008", "family"], capture_output=True,
                             text=True, timeout=60, check=False)
        return sorted({line.split(",")[0] for line in out.stdout.splitlines() if line})
    except OSError:
        return []


class Blocker:
    """page.route handler: let 127.0.0.1/localhost through, abort everything else."""

    def __init__(self):
        self.blocked = []

    def __call__(self, route):
        url = route.request.url
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme in ("data", "blob") or parsed.hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()


def _sidebar_clip(page, pad=14):
    """Clip rectangle of the side panel, cut just below its last item."""
    return page.evaluate(
        """(pad) => {
            const sidebar = document.getElementById('sidebar');
            const r = sidebar.getBoundingClientRect();
            let bottom = r.top;
            for (const el of sidebar.querySelectorAll('.sidebar-item, .sidebar-section, .sidebar-title')) {
                const b = el.getBoundingClientRect();
                if (b.height > 0 && b.bottom > bottom) {
                    bottom = b.bottom;
                }
            }
            return { x: r.left, y: r.top, width: r.width,
                     height: Math.min(r.bottom, bottom + pad) - r.top };
        }""", pad)


def _graph_clip(page, width, height, pad=12):
    """Clip rectangle around the drawn nodes and edge labels visible in the viewport."""
    return page.evaluate(
        """([width, height, pad]) => {
            let x0 = width, y0 = height, x1 = 0, y1 = 0;
            const items = document.querySelectorAll('#canvas g.node, #canvas .edge-label, #canvas .edge-path');
            for (const el of items) {
                const b = el.getBoundingClientRect();
                if (b.width === 0 || b.bottom < 0 || b.top > height) continue;
                x0 = Math.min(x0, b.left); y0 = Math.min(y0, b.top);
                x1 = Math.max(x1, b.right); y1 = Math.max(y1, b.bottom);
            }
            x0 = Math.max(0, x0 - pad); y0 = Math.max(0, y0 - pad);
            x1 = Math.min(width, x1 + pad); y1 = Math.min(height, y1 + pad);
            return { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
        }""", [width, height, pad])


def _wait_rendered(page, timeout_ms=180_000):
    """Wait until Netron shows a graph whose nodes have all faded in.

    Netron draws a new <svg id="canvas"> on every (re-)render; a canvas marked with
    data-shot="old" (see _shortcut) is the previous one and does not count.
    """
    page.wait_for_function(
        """() => { const b = document.body.classList;
                   if (b.contains('alert') || b.contains('notification')) return true;
                   const canvas = document.getElementById('canvas');
                   return b.contains('default') && canvas && !canvas.dataset.shot &&
                          canvas.querySelectorAll('g.node').length > 0; }""",
        timeout=timeout_ms)
    body = page.evaluate("() => document.body.className")
    if "alert" in body or "notification" in body:
        text = page.evaluate(
            "() => (document.querySelector('.message-text') || {}).textContent || ''")
        raise RuntimeError(f"Netron shows a message instead of the graph: {text.strip()!r}")
    # nodes fade in (style.opacity 0 -> 1); wait until every node is visible
    page.wait_for_function(
        """() => Array.from(document.querySelectorAll('#canvas g.node'))
                 .every((g) => g.style.opacity === '' || g.style.opacity === '1')""",
        timeout=timeout_ms)
    page.wait_for_timeout(500)


def _shortcut(page, key):
    """Press Ctrl+<key> in Netron's graph view and wait for the re-render."""
    page.evaluate("() => { document.getElementById('canvas').dataset.shot = 'old'; }")
    page.locator("#target").focus()
    page.keyboard.press(f"Control+{key}")
    _wait_rendered(page)


def _visible_headers(page):
    """Texts of the node headers drawn inside the viewport, top to bottom."""
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('#canvas g.node-item-type'))
               .map((g) => [g.getBoundingClientRect(), g.querySelector('text')])
               .filter(([b, t]) => t && b.top >= 0 && b.bottom <= window.innerHeight)
               .sort((a, b) => a[0].top - b[0].top || a[0].left - b[0].left)
               .map(([, t]) => t.textContent.trim())""")


def _click_node(page, label, log):
    """Click the header of the first node (top-most, then left-most) labelled `label`."""
    handle = page.evaluate_handle(
        """(label) => {
            const items = Array.from(document.querySelectorAll('#canvas g.node-item-type'))
                .filter((g) => g.querySelector('text') &&
                               g.querySelector('text').textContent.trim() === label)
                .map((g) => [g, g.getBoundingClientRect()]);
            items.sort((a, b) => a[1].top - b[1].top || a[1].left - b[1].left);
            return items.length ? items[0][0] : null;
        }""",
        label)
    element = handle.as_element()
    if element is None:
        log(f"  no node labelled {label!r} in the graph view")
        return False
    element.scroll_into_view_if_needed()
    element.click()
    page.wait_for_function(
        """() => { const s = document.getElementById('sidebar');
                   return s && getComputedStyle(s).opacity === '1' &&
                          s.getBoundingClientRect().left < window.innerWidth; }""",
        timeout=30_000)
    page.wait_for_timeout(400)
    return True


def shoot(page, url, path, out_dir, args, log):
    stem = os.path.basename(path)
    for suffix in (".snn.onnx", ".onnx"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    written = []
    page.goto(url, wait_until="load")
    _wait_rendered(page)

    # Show Attributes: Ctrl+D (Netron view.js, View menu); names stay off so that
    # node headers read 'IF', 'Conv', ... and not the node names.
    _shortcut(page, "d")
    attrs_on = page.evaluate(
        """() => Array.from(document.querySelectorAll('#canvas .node-argument'))
                 .some((e) => /threshold|kernel_shape|strides/.test(e.textContent))""")
    log(f"  Show Attributes via Ctrl+D: {'on' if attrs_on else 'NOT reached'}")

    if args.horizontal:
        # Show Horizontal: Ctrl+K (View menu)
        _shortcut(page, "k")

    def graph_shot(name):
        page.evaluate("() => document.getElementById('target').scrollTo(0, 0)")
        page.wait_for_timeout(300)
        out = os.path.join(out_dir, f"{stem}_{name}.png")
        page.screenshot(path=out, clip=_graph_clip(page, args.width,
                                                   min(args.height, args.graph_height)))
        written.append(out)

    # the top of the graph: node headers read 'IF', 'Conv', ...
    labels = _visible_headers(page)
    log(f"  graph view: {labels.count('IF')} IF and {labels.count('Conv')} Conv node(s) "
        f"in the screenshot")
    graph_shot("graph")

    if args.names:
        # Show Names: Ctrl+U (View menu). Headers then carry the node names (Netron
        # shortens names over 21 characters to 10 + '…' + 10) and edges the tensor names.
        _shortcut(page, "u")
        names = _visible_headers(page)
        names_on = any("/" in t or "λ" in t for t in names)
        log(f"  Show Names via Ctrl+U: {'on' if names_on else 'NOT reached'}")
        graph_shot("graph_names")
        _shortcut(page, "u")  # names off again, so that the headers read 'IF', 'Conv'

    for label, suffix in (("IF", "if_node"), ("Conv", "conv_node")):
        if _click_node(page, label, log):
            out = os.path.join(out_dir, f"{stem}_{suffix}.png")
            page.screenshot(path=out, clip=_sidebar_clip(page))
            written.append(out)
            page.keyboard.press("Escape")
            page.wait_for_timeout(300)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="*.snn.onnx files")
    parser.add_argument("--out", default="docs/netron/", help="output folder")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1200)
    parser.add_argument("--graph-height", type=int, default=1200)
    parser.add_argument("--horizontal", action="store_true",
                        help="lay the graph out left to right (Netron's Show Horizontal)")
    parser.add_argument("--no-names", dest="names", action="store_false",
                        help="skip <stem>_graph_names.png (graph with Show Names on)")
    args = parser.parse_args(argv)

    def log(msg):
        print(msg, flush=True)

    logging.basicConfig(level=logging.WARNING)
    os.makedirs(args.out, exist_ok=True)
    log(f"netron {netron.__version__}, playwright {importlib.metadata.version('playwright')}")
    log(f"chromium binary {args.chromium}: {chromium_version(args.chromium)}")
    fonts = bracket_font()
    log(f"font for U+3008/U+3009: {', '.join(fonts) if fonts else 'NONE (shapes show boxes)'}")

    all_written = []
    failed = []
    blocker = Blocker()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, headless=True)
        log(f"chromium (as seen by playwright) {browser.version}")
        try:
            for path in args.models:
                path = os.path.abspath(path)
                address = netron.serve(path, address=("127.0.0.1", 0), browse=False)
                url = f"http://{address[0]}:{address[1]}/"
                log(f"{path}: served at {url}")
                context = browser.new_context(
                    viewport={"width": args.width, "height": args.height},
                    device_scale_factor=1)
                # skip Netron's one-time cookie consent dialog
                context.add_cookies([{"name": "consent", "value": str(int(time.time() * 1000)),
                                      "url": url}])
                context.route("**/*", blocker)
                context.add_init_script(KEEP_EVAL)
                page = context.new_page()
                page.route("**/*", blocker)
                try:
                    written = shoot(page, url, path, args.out, args, log)
                except (RuntimeError, PlaywrightError) as exc:  # report, go on
                    # (playwright's TimeoutError is a PlaywrightError)
                    log(f"  FAILED: {type(exc).__name__}: {exc}")
                    failed.append(path)
                    written = []
                finally:
                    context.close()
                    netron.stop(address)
                for out in written:
                    log(f"  wrote {out} ({os.path.getsize(out) // 1024} KB)")
                all_written += written
        finally:
            browser.close()
    hosts = sorted({urllib.parse.urlparse(u).hostname or u for u in blocker.blocked})
    log(f"blocked {len(blocker.blocked)} non-local requests: {', '.join(hosts) or 'none'}")
    if failed:
        log(f"failed: {', '.join(failed)}")
    return 1 if failed or not all_written else 0


if __name__ == "__main__":
    sys.exit(main())
