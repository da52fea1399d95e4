#!/usr/bin/python3
"""Opens COUNT TLS connections to ADDR:443, sends one keep-alive GET on each, reads the
answer, then holds them all until stdin closes: the idle-TLS-connection memory probe of
`vm-lab/lab sweep --tls`. Prints "held N" once they are all open."""
import socket
import ssl
import sys


def main():
    addr, count = sys.argv[1], int(sys.argv[2])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    held = []
    for _ in range(count):
        raw = socket.create_connection((addr, 443), timeout=5)
        tls = ctx.wrap_socket(raw, server_hostname="lab.test")
        tls.sendall(b"GET / HTTP/1.1\r\nHost: lab.test\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = tls.recv(65536)
            if not chunk:
                raise SystemExit("connection closed before the answer")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = tls.recv(65536)
            if not chunk:
                raise SystemExit("connection closed inside the answer")
            body += chunk
        held.append(tls)
    print(f"held {len(held)}", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
