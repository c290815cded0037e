"""A plain HTTP server used as an Azure Functions custom handler with
`enableForwardingHttpRequest: true`: the host forwards each HTTP-only function's request as it
came (method, path `/api/<route>`, query, headers, body) and returns this server's response
as-is. No custom-handler JSON is involved.
"""

import json
import os
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Server(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def handle_any(self):
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if length else b""
        if url.path == "/api/hello":
            name = query.get("name", "world")
            return self.reply(200, f"Hello, {name}!".encode(), "text/plain; charset=utf-8")
        m = re.fullmatch(r"/api/items/(\d+)", url.path)
        if m:
            item = {"id": int(m.group(1)), "name": f"item-{m.group(1)}"}
            return self.reply(200, json.dumps(item).encode(), "application/json")
        if url.path == "/api/echo":
            reply = {
                "method": self.command,
                "path": url.path,
                "query": query,
                "body": body.decode("utf-8", "replace"),
                "x-echo": self.headers.get("x-echo"),
            }
            return self.reply(201, json.dumps(reply).encode(), "application/json", {"x-forwarded-by": "custom-forward"})
        self.reply(404, b"not found", "text/plain")

    do_GET = do_POST = do_PUT = handle_any

    def reply(self, status, body, content_type, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        pass


if __name__ == "__main__":
    # The default listen backlog (5) drops connections when many calls arrive together.
    ThreadingHTTPServer.request_queue_size = 128
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["FUNCTIONS_CUSTOMHANDLER_PORT"])), Server)
    server.daemon_threads = True
    server.serve_forever()
