"""Queue a prompt on a running ComfyUI and print what its WebSocket tells the submitting client
(what ComfyUI's page shows), one JSON list of [type, data] messages, until the prompt ends. Run by
``test_comfyui_server.py`` with the ComfyUI environment's Python (its aiohttp).

    python ws_prompt.py http://127.0.0.1:PORT PROMPT.json
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

import aiohttp

ENDS = ("execution_success", "execution_interrupted")


async def main(url: str, prompt: Path) -> None:
    client = uuid.uuid4().hex
    seen: list[list[object]] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/ws?clientId={client}") as ws:
        body = {"prompt": json.loads(prompt.read_text()), "client_id": client}
        async with http.post(f"{url}/prompt", json=body) as r:
            pid = (await r.json())["prompt_id"]
        while True:
            msg = await ws.receive(timeout=600)
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue  # previews are binary
            event = json.loads(msg.data)
            data = event.get("data", {})
            if data.get("prompt_id") not in (None, pid):
                continue
            seen.append([event["type"], data])
            failed = event["type"] == "execution_error" and data.get("traceback")
            if event["type"] in ENDS or failed:
                break
    print(json.dumps(seen))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
