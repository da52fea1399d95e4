"""A real gRPC peer for floatlb's backend tests (Debian's python3-grpcio), with raw
bytes as messages (no generated code).

  grpc_echo.py server PORT          h2c server on 127.0.0.1:PORT; prints "listening"
      /echo.Echo/Unary   answers b"echo:" + request, with trailing metadata x-served-by
      /echo.Echo/Chat    answers each message of a bidirectional stream as it arrives
      /echo.Echo/Slow    streams b"tick N" every 200 ms for as long as the call lasts
  grpc_echo.py client TARGET CA NAME   over TLS to floatlb (CA verifies it as NAME):
      prints "unary <reply> trailer=<x-served-by>" and "chat <replies joined by ,>"
  grpc_echo.py slow TARGET CA NAME     calls Slow; prints "ticks N" then how the call
      ended: "status <CODE> <details>" (a hang ends at a 20 s client deadline)
  grpc_echo.py unary TARGET CA NAME    one Unary call; prints "ok <reply>" or
      "status <CODE> <details>"
"""
import sys
import threading
import time
from concurrent import futures

import grpc


def serve(port):
    def unary(request, context):
        context.set_trailing_metadata((("x-served-by", "grpc-echo"),))
        return b"echo:" + request

    def chat(requests, context):
        for r in requests:
            yield b"re:" + r

    def slow(request, context):
        n = 0
        while context.is_active() and n < 600:
            yield b"tick %d" % n
            n += 1
            time.sleep(0.2)

    handler = grpc.method_handlers_generic_handler(
        "echo.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Chat": grpc.stream_stream_rpc_method_handler(chat),
            "Slow": grpc.unary_stream_rpc_method_handler(slow),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port("127.0.0.1:%d" % port)
    server.start()
    print("listening", flush=True)
    server.wait_for_termination()


def channel(target, ca, name):
    with open(ca, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    return grpc.secure_channel(target, creds, options=(("grpc.ssl_target_name_override", name),))


def client(target, ca, name):
    ch = channel(target, ca, name)
    reply, call = ch.unary_unary("/echo.Echo/Unary").with_call(b"hi", timeout=20)
    trailer = dict(call.trailing_metadata()).get("x-served-by")
    print("unary %s trailer=%s" % (reply.decode(), trailer), flush=True)

    # Each message is sent only after the previous answer came back: the call is
    # truly bidirectional, not a request that ends before its answer starts.
    answers = []
    ready = threading.Event()

    def messages():
        for i in range(5):
            yield b"m%d" % i
            ready.wait(10)
            ready.clear()

    for r in ch.stream_stream("/echo.Echo/Chat")(messages(), timeout=20):
        answers.append(r.decode())
        ready.set()
    print("chat " + ",".join(answers), flush=True)


def slow(target, ca, name):
    ch = channel(target, ca, name)
    ticks = 0
    try:
        for _ in ch.unary_stream("/echo.Echo/Slow")(b"", timeout=20):
            ticks += 1
            if ticks == 3:
                print("ticks 3", flush=True)
        print("status OK", flush=True)
    except grpc.RpcError as e:
        print("status %s %s" % (e.code().name, e.details()), flush=True)


def unary(target, ca, name):
    ch = channel(target, ca, name)
    try:
        reply = ch.unary_unary("/echo.Echo/Unary")(b"hi", timeout=20)
        print("ok " + reply.decode(), flush=True)
    except grpc.RpcError as e:
        print("status %s %s" % (e.code().name, e.details()), flush=True)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "server":
        serve(int(sys.argv[2]))
    else:
        {"client": client, "slow": slow, "unary": unary}[mode](*sys.argv[2:5])
