"""Scenario 9's app (plain WSGI, run by uwsgi): POST reads the whole body and answers
`len=N`; GET /mib answers 1 MiB in one piece (so the edge, not Python, decides how fast it
goes out); anything else answers `ok`. Nothing here is measured: uwsgi runs on the load CPU.
"""

MIB = 1024 * 1024
BLOCK = b"x" * MIB
CHUNK = 64 * 1024


def application(environ, start_response):
    if environ.get("REQUEST_METHOD") in ("POST", "PUT"):
        want = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"]
        got = 0
        while got < want:
            chunk = body.read(min(CHUNK, want - got))
            if not chunk:
                break
            got += len(chunk)
        text = f"len={got}\n".encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(text)))])
        return [text]
    if environ.get("PATH_INFO") == "/mib":
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(MIB))])
        return [BLOCK]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]
