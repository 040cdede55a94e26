"""Scenario 13's uwsgi app (plain WSGI): GET /big streams 64 MiB (64 blocks of 1 MiB, with a
Content-Length); POST or PUT reads the whole body in 1 MiB reads, discards it and answers
`len=N`; anything else answers `ok`. Not measured: uwsgi runs on the load CPU.
"""

MIB = 1024 * 1024
BLOCK = b"x" * MIB
BIG = 64


def application(environ, start_response):
    if environ.get("REQUEST_METHOD") in ("POST", "PUT"):
        want = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"]
        got = 0
        while got < want:
            chunk = body.read(min(MIB, want - got))
            if not chunk:
                break
            got += len(chunk)
        text = f"len={got}\n".encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(text)))])
        return [text]
    if environ.get("PATH_INFO") == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(BIG * MIB))])
        return (BLOCK for _ in range(BIG))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]
