"""An Azure Functions custom handler in the Python standard library.

The host (here: `switchboard-worker`) starts this file with FUNCTIONS_CUSTOMHANDLER_PORT set and
sends every invocation as `POST /<function name>` with JSON {"Data": {...}, "Metadata": {...}}.
The answer is JSON {"Outputs": {...}, "Logs": [...], "ReturnValue": ...}; an HTTP output binding's
value is {"statusCode", "body", "headers"}.
"""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STARTED = {}  # invocation tag -> times `slow` started it, to prove nothing runs twice
LOCK = threading.Lock()


def http(status, body, content_type="application/json", **headers):
    if not isinstance(body, str):
        body = json.dumps(body, sort_keys=True)
    headers = {"Content-Type": content_type, "x-app": "custom-echo", **headers}
    return {"statusCode": status, "body": body, "headers": headers}


def hello(req, _meta):
    name = req["Query"].get("name", "world")
    text = f"Hello, {name}!"
    return {"Outputs": {"res": http(200, text, "text/plain; charset=utf-8")}, "Logs": [f"greeted {name}"]}


def echo(req, meta):
    body = req.get("Body") or ""
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = body
    reply = {
        "method": req["Method"],
        "query": req["Query"],
        "params": req["Params"],
        "body": parsed,
        "x-echo": (req["Headers"].get("x-echo") or [None])[0],
        "function": meta["sys"]["MethodName"],
        "has_utc_now": bool(meta["sys"].get("UtcNow")),
    }
    return {"Outputs": {"res": http(200, reply)}, "Logs": ["echoed"]}


def items(req, _meta):
    item_id = int(req["Params"]["id"])
    return {"Outputs": {"res": http(200, {"id": item_id, "name": f"item-{item_id}"})}}


def slow(req, _meta):
    tag = req["Query"].get("id", "")
    ms = int(req["Query"].get("ms", "200"))
    with LOCK:
        STARTED[tag] = STARTED.get(tag, 0) + 1
    time.sleep(ms / 1000)
    reply = {"id": tag, "slept_ms": ms, "pid": os.getpid(), "worker": os.environ.get("SWITCHBOARD_WORKER_ID")}
    return {"Outputs": {"res": http(200, reply)}}


def runs(_req, _meta):
    with LOCK:
        started = dict(STARTED)
    return {"Outputs": {"res": http(200, {"started": started, "pid": os.getpid()})}}


def setting(_req, _meta):
    reply = {
        "GREETING": os.environ.get("GREETING"),
        "port_set": "FUNCTIONS_CUSTOMHANDLER_PORT" in os.environ,
        "worker": os.environ.get("SWITCHBOARD_WORKER_ID"),
    }
    return {"Outputs": {"res": http(200, reply)}}


def crash(_req, _meta):
    # The handler process dies mid-invocation; the worker restarts it.
    os._exit(3)


def teapot(_req, _meta):
    # A `$return` HTTP binding takes ReturnValue.
    return {"ReturnValue": http(418, "I'm a teapot", "text/plain")}


FUNCTIONS = {f.__name__: f for f in (hello, echo, items, slow, runs, setting, crash, teapot)}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        payload = json.loads(self.rfile.read(length) or b"{}")
        function = FUNCTIONS.get(self.path.strip("/"))
        if function is None:
            return self.reply(404, {"error": f"no function {self.path}"})
        try:
            result = function(payload["Data"]["req"], payload["Metadata"])
        except Exception as e:  # the invocation fails; the handler stays up
            return self.reply(500, {"error": f"{type(e).__name__}: {e}"})
        self.reply(200, result)

    def reply(self, status, value):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        pass


if __name__ == "__main__":
    port = int(os.environ["FUNCTIONS_CUSTOMHANDLER_PORT"])
    # The default listen backlog (5) drops connections when many calls arrive together.
    ThreadingHTTPServer.request_queue_size = 128
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()
