#!/usr/bin/env python3
"""A whole-disk test image that proves where the machine booted from.

Sector 0 is a BIOS boot sector that writes MARKER to the first serial port (COM1) and halts,
with an MBR partition table holding one partition (1 MiB to the end of the image), as real
whole-disk images have; the rest is pseudo-random data derived from the seed, so a byte
comparison of the VM's disk against the image catches any misplaced, missing or corrupted
block.

usage: testimage.py OUT SIZE_MIB [SEED]     (prints the sha256)
"""
import hashlib
import os
import random
import subprocess
import sys

MARKER = b"ironic-agent-e2e: booted from the deployed disk"

# 16-bit real mode, loaded at 0x7c00 by the BIOS:
#   cli; xor ax,ax; mov ds,ax; mov ss,ax; mov sp,0x7c00; cld
#   mov si,msg; mov dx,0x3f8
#   next: lodsb; test al,al; jz done; out dx,al; jmp next
#   done: hlt; jmp done
#   msg: MARKER, "\r\n", 0
_CODE = bytes([
    0xFA, 0x31, 0xC0, 0x8E, 0xD8, 0x8E, 0xD0, 0xBC, 0x00, 0x7C, 0xFC,
    0xBE, 0x1C, 0x7C,             # mov si, 0x7c1c (msg, right after the code)
    0xBA, 0xF8, 0x03,             # mov dx, 0x3f8
    0xAC, 0x84, 0xC0, 0x74, 0x03, 0xEE, 0xEB, 0xF8,
    0xF4, 0xEB, 0xFD,
])
assert len(_CODE) == 0x1C


def partition_entry(start_lba: int, sectors: int) -> bytes:
    """An active Linux (0x83) MBR partition; CHS fields say "use LBA" (1023/254/63)."""
    return (bytes([0x80, 0xFE, 0xFF, 0xFF, 0x83, 0xFE, 0xFF, 0xFF])
            + start_lba.to_bytes(4, "little") + sectors.to_bytes(4, "little"))


def boot_sector(size_mib: int) -> bytes:
    msg = MARKER + b"\r\n\x00"
    code = _CODE + msg
    assert len(code) <= 440, "boot code must stay clear of the partition table"
    table = partition_entry(2048, size_mib * 2048 - 2048) + b"\x00" * 48
    return code + b"\x00" * (446 - len(code)) + table + b"\x55\xaa"


def write_image(path: str, size_mib: int, seed: int = 1) -> str:
    """Write the image; returns its sha256 hex digest."""
    if size_mib < 2:
        raise ValueError("a test image needs at least 2 MiB (the partition starts at 1 MiB)")
    rng = random.Random(seed)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        first = boot_sector(size_mib) + rng.randbytes((1 << 20) - 512)
        f.write(first)
        h.update(first)
        for _ in range(size_mib - 1):
            chunk = rng.randbytes(1 << 20)
            f.write(chunk)
            h.update(chunk)
    return h.hexdigest()


ESP_MIB = 32


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def write_uefi_image(path: str, size_mib: int, efi_app: str, work: str) -> str:
    """A whole-disk UEFI image: GPT, partition 1 an EFI system partition (FAT) holding
    `efi_app` as \\EFI\\BOOT\\BOOTX64.EFI, the rest of the disk pseudo-random data. Needs
    sgdisk (gdisk), mkfs.vfat (dosfstools) and mtools. Returns the image's sha256."""
    if size_mib < ESP_MIB + 4:
        raise ValueError(f"a UEFI test image needs at least {ESP_MIB + 4} MiB")
    esp = os.path.join(work, "esp.fat")
    if os.path.exists(esp):
        os.unlink(esp)
    run("mkfs.vfat", "-F", "16", "-n", "ESP", "-C", esp, str(ESP_MIB * 1024))
    run("mmd", "-i", esp, "::/EFI", "::/EFI/BOOT")
    run("mcopy", "-i", esp, efi_app, "::/EFI/BOOT/BOOTX64.EFI")
    rng = random.Random(7)
    with open(path, "wb") as f:
        f.truncate(size_mib << 20)
        f.seek((ESP_MIB + 1) << 20)
        for _ in range(size_mib - ESP_MIB - 2):      # the last MiB holds the backup GPT
            f.write(rng.randbytes(1 << 20))
    run("sgdisk", "-n", f"1:2048:+{ESP_MIB}M", "-t", "1:ef00", "-c", "1:ESP", path)
    with open(esp, "rb") as src, open(path, "r+b") as f:
        f.seek(1 << 20)
        f.write(src.read())
    os.unlink(esp)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print(write_image(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) == 4 else 1))
