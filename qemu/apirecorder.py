#!/usr/bin/env python3
"""HTTP relay between the guest and Ironic's API that records each agent call.

The agent's ipa-api-url ([service_catalog]endpoint_override) points here; every request is
passed on unchanged to Ironic and one JSON line {t, method, path, status} is written per
request. The lab uses the log only for timings (power-on to first lookup, to first
heartbeat, the demo's timeline); tests assert on Ironic's own state.

usage: apirecorder.py --bind IP --port PORT --upstream http://IP:PORT --log FILE
"""
import argparse
import http.client
import http.server
import json
import sys
import time
import urllib.parse

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te"}


class Relay(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: urllib.parse.SplitResult = None
    log_file = None

    def log_message(self, fmt, *args):
        pass

    def _relay(self):
        t = time.time()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=60)
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
            out_headers = [(k, v) for k, v in resp.getheaders()
                           if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"]
            conn.close()
        except OSError as e:
            status, data = 502, json.dumps({"error": f"relay to Ironic failed: {e}"}).encode()
            out_headers = [("Content-Type", "application/json")]
        self.send_response(status)
        for k, v in out_headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        if self.log_file:
            self.log_file.write(json.dumps({"t": t, "method": self.command, "path": self.path,
                                            "status": status}) + "\n")
            self.log_file.flush()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _relay


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--log", required=True)
    a = p.parse_args()
    Relay.upstream = urllib.parse.urlsplit(a.upstream)
    Relay.log_file = open(a.log, "a")
    srv = http.server.ThreadingHTTPServer((a.bind, a.port), Relay)
    srv.daemon_threads = True
    print(f"apirecorder: http://{a.bind}:{a.port} -> {a.upstream}", file=sys.stderr, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
