#!/usr/bin/env python3
"""Static file server for the lab: Ironic's http_root (iPXE scripts, deploy kernel/ramdisk)
and the instance images. GET and HEAD with single byte ranges (the agent resumes broken
downloads with Range), one thread per connection, one JSON line per request in the log.

usage: httpd.py --bind IP --port PORT --root DIR [--log FILE]
"""
import argparse
import http.server
import json
import os
import re
import shutil
import sys
import time

RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    log_file = None

    def log_message(self, fmt, *args):  # one JSON line per request instead (see _record)
        pass

    def _record(self, status, size):
        if self.log_file:
            self.log_file.write(json.dumps({"t": time.time(), "method": self.command, "path": self.path,
                                            "status": status, "bytes": size,
                                            "range": self.headers.get("Range")}) + "\n")
            self.log_file.flush()

    def do_HEAD(self):
        self._serve(body=False)

    def do_GET(self):
        self._serve(body=True)

    def _serve(self, body):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404, f"{self.path} not found")
            self._record(404, 0)
            return
        size = os.path.getsize(path)
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if rng:
            m = RANGE.match(rng.strip())
            if not m or (m.group(1) == "" and m.group(2) == ""):
                self.send_error(416, "unsupported Range")
                self._record(416, 0)
                return
            if m.group(1) == "":                      # suffix: last N bytes
                start = max(0, size - int(m.group(2)))
            else:
                start = int(m.group(1))
                if m.group(2):
                    end = min(end, int(m.group(2)))
            if start >= size or start > end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self._record(416, 0)
                return
            status = 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", self.date_time_string(int(os.path.getmtime(path))))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        sent = 0
        if body:
            with open(path, "rb") as f:
                f.seek(start)
                try:
                    left = length
                    while left > 0:
                        chunk = f.read(min(left, 1 << 20))
                        if not chunk:
                            break
                        self.wfile.write(chunk)
                        left -= len(chunk)
                        sent += len(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass
        self._record(status, sent)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--log", default="")
    a = p.parse_args()
    Handler.log_file = open(a.log, "a") if a.log else None

    def handler(*args, **kw):
        return Handler(*args, directory=a.root, **kw)

    srv = http.server.ThreadingHTTPServer((a.bind, a.port), handler)
    srv.daemon_threads = True
    print(f"httpd: serving {a.root} on http://{a.bind}:{a.port}", file=sys.stderr, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    shutil.os.umask(0o022)
    main()
