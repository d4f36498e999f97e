#!/usr/bin/env python3
"""Write the uncompressed ELF vmlinux held inside a bzImage (XZ, ZSTD or GZIP payload).

QEMU's -kernel boots such an ELF through its PVH entry note, which skips the bzImage's
decompressor: about 3 s less per boot under TCG (no KVM on the project's machines).

usage: extract-vmlinux.py BZIMAGE OUT
"""
import gzip
import lzma
import sys
import zlib

MAGICS = (
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x1f\x8b\x08", "gzip"),
)


def decompress(data: bytes, offset: int, kind: str) -> bytes:
    payload = data[offset:]
    if kind == "xz":
        return lzma.LZMADecompressor().decompress(payload)  # stops at the end of the stream
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(payload)
    try:
        import zstandard  # only for CONFIG_KERNEL_ZSTD kernels
    except ImportError as e:
        raise SystemExit(f"extract-vmlinux: {sys.argv[1]} is zstd-compressed; pip install zstandard") from e
    return zstandard.ZstdDecompressor().decompressobj().decompress(payload)


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, "rb") as f:
        data = f.read()
    for magic, kind in MAGICS:
        start = 0
        while (i := data.find(magic, start)) >= 0:
            start = i + 1
            try:
                out = decompress(data, i, kind)
            except (lzma.LZMAError, zlib.error, gzip.BadGzipFile, EOFError):
                continue
            if out[:4] == b"\x7fELF":
                with open(dst, "wb") as f:
                    f.write(out)
                return 0
    print(f"extract-vmlinux: no compressed ELF payload found in {src}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
