#!/usr/bin/env python3
"""Keeps one GPU architecture's kernels in a CUDA shared library and zeroes the others.

A CUDA library carries its kernels as a fat binary (ELF section `.nv_fatbin`): one compiled
kernel image per GPU architecture. ONNX Runtime's CUDA provider carries sm_75 to sm_120, 284 MB,
of which a Hopper GPU (sm_90) loads 77 MB. This zeroes every other architecture's payload in
place, leaving every header, offset and size as it was, so the file packs to a fraction of its
size for an offline GPU host that can only receive a small upload. The CUDA runtime picks the
image for the GPU it runs on from the headers; the zeroed images are never read on that GPU.

    fatbin-keep.py SRC DST ARCH     e.g. fatbin-keep.py libonnxruntime_providers_cuda.so out.so 90

Images of ARCH are kept, and PTX of ARCH or older (which the driver can compile for the GPU). A fat
binary with neither (kernels built only for another GPU generation) could not run on ARCH before
either; they are counted.
"""
import struct
import sys

FATBIN_MAGIC = 0xBA55ED50


def section(data: bytes, wanted: str) -> tuple[int, int]:
    """Offset and size of the ELF64 section `wanted`."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise SystemExit("not a 64-bit ELF file")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_at = headers[shstrndx][4]
    for name, _type, _flags, _addr, offset, size in headers:
        end = data.index(b"\0", names_at + name)
        if data[names_at + name : end].decode() == wanted:
            return offset, size
    raise SystemExit(f"no {wanted} section")


def images(data: bytes, offset: int, size: int):
    """(fat binary index, kind, arch, payload offset, payload size) of every kernel image; kind 1 is
    PTX, 2 a compiled image."""
    pos, end, index = offset, offset + size, 0
    while pos + 16 <= end:
        magic, _version, header, fat_size = struct.unpack_from("<IHHQ", data, pos)
        if magic != FATBIN_MAGIC:
            pos += 8  # alignment padding between fat binaries
            continue
        entry, stop = pos + header, pos + header + fat_size
        while entry < stop:
            kind, _ver, entry_header, padded = struct.unpack_from("<HHIQ", data, entry)
            (arch,) = struct.unpack_from("<I", data, entry + 28)
            yield index, kind, arch, entry + entry_header, padded
            entry += entry_header + padded
        pos, index = stop, index + 1


def main() -> None:
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    src, dst, keep = sys.argv[1], sys.argv[2], int(sys.argv[3])
    data = bytearray(open(src, "rb").read())
    offset, size = section(data, ".nv_fatbin")
    found = list(images(bytes(data), offset, size))
    usable = lambda kind, arch: (kind == 2 and arch == keep) or (kind == 1 and arch <= keep)
    runs_there = {i for i, kind, arch, _, _ in found if usable(kind, arch)}
    elsewhere = len({i for i, *_ in found} - runs_there)
    zeroed = kept = 0
    for _, kind, arch, at, n in found:
        if usable(kind, arch):
            kept += n
        else:
            data[at : at + n] = bytes(n)
            zeroed += n
    open(dst, "wb").write(data)
    print(f"sm_{keep}: kept {kept / 1e6:.1f} MB of kernel images, zeroed {zeroed / 1e6:.1f} MB; "
          f"{len(runs_there)} fat binaries run there, {elsewhere} built only for other GPUs")


if __name__ == "__main__":
    main()
