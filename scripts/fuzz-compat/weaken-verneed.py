#!/usr/bin/env python3
"""Marks the given version-needed entries (e.g. GLIBC_2.38) of an ELF64 file as weak.

`patchelf --clear-symbol-version` makes the symbols unversioned, but the loader still refuses the file
while its .gnu.version_r section requires a version the system lacks. A requirement flagged
VER_FLG_WEAK is not fatal when missing (glibc elf/dl-version.c), so the file loads and the now
unversioned symbols bind to the compat library. Idempotent; prints what it changed.
"""
import struct
import sys

SHT_GNU_VERNEED = 0x6FFFFFFE
VER_FLG_WEAK = 0x2


def main(path: str, names: list[str]) -> None:
    with open(path, "r+b") as f:
        elf = bytearray(f.read())
        assert elf[:4] == b"\x7fELF" and elf[4] == 2 and elf[5] == 1, "little-endian ELF64 only"
        shoff, = struct.unpack_from("<Q", elf, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", elf, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize) for i in range(shnum)]
        for sh in sections:
            if sh[1] != SHT_GNU_VERNEED:
                continue
            strtab = sections[sh[6]]
            str_off = strtab[4]
            off, count = sh[4], sh[7]
            for _ in range(count):
                _, _, _, vn_aux, vn_next = struct.unpack_from("<HHIII", elf, off)
                aux = off + vn_aux
                while True:
                    _, flags, _, vna_name, vna_next = struct.unpack_from("<IHHII", elf, aux)
                    start = str_off + vna_name
                    name = bytes(elf[start : elf.index(0, start)]).decode()
                    if name in names and not flags & VER_FLG_WEAK:
                        struct.pack_into("<H", elf, aux + 4, flags | VER_FLG_WEAK)
                        print(f"weakened {name}")
                    if vna_next == 0:
                        break
                    aux += vna_next
                if vn_next == 0:
                    break
                off += vn_next
        f.seek(0)
        f.write(elf)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
