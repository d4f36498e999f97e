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
import socket
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

    def setup(self):
        super().setup()
        # As nginx's tcp_nodelay: without it, small answers wait for delayed ACKs.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

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


def run(cmd, outputs=(), repeat=2):
    """Runs a shell command `repeat` times (removing `outputs` first each time); returns the
    best (seconds, peak RSS in MiB of the largest process it ran), measured by GNU time."""
    best = None
    for _ in range(repeat):
        for o in outputs:
            drop(o)
        with tempfile.NamedTemporaryFile("r") as stats:
            proc = subprocess.run(["/usr/bin/time", "-q", "-f", "%e %M", "-o", stats.name, "sh", "-c", cmd],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if proc.returncode != 0:
                sys.exit(f"command failed: {cmd}\n{proc.stderr.decode(errors='replace')}")
            secs, kib = stats.read().split()[-2:]
        result = (float(secs), int(kib) / 1024)
        best = result if best is None or result[0] < best[0] else best
    return best


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


def make_compressible(path, size):
    """A disk full of compressible, non-zero data (text-like): every cluster is allocated."""
    line = b"".join(b"%08d the quick brown fox jumps over the lazy dog\n" % i for i in range(1024))
    with open(path, "wb") as f:
        for off in range(0, size, len(line)):
            f.write(line[: min(len(line), size - off)])


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
    ap.add_argument("--agent", default="target/x86_64-unknown-linux-gnu/release/ironic-agent")
    ap.add_argument("--size-gib", type=float, default=2.0, help="size of the raw and qcow2 images")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    for tool in ("curl", "dd", "bash", "tee", "sha256sum", "qemu-img", "qemu-io", "cmp", "/usr/bin/time"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed")
    work = tempfile.mkdtemp(prefix="image-bench-", dir=args.workdir)
    srv, base = serve(work)
    size = int(args.size_gib * GIB)
    rows = []
    agent = args.agent
    out = os.path.join(work, "out.img")
    try:
        raw = os.path.join(work, "disk.raw")
        make_raw(raw, size, 1.0)
        ours = run(f"{agent} write-image {base}/disk.raw {out} --format raw --checksum sha256:{sha256(raw)}", [out])
        assert same(raw, out), "write-image output differs"
        plain = run(f"curl -sf {base}/disk.raw | dd of={out} bs=1M status=none", [out])
        rows.append((f"raw {args.size_gib:g} GiB, dense", ours, "curl \\| dd bs=1M", plain,
                     f"throughput ratio {plain[0] / ours[0]:.2f}"))
        ref = run(f"curl -sf {base}/disk.raw | dd of={out} bs=1M conv=fsync status=none", [out])
        rows.append((f"raw {args.size_gib:g} GiB, dense", ours, "curl \\| dd bs=1M conv=fsync", ref,
                     f"throughput ratio {ref[0] / ours[0]:.2f}"))
        # What IPA does for a raw image: stream it, hash it while streaming, and sync the disk.
        ipa_like = run(f"bash -c 'curl -sf {base}/disk.raw | tee >(sha256sum >/dev/null) "
                       f"| dd of={out} bs=1M conv=fsync status=none'", [out])
        rows.append((f"raw {args.size_gib:g} GiB, dense", ours, "curl \\| tee >(sha256sum) \\| dd bs=1M conv=fsync",
                     ipa_like, f"throughput ratio {ipa_like[0] / ours[0]:.2f}"))
        unverified = run(f"{agent} write-image {base}/disk.raw {out} --format raw", [out])
        rows.append((f"raw {args.size_gib:g} GiB, dense, no checksum", unverified, "curl \\| dd bs=1M", plain,
                     f"throughput ratio {plain[0] / unverified[0]:.2f}"))
        drop(raw)

        half = os.path.join(work, "half.raw")
        make_raw(half, size, 0.5)
        for label, opts in (("64 KiB clusters", []), ("4 KiB clusters", ["-o", "cluster_size=4096"])):
            q = os.path.join(work, "disk.qcow2")
            subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", *opts, half, q], check=True)
            ours = run(f"{agent} write-image {base}/disk.qcow2 {out} --checksum sha256:{sha256(q)}", [out])
            assert same(half, out), "qcow2 conversion differs"
            staged = os.path.join(work, "staged.qcow2")
            ref = run(f"curl -sf -o {staged} {base}/disk.qcow2 && qemu-img convert -f qcow2 -O raw {staged} {out}",
                      [out, staged])
            staged_mib = os.path.getsize(staged) / MIB
            rows.append((f"qcow2 {args.size_gib:g} GiB virtual, half full, {label}", ours,
                         "curl -o + qemu-img convert -O raw", ref,
                         f"time ratio {ref[0] / ours[0]:.2f}; the reference stages {staged_mib:.0f} MiB "
                         "(IPA: in the ramdisk's RAM)"))
            drop(staged)
            drop(q)
        drop(half)

        sparse = os.path.join(work, "sparse.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", sparse, "2T"], check=True)
        for i in range(64):
            subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P {i + 1} {i * 32}G 16M", sparse],
                           check=True, stdout=subprocess.DEVNULL)
        ours = run(f"{agent} write-image {base}/sparse.qcow2 {out} --checksum sha256:{sha256(sparse)}", [out], 1)
        rows.append(("qcow2 2 TiB virtual, 1 GiB of data in 64 places", ours, "", None, "peak RSS bound: 64 MiB"))
        drop(sparse)
        drop(out)

        dense = os.path.join(work, "dense.raw")
        make_compressible(dense, 2 * size)
        dq = os.path.join(work, "dense.qcow2")
        subprocess.run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4096", dense, dq],
                       check=True)
        drop(dense)
        clusters = 2 * size // 4096
        ours = run(f"{agent} write-image {base}/dense.qcow2 {out} --checksum sha256:{sha256(dq)}", [out], 1)
        rows.append((f"qcow2 {2 * args.size_gib:g} GiB dense, compressed, 4 KiB clusters ({clusters} extents)", ours,
                     "", None, "peak RSS bound: 64 MiB"))
        drop(dq)
        drop(out)
    finally:
        srv.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    print("| case | write-image s | write-image peak RSS MiB | reference | reference s | reference peak RSS MiB | result |")
    print("|---|---|---|---|---|---|---|")
    for name, ours, ref_name, ref, note in rows:
        ref_s = f"{ref[0]:.2f} | {ref[1]:.0f}" if ref else "- | -"
        print(f"| {name} | {ours[0]:.2f} | {ours[1]:.0f} | {ref_name or '-'} | {ref_s} | {note} |")


if __name__ == "__main__":
    main()
