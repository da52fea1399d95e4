"""A real WebSocket peer for floatlb's tunnel tests (Debian's python3-websockets).

  ws.py server PORT [HOST] echo server on HOST:PORT (default 127.0.0.1); prints "listening"
  ws.py echo URL N         N text and N binary messages echoed, then a close handshake
                           (a wss:// URL's certificate is not verified);
                           prints "echoed TEXT BINARY close=CODE"
  ws.py idle URL SECONDS   connects and waits for the peer to end the connection;
                           prints "ended" or "open" if it did not within SECONDS
"""
import asyncio
import os
import ssl
import sys

import websockets


async def serve(port, host):
    async def echo(ws, _path=None):
        async for msg in ws:
            await ws.send(msg)

    async with websockets.serve(echo, host, port):
        print("listening", flush=True)
        await asyncio.Future()


def tls_options(url):
    """wss:// to a test certificate: encrypted, but not verified (no CA here)."""
    if not url.startswith("wss:"):
        return {}
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return {"ssl": ctx}


async def echo(url, n):
    text = binary = 0
    async with websockets.connect(url, **tls_options(url)) as ws:
        for i in range(n):
            msg = f"message {i} " + "x" * (i % 300)
            await ws.send(msg)
            if await ws.recv() == msg:
                text += 1
            data = os.urandom(1 + i % 2000)
            await ws.send(data)
            if await ws.recv() == data:
                binary += 1
        await ws.close()
        print(f"echoed {text} {binary} close={ws.close_code}", flush=True)


async def idle(url, seconds):
    async with websockets.connect(url, ping_interval=None) as ws:
        try:
            await asyncio.wait_for(ws.recv(), seconds)
            print("message", flush=True)
        except websockets.ConnectionClosed:
            print("ended", flush=True)
        except asyncio.TimeoutError:
            print("open", flush=True)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "server":
        asyncio.run(serve(int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"))
    elif mode == "echo":
        asyncio.run(echo(sys.argv[2], int(sys.argv[3])))
    elif mode == "idle":
        asyncio.run(idle(sys.argv[2], float(sys.argv[3])))
