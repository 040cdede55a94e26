# A gRPC test client on grpcio: argv = target (host:port), CA file (PEM), mode. TLS with the
# CA as the only root and app.test as the name checked. Prints one JSON object: what each
# call returned (messages, status code name, details, trailing metadata).
#   mode "calls":       unary, unary "who", unary "fail", server-, client-, bidi-streaming,
#                       unary "sleep" with a 1 s deadline
#   mode "unavailable": one unary call
import json
import sys

import grpc

target, ca, mode = sys.argv[1], sys.argv[2], sys.argv[3]
creds = grpc.ssl_channel_credentials(root_certificates=open(ca, "rb").read())
chan = grpc.secure_channel(target, creds, options=(("grpc.ssl_target_name_override", "app.test"),))
grpc.channel_ready_future(chan).result(timeout=10) if mode == "calls" else None

ident = lambda b: b
unary = chan.unary_unary("/test.Echo/Unary", ident, ident)
sstream = chan.unary_stream("/test.Echo/ServerStream", ident, ident)
cstream = chan.stream_unary("/test.Echo/ClientStream", ident, ident)
bidi = chan.stream_stream("/test.Echo/Bidi", ident, ident)


def outcome(fn):
    """Runs fn() -> (value, call); returns a dict with value or error."""
    try:
        value, call = fn()
        return {
            "value": value,
            "code": call.code().name,
            "trailers": {k: v for k, v in call.trailing_metadata() or ()},
        }
    except grpc.RpcError as e:
        return {
            "code": e.code().name,
            "details": e.details(),
            "trailers": {k: v for k, v in e.trailing_metadata() or ()},
        }


def dec(b):
    return b.decode()


out = {}
if mode == "calls":
    def u(msg, timeout=10):
        def f():
            r, call = unary.with_call(msg, timeout=timeout)
            return dec(r), call
        return f

    out["unary"] = outcome(u(b"hello"))
    out["who"] = outcome(u(b"who"))
    out["fail"] = outcome(u(b"fail"))

    def ss():
        it = sstream(b"5", timeout=10)
        return [dec(m) for m in it], it
    out["server_stream"] = outcome(ss)

    def cs():
        r, call = cstream.with_call(iter([b"a", b"b", b"c" * 70000]), timeout=10)
        return dec(r)[:10] + "/" + str(len(r)), call
    out["client_stream"] = outcome(cs)

    def bd():
        it = bidi(iter([b"x%d" % i for i in range(100)]), timeout=10)
        return [dec(m) for m in it], it
    out["bidi"] = outcome(bd)
    out["deadline"] = outcome(u(b"sleep", timeout=1))
else:
    out["unary"] = outcome(lambda: unary.with_call(b"hello", timeout=10))
    out["unary"].pop("value", None)
print(json.dumps(out))
