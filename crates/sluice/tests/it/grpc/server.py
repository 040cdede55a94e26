# A gRPC test app on grpcio (Debian python3-grpcio), no protoc: generic handlers with raw
# bytes. Service test.Echo: Unary, ServerStream, ClientStream, Bidi. It listens on
# 127.0.0.1 port 0 (TLS with argv = cert key, PEM files), prints "PORT <n>" and serves
# until killed.
#   Unary "who"     -> JSON of the peer and the forwarding metadata it got
#   Unary "fail"    -> status NOT_FOUND "no such thing", trailing metadata x-why=because
#   Unary "sleep"   -> sleeps 5 s, then answers "late"
#   Unary other     -> the request back, trailing metadata x-trailer=t-<request>
#   ServerStream n  -> n messages "0".."n-1", trailing metadata x-count=n
#   ClientStream    -> all messages joined with ","
#   Bidi            -> each message back, upper-cased
import json
import sys
import time
from concurrent import futures

import grpc


def ident(b):
    return b


def unary(req, ctx):
    if req == b"who":
        md = {k: v for k, v in ctx.invocation_metadata()}
        keys = ("x-forwarded-for", "x-real-ip", "x-forwarded-proto", "x-request-id", "te")
        out = {k: md.get(k) for k in keys}
        out["peer"] = ctx.peer()
        return json.dumps(out).encode()
    if req == b"fail":
        ctx.set_trailing_metadata((("x-why", "because"),))
        ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    if req == b"sleep":
        time.sleep(5)
        return b"late"
    ctx.set_trailing_metadata((("x-trailer", "t-" + req.decode()),))
    return req


def server_stream(req, ctx):
    n = int(req)
    ctx.set_trailing_metadata((("x-count", str(n)),))
    for i in range(n):
        yield str(i).encode()


def client_stream(it, ctx):
    return b",".join(it)


def bidi(it, ctx):
    for m in it:
        yield m.upper()


handlers = {
    "Unary": grpc.unary_unary_rpc_method_handler(unary, ident, ident),
    "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, ident, ident),
    "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream, ident, ident),
    "Bidi": grpc.stream_stream_rpc_method_handler(bidi, ident, ident),
}

server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
if len(sys.argv) == 3:
    pair = (open(sys.argv[2], "rb").read(), open(sys.argv[1], "rb").read())
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([pair]))
else:
    port = server.add_insecure_port("127.0.0.1:0")
server.start()
print("PORT %d" % port, flush=True)
server.wait_for_termination()
