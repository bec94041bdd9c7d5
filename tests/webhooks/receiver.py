"""A webhook receiver for Podium's end-to-end tests: verifies every request with the `standardwebhooks` package
(PyPI, the Standard Webhooks reference library, not Podium's code) and prints one JSON line per request:
{"ok": true, "id": ..., "payload": {...}} or {"ok": false, "error": ...}.

Usage: receiver.py PORT SECRET   (PORT 0 picks a free port; the first line printed is {"port": N})
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

port, secret = int(sys.argv[1]), sys.argv[2]
verifier = Webhook(secret)


def emit(record):
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            payload = verifier.verify(body, headers)
        except WebhookVerificationError as e:
            emit({"ok": False, "error": str(e), "id": headers.get("webhook-id")})
            self.send_response(400)
            self.end_headers()
            return
        emit({"ok": True, "id": headers["webhook-id"], "signatures": headers["webhook-signature"].count("v1,"),
              "payload": payload})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    allow_reuse_address = True


server = Server(("127.0.0.1", port), Handler)
emit({"port": server.server_address[1]})
server.serve_forever()
