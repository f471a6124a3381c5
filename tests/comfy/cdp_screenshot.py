"""Load a workflow (API format) into a running ComfyUI's page in headless Chromium and save a
screenshot, through the Chrome DevTools Protocol. Run by ``test_comfyui_server.py`` with the
ComfyUI environment's Python (its aiohttp speaks the protocol's WebSocket).

    python cdp_screenshot.py CHROMIUM COMFY_URL WORKFLOW.json OUT.png

Prints one JSON line: the node types the page's graph holds after loading, and the links' count.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

WIDTH, HEIGHT = 2200, 1100
# Place the nodes column by column, each below the last (their drawn sizes), at a scale at which
# titles and widgets are drawn.
LAYOUT = """(columns) => {
  const app = window.comfyAPI.app.app;
  let x = 20;
  for (const ids of columns) {
    const nodes = ids.map((id) => app.graph.getNodeById(id)).filter(Boolean);
    let y = 40;
    for (const n of nodes) { n.pos = [x, y]; y += n.size[1] + 70; }
    x += Math.max(...nodes.map((n) => n.size[0])) + 50;
  }
  app.canvas.ds.scale = 0.9; app.canvas.ds.offset = [20, 60]; app.canvas.setDirty(true, true);
}"""


def _columns(prompt: dict[str, dict]) -> list[list[int]]:
    """The node ids column by column: a node one column right of the deepest node it takes an input from."""
    depth: dict[str, int] = {}

    def column(i: str) -> int:
        if i not in depth:
            links = [v[0] for v in prompt[i].get("inputs", {}).values() if isinstance(v, list)]
            depth[i] = 1 + max((column(j) for j in links), default=-1)
        return depth[i]

    columns: list[list[int]] = [[] for _ in range(1 + max(column(i) for i in prompt))]
    for i in sorted(prompt, key=int):
        columns[column(i)].append(int(i))
    return columns


async def _call(ws: aiohttp.ClientWebSocketResponse, ids: itertools.count, method: str, **params: object) -> dict:
    n = next(ids)
    await ws.send_json({"id": n, "method": method, "params": params})
    while True:
        msg = await ws.receive_json(timeout=600)
        if msg.get("id") == n:
            if "error" in msg:
                raise RuntimeError(f"{method}: {msg['error']}")
            return msg["result"]


async def _evaluate(ws: aiohttp.ClientWebSocketResponse, ids: itertools.count, expression: str) -> object:
    r = await _call(ws, ids, "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
    if "exceptionDetails" in r:
        raise RuntimeError(f"{expression[:60]}...: {r['exceptionDetails']}")
    return r["result"].get("value")


async def main(chromium: str, url: str, workflow: Path, out: Path) -> None:
    port = 9300 + int(time.time()) % 500
    profile = tempfile.mkdtemp(prefix="cdp-profile-")
    browser = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--window-size={WIDTH},{HEIGHT}",
         f"--remote-debugging-port={port}", f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):  # the DevTools endpoint comes up in a second or two
                try:
                    async with http.get(f"http://127.0.0.1:{port}/json") as r:
                        pages = [t for t in await r.json() if t["type"] == "page"]
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.3)
            else:
                raise RuntimeError("Chromium's DevTools endpoint did not come up")
            # the first visit's "Get Started with a Template" dialog would cover the graph
            async with http.post(f"{url}settings/Comfy.TutorialCompleted", json=True) as r:
                r.raise_for_status()
            async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                ids = itertools.count(1)
                await _call(ws, ids, "Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT,
                            deviceScaleFactor=1, mobile=False)  # fmt: skip
                await _call(ws, ids, "Page.navigate", url=url)
                ready = "!!(window.comfyAPI && window.comfyAPI.app && window.comfyAPI.app.app.graph)"
                for _ in range(120):
                    if await _evaluate(ws, ids, ready):
                        break
                    await asyncio.sleep(0.5)
                else:
                    raise RuntimeError("ComfyUI's page did not load")
                await asyncio.sleep(3)  # the node definitions and the default graph
                data = json.dumps(json.loads(workflow.read_text()))
                await _evaluate(ws, ids, f"window.comfyAPI.app.app.loadApiJson({data}, {json.dumps(workflow.name)})")
                await asyncio.sleep(4)  # the video previews load and grow their nodes
                await _evaluate(ws, ids, f"({LAYOUT})({json.dumps(_columns(json.loads(data)))})")
                await asyncio.sleep(3)  # layout and drawing
                graph = await _evaluate(
                    ws, ids,
                    "(() => { const g = window.comfyAPI.app.app.graph; return {types: g._nodes.map(n => n.type), "
                    "links: Object.keys(g.links ?? {}).length || (g.links?.size ?? 0)}; })()",
                )  # fmt: skip
                shot = await _call(ws, ids, "Page.captureScreenshot", format="png")
                out.write_bytes(base64.b64decode(shot["data"]))
                print(json.dumps(graph))
    finally:
        browser.kill()
        browser.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])))
