"""Read ELF notes straight from a file (test helper): the OGRT stamp as the loader maps it.

`segment_notes` walks the PT_NOTE program headers (what dl_iterate_phdr shows a library at
run time); `section_notes` walks SHT_NOTE sections (relocatable objects have no segments).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

OGRT_NOTE_TYPE = 0x4F475254
PT_NOTE = 4
SHT_NOTE = 7


@dataclass(frozen=True)
class Note:
    name: bytes       # without the terminating NUL
    namesz: int       # as stored (includes the NUL)
    type: int
    desc: bytes
    align: int


class _Elf:
    def __init__(self, data: bytes) -> None:
        if data[:4] != b"\x7fELF":
            raise ValueError("not an ELF file")
        self.data = data
        self.is64 = data[4] == 2
        self.end = "<" if data[5] == 1 else ">"
        if self.is64:
            (self.phoff, self.shoff) = struct.unpack_from(self.end + "QQ", data, 0x20)
            (self.phentsize, self.phnum, self.shentsize, self.shnum) = struct.unpack_from(
                self.end + "HHHH", data, 0x36)
        else:
            (self.phoff, self.shoff) = struct.unpack_from(self.end + "II", data, 0x1C)
            (self.phentsize, self.phnum, self.shentsize, self.shnum) = struct.unpack_from(
                self.end + "HHHH", data, 0x2A)

    def segments(self) -> list[tuple[int, int, int, int]]:
        """(p_type, p_offset, p_filesz, p_align) of every program header."""
        out = []
        for i in range(self.phnum):
            off = self.phoff + i * self.phentsize
            if self.is64:
                p_type, _flags, p_offset, _va, _pa, p_filesz, _memsz, p_align = struct.unpack_from(
                    self.end + "IIQQQQQQ", self.data, off)
            else:
                p_type, p_offset, _va, _pa, p_filesz, _memsz, _flags, p_align = struct.unpack_from(
                    self.end + "IIIIIIII", self.data, off)
            out.append((p_type, p_offset, p_filesz, p_align))
        return out

    def sections(self) -> list[tuple[int, int, int, int, int]]:
        """(sh_type, sh_flags, sh_offset, sh_size, sh_addralign) of every section header."""
        out = []
        for i in range(self.shnum):
            off = self.shoff + i * self.shentsize
            if self.is64:
                _name, sh_type, sh_flags, _addr, sh_offset, sh_size, _link, _info, sh_align, _es = \
                    struct.unpack_from(self.end + "IIQQQQIIQQ", self.data, off)
            else:
                _name, sh_type, sh_flags, _addr, sh_offset, sh_size, _link, _info, sh_align, _es = \
                    struct.unpack_from(self.end + "IIIIIIIIII", self.data, off)
            out.append((sh_type, sh_flags, sh_offset, sh_size, sh_align))
        return out

    def notes(self, offset: int, size: int, align: int) -> list[Note]:
        step = 8 if align == 8 else 4
        pad = lambda n: (n + step - 1) // step * step  # noqa: E731
        out, pos, stop = [], offset, offset + size
        while pos + 12 <= stop:
            namesz, descsz, ntype = struct.unpack_from(self.end + "III", self.data, pos)
            name_at = pos + 12
            desc_at = name_at + pad(namesz)
            name = self.data[name_at:name_at + namesz].rstrip(b"\0")
            desc = self.data[desc_at:desc_at + descsz]
            out.append(Note(name, namesz, ntype, desc, step))
            pos = desc_at + pad(descsz)
        return out


def segment_notes(path: Path) -> list[Note]:
    elf = _Elf(Path(path).read_bytes())
    notes: list[Note] = []
    for p_type, p_offset, p_filesz, p_align in elf.segments():
        if p_type == PT_NOTE:
            notes += elf.notes(p_offset, p_filesz, p_align)
    return notes


def section_notes(path: Path, allocated_only: bool = True) -> list[Note]:
    elf = _Elf(Path(path).read_bytes())
    notes: list[Note] = []
    for sh_type, sh_flags, sh_offset, sh_size, sh_align in elf.sections():
        if sh_type == SHT_NOTE and (sh_flags & 2 or not allocated_only):  # SHF_ALLOC
            notes += elf.notes(sh_offset, sh_size, sh_align)
    return notes


def ogrt_signatures(notes: list[Note]) -> list[str]:
    """UUID texts of the well-formed OGRT notes among `notes`."""
    out = []
    for n in notes:
        if n.name == b"OGRT" and n.type == OGRT_NOTE_TYPE and len(n.desc) == 38 \
                and n.desc[0] == 1 and n.desc[37] == 0:
            out.append(n.desc[1:37].decode("ascii"))
    return out


def signatures_in(path: Path) -> list[str]:
    """OGRT signatures in the PT_NOTE segments of a linked program or library."""
    return ogrt_signatures(segment_notes(path))
