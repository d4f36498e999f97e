#!/usr/bin/env python3
"""Benchmark of `ironic-agent write-image` against the reference tools, on this machine.

Everything is served from a local HTTP server (with Range support, like any static file
server) and written to regular files on the same disk. In the same run it measures:

* raw: our write-image (sha256 verified) against `curl URL | dd of=FILE bs=1M`;
* qcow2: our write-image against `curl -o staged.qcow2 URL && qemu-img convert -O raw`
  (what IPA does, with the staged file in the ramdisk's RAM);
* peak RSS of write-image for a large sparse and a large dense qcow2.

It prints a markdown table the README can quote. Usage:
    bench/image-bench.py [--agent PATH] [--size-gib N] [--workdir DIR]
"""

import argparse
import hashlib
import http.server
import os
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

MIB = 1 << 20
GIB = 1 << 30


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """A static file handler that honours `Range: bytes=N-[M]`, as nginx or Apache do."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.translate_path(self.path)
        try:
            f = open(path, "rb")
        except OSError:
            self.send_error(404)
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            start, end = 0, size
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                a, _, b = rng[6:].partition("-")
                start = int(a)
                end = min(int(b) + 1, size) if b else size
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(end - start))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{size:x}-{int(os.fstat(f.fileno()).st_mtime)}"')
            self.end_headers()
            offset = start
            try:
                while offset < end:
                    sent = os.sendfile(self.wfile.fileno(), f.fileno(), offset, min(end - offset, 8 * MIB))
                    if sent == 0:
                        break
                    offset += sent
            except (BrokenPipeError, ConnectionResetError):
                pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def serve(root):
    handler = lambda *a, **kw: RangeHandler(*a, directory=root, **kw)  # noqa: E731
    srv = Server(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


def run(cmd, shell=False):
    """Runs a command; returns (seconds, peak RSS in MiB of the largest process in it)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, shell=shell, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - start
    err = proc.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"command failed: {cmd}\n{err}")
    return elapsed, usage.ru_maxrss / 1024


def drop(path):
    if os.path.exists(path):
        os.remove(path)


def make_raw(path, size, dense_fraction):
    """A raw disk: random data in `dense_fraction` of each 8 MiB, zeros elsewhere."""
    chunk = 8 * MIB
    data_len = int(chunk * dense_fraction) // MIB * MIB
    with open(path, "wb") as f:
        for off in range(0, size, chunk):
            f.seek(off)
            f.write(os.urandom(data_len))
        f.truncate(size)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 * MIB):
            h.update(block)
    return h.hexdigest()


def same(a, b):
    return subprocess.run(["cmp", "-s", a, b]).returncode == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", default="/work/target/x86_64-unknown-linux-gnu/release/ironic-agent")
    ap.add_argument("--size-gib", type=float, default=2.0, help="size of the raw and qcow2 images")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    for tool in ("curl", "dd", "qemu-img", "cmp"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed")
    work = tempfile.mkdtemp(prefix="image-bench-", dir=args.workdir)
    srv, base = serve(work)
    size = int(args.size_gib * GIB)
    rows = []
    try:
        raw = os.path.join(work, "disk.raw")
        make_raw(raw, size, 1.0)
        out = os.path.join(work, "out.img")
        ours_t, ours_rss = run([args.agent, "write-image", f"{base}/disk.raw", out, "--format", "raw",
                                "--checksum", f"sha256:{sha256(raw)}"])
        assert same(raw, out), "write-image output differs"
        drop(out)
        ref_t, ref_rss = run(f"curl -sf {base}/disk.raw | dd of={out} bs=1M status=none", shell=True)
        drop(out)
        rows.append(("raw %.1f GiB, dense" % args.size_gib, ours_t, ours_rss, "curl | dd bs=1M", ref_t, ref_rss,
                     f"throughput ratio {ref_t / ours_t:.2f}"))

        q = os.path.join(work, "disk.qcow2")
        half = os.path.join(work, "half.raw")
        make_raw(half, size, 0.5)
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", half, q], check=True)
        ours_t, ours_rss = run([args.agent, "write-image", f"{base}/disk.qcow2", out, "--checksum", f"sha256:{sha256(q)}"])
        assert same(half, out), "qcow2 conversion differs"
        drop(out)
        staged = os.path.join(work, "staged.qcow2")
        ref_t1, rss1 = run(["curl", "-sf", "-o", staged, f"{base}/disk.qcow2"])
        ref_t2, rss2 = run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", staged, out])
        staged_mib = os.path.getsize(staged) / MIB
        drop(out)
        drop(staged)
        rows.append(("qcow2 %.1f GiB virtual, half full" % args.size_gib, ours_t, ours_rss,
                     "curl -o + qemu-img convert", ref_t1 + ref_t2, max(rss1, rss2),
                     f"time ratio {(ref_t1 + ref_t2) / ours_t:.2f}; reference also stages {staged_mib:.0f} MiB"))
        for p in (raw, half, q):
            drop(p)

        sparse = os.path.join(work, "sparse.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", sparse, "2T"], check=True)
        for i in range(64):
            subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P {i + 1} {i * 32}G 16M", sparse],
                           check=True, stdout=subprocess.DEVNULL)
        t, rss = run([args.agent, "write-image", f"{base}/sparse.qcow2", out, "--checksum", f"sha256:{sha256(sparse)}"])
        drop(out)
        drop(sparse)
        rows.append(("qcow2 2 TiB virtual, 1 GiB in 64 places", t, rss, "", None, None, "peak RSS bound 64 MiB"))

        dense = os.path.join(work, "dense.raw")
        make_raw(dense, 2 * size, 1.0)
        dq = os.path.join(work, "dense.qcow2")
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4096", dense, dq],
                       check=True)
        drop(dense)
        t, rss = run([args.agent, "write-image", f"{base}/dense.qcow2", out, "--checksum", f"sha256:{sha256(dq)}"])
        drop(out)
        drop(dq)
        rows.append(("qcow2 %.1f GiB dense, 4 KiB clusters" % (2 * args.size_gib), t, rss, "", None, None,
                     "peak RSS bound 64 MiB"))
    finally:
        srv.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    print("| case | write-image s | write-image peak RSS MiB | reference | reference s | reference peak RSS MiB | result |")
    print("|---|---|---|---|---|---|---|")
    for name, t, rss, ref, rt, rrss, note in rows:
        rt_s = f"{rt:.1f}" if rt is not None else "-"
        rrss_s = f"{rrss:.0f}" if rrss is not None else "-"
        print(f"| {name} | {t:.1f} | {rss:.0f} | {ref or '-'} | {rt_s} | {rrss_s} | {note} |")


if __name__ == "__main__":
    main()
