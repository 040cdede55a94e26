"""The seed's app: a small Flask app run by uwsgi behind sluice (or nginx).

`/` answers a short text naming the client as the app sees it (REMOTE_ADDR is the real
client when the edge passes it on); `/big?mb=N` streams N MiB without holding them.
Run it:  uwsgi --plugin python3 --socket /tmp/app.sock --wsgi-file examples/seed/app.py
"""

from flask import Flask, Response, request

app = Flask(__name__)
application = app  # uwsgi looks for `application`

MIB = 1024 * 1024
MAX_MB = 4096


@app.route("/")
def index():
    env = request.environ
    lines = [
        "hello from the seed app",
        f"client={request.remote_addr}",
        f"remote_port={env.get('REMOTE_PORT', '')}",
        f"scheme={request.scheme}",
        f"https={env.get('HTTPS', '')}",
        f"host={request.host}",
        f"server_name={env.get('SERVER_NAME', '')}",
        f"server_port={env.get('SERVER_PORT', '')}",
        f"server_addr={env.get('SERVER_ADDR', '')}",
        f"path={request.path}",
        f"query={env.get('QUERY_STRING', '')}",
        f"protocol={env.get('SERVER_PROTOCOL', '')}",
    ]
    return Response("\n".join(lines) + "\n", mimetype="text/plain")


@app.route("/echo", methods=["POST", "PUT"])
def echo():
    data = request.get_data()
    return Response(f"len={len(data)}\n", mimetype="text/plain")


@app.route("/big")
def big():
    try:
        mb = int(request.args.get("mb", "1"))
    except ValueError:
        return Response("mb must be an integer\n", status=400, mimetype="text/plain")
    if mb < 0 or mb > MAX_MB:
        return Response(f"mb must be 0..{MAX_MB}\n", status=400, mimetype="text/plain")
    block = b"x" * MIB

    def gen():
        for _ in range(mb):
            yield block

    return Response(
        gen(),
        mimetype="application/octet-stream",
        headers={"Content-Length": str(mb * MIB)},
    )
