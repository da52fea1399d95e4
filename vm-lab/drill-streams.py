"""The long-lived connections a drill holds open (issue 30), run with Debian's /usr/bin/python3.

  drill-streams.py server TCP_PORT GRPC_PORT
      on a web host: a line echo on TCP_PORT (each line sent back as it comes, the
      connection closed after the client's FIN) and, if grpcio imports, an h2c gRPC server
      on GRPC_PORT whose /drill.Echo/Chat answers each message of a bidirectional stream
  drill-streams.py client TCP_TARGET GRPC_TARGET CA NAME DURATION_S
      on the client: for DURATION_S, one TCP connection to TCP_TARGET sending a line every
      50 ms and reading it back, and one gRPC bidirectional stream to GRPC_TARGET (TLS,
      verified against CA as NAME) sending a message every 50 ms. Prints at its end:
        streams_open_ms=N tcp_stream=survived|fin|rst|timeout|refused|error tcp_end_ms=N tcp_lines=N
        grpc_stream=OK|<gRPC status code name>/status|<code>/reset|skipped grpc_end_ms=N grpc_messages=N
      survived: every line came back until the end and the connection then closed in order;
      fin/rst: the relay ended it with a FIN (EOF) or a reset; timeout: a line not back
      within 1 s (a hang). A gRPC code is "/status" when it came as a status (trailers from
      the server or the balancer: the call ended in order) and "/reset" when the transport
      failed under the call (connection reset or closed, stream reset). A stream that outlives
      DURATION_S by 5 s ends with DEADLINE_EXCEEDED/status. end_ms counts from the client's start. Bounded: the whole run ends
      within DURATION_S + 7 s. GRPC_TARGET "-": no gRPC stream, and no grpc_ fields.
      Prints "open ..." first, once the first line and the first message came back (or
      either failed, or 5 s passed): the drill waits for it before its event.
"""
import socket
import sys
import threading
import time

INTERVAL = 0.05
REPLY_TIMEOUT = 1.0

try:
    import grpc
except ImportError as e:  # optional: the TCP half still runs
    grpc = None
    GRPC_MISSING = str(e)


def echo_conn(conn):
    with conn:
        try:
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                conn.sendall(data)
        except OSError:
            return


def serve(tcp_port, grpc_port):
    if grpc is not None:
        from concurrent import futures

        def chat(requests, context):
            for r in requests:
                yield r

        handler = grpc.method_handlers_generic_handler(
            "drill.Echo", {"Chat": grpc.stream_stream_rpc_method_handler(chat)}
        )
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port("0.0.0.0:%d" % grpc_port)
        server.start()
    else:
        print("no gRPC server: %s" % GRPC_MISSING, flush=True)
    listener = socket.create_server(("0.0.0.0", tcp_port), backlog=128, reuse_port=True)
    print("listening", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=echo_conn, args=(conn,), daemon=True).start()


def ms(t0):
    return int((time.monotonic() - t0) * 1000)


def tcp_client(target, duration, t0, out, ready):
    host, port = target.rsplit(":", 1)
    lines = 0
    try:
        s = socket.create_connection((host, int(port)), timeout=2)
    except ConnectionRefusedError:
        out.update(tcp_stream="refused", tcp_end_ms=ms(t0), tcp_lines=0)
        return
    except OSError:
        out.update(tcp_stream="error", tcp_end_ms=ms(t0), tcp_lines=0)
        return
    s.settimeout(REPLY_TIMEOUT)
    end = time.monotonic() + duration
    buf = b""
    how = "survived"
    try:
        while time.monotonic() < end:
            line = b"%d\n" % lines
            s.sendall(line)
            while b"\n" not in buf:
                data = s.recv(4096)
                if not data:
                    raise EOFError
                buf += data
            got, buf = buf.split(b"\n", 1)
            if got + b"\n" != line:
                how = "error"
                break
            lines += 1
            ready.set()
            time.sleep(INTERVAL)
        if how == "survived":
            # The close in order: our FIN, the echo's FIN back.
            s.shutdown(socket.SHUT_WR)
            if s.recv(4096) != b"":
                how = "error"
    except EOFError:
        how = "fin"
    except (ConnectionResetError, BrokenPipeError):
        how = "rst"
    except socket.timeout:
        how = "timeout"
    except OSError:
        how = "error"
    finally:
        s.close()
        ready.set()
    out.update(tcp_stream=how, tcp_end_ms=ms(t0), tcp_lines=lines)


# The details grpc-core gives a call when its transport failed rather than a status arriving.
TRANSPORT_FAILURES = (
    "Socket closed",
    "Connection reset",
    "Broken pipe",
    "Stream removed",
    "RST_STREAM",
    "GOAWAY",
    "failed to connect",
    "Connection refused",
    "connections to all backends failing",
)


def transport_failure(details):
    return any(t in details for t in TRANSPORT_FAILURES)


def grpc_client(target, ca, name, duration, t0, out, ready):
    if grpc is None:
        ready.set()
        out.update(grpc_stream="skipped", grpc_end_ms=0, grpc_messages=0)
        print("gRPC stream skipped: %s" % GRPC_MISSING, file=sys.stderr, flush=True)
        return
    with open(ca, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    ch = grpc.secure_channel(target, creds, options=(("grpc.ssl_target_name_override", name),))
    end = time.monotonic() + duration
    stop = threading.Event()

    def messages():
        i = 0
        while time.monotonic() < end and not stop.is_set():
            yield b"m%d" % i
            i += 1
            time.sleep(INTERVAL)

    got = 0
    try:
        for _ in ch.stream_stream("/drill.Echo/Chat")(messages(), timeout=duration + 5):
            got += 1
            ready.set()
        code = "OK"
    except grpc.RpcError as e:
        code = e.code().name + ("/reset" if transport_failure(e.details() or "") else "/status")
    ready.set()
    stop.set()
    ch.close()
    out.update(grpc_stream=code, grpc_end_ms=ms(t0), grpc_messages=got)


def client(tcp_target, grpc_target, ca, name, duration):
    duration = float(duration)
    t0 = time.monotonic()
    out = {}
    ready = [threading.Event()]
    threads = [threading.Thread(target=tcp_client, args=(tcp_target, duration, t0, out, ready[0]), daemon=True)]
    keys = ["streams_open_ms", "tcp_stream", "tcp_end_ms", "tcp_lines"]
    if grpc_target != "-":
        ready.append(threading.Event())
        threads.append(
            threading.Thread(target=grpc_client, args=(grpc_target, ca, name, duration, t0, out, ready[1]), daemon=True)
        )
        keys += ["grpc_stream", "grpc_end_ms", "grpc_messages"]
    for t in threads:
        t.start()
    for r in ready:
        r.wait(max(0.0, t0 + 5 - time.monotonic()))
    out["streams_open_ms"] = ms(t0)
    print("open after %d ms" % out["streams_open_ms"], flush=True)
    for t in threads:
        t.join(max(0.1, t0 + duration + 7 - time.monotonic()))
    out.setdefault("tcp_stream", "timeout")
    out.setdefault("grpc_stream", "timeout")
    print(" ".join("%s=%s" % (k, out.get(k, ms(t0))) for k in keys), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(int(sys.argv[2]), int(sys.argv[3]))
    else:
        client(*sys.argv[2:7])
