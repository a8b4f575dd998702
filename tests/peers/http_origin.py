"""A plain HTTP/1.1 origin server (Python's http.server) standing behind
`relay-gateway forward --listen --http` in tests/wcf_http.rs.

Usage: http_origin.py PORT. Prints "ready" once listening.

  GET  /hello                 200 "hello", X-Custom: one, two Set-Cookie headers
  GET  /headers               200 JSON of the method, path and request headers
  POST /echo                  200 the body back with the request's Content-Type
  POST /upload                200 "<length> <sha256 hex>" of the body (chunked or sized)
  GET  /download/N            200 N bytes (byte i = i % 251), chunked
  GET  /status/CODE/REASON    CODE with REASON as the reason phrase
  GET  /nocontent             204
  GET  /slow/SECONDS          waits, then 200
"""
import hashlib
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

PATTERN = bytes(i % 251 for i in range(251 * 4096))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body_chunks(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left:
                    data = self.rfile.read(min(left, 1 << 20))
                    left -= len(data)
                    yield data
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                data = self.rfile.read(min(left, 1 << 20))
                if not data:
                    return
                left -= len(data)
                yield data

    def send(self, code, body, ctype="text/plain", reason=None, extra=()):
        self.send_response(code, reason)
        for name, value in extra:
            self.send_header(name, value)
        if code != 204:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and code != 204:
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[0] == "hello":
            self.send(200, b"hello", extra=[("X-Custom", "one"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
        elif parts[0] == "headers":
            seen = {"method": self.command, "path": self.path, "headers": [[k, v] for k, v in self.headers.items()]}
            self.send(200, json.dumps(seen).encode(), "application/json")
        elif parts[0] == "download":
            n = int(parts[1])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = 0
            while sent < n:
                piece = PATTERN[: min(len(PATTERN), n - sent)]
                self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                sent += len(piece)
            self.wfile.write(b"0\r\n\r\n")
        elif parts[0] == "status":
            self.send(int(parts[1]), b"custom", reason=unquote(parts[2]))
        elif parts[0] == "nocontent":
            self.send(204, b"")
        elif parts[0] == "slow":
            time.sleep(float(parts[1]))
            self.send(200, b"late")
        else:
            self.send(404, b"no such page")

    def do_POST(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[0] == "upload":
            h = hashlib.sha256()
            n = 0
            for data in self.body_chunks():
                h.update(data)
                n += len(data)
            self.send(200, b"%d %s" % (n, h.hexdigest().encode()))
        elif parts[0] == "echo":
            body = b"".join(self.body_chunks())
            self.send(200, body, self.headers.get("Content-Type", "application/octet-stream"))
        else:
            for _ in self.body_chunks():
                pass
            self.send(404, b"no such page")


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("ready", flush=True)
    server.serve_forever()
