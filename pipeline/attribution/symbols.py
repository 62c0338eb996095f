"""Addresses -> functions: MMAP2 records, ELF symbols and DWARF CFI unwinding (pyelftools).

    ip --MMAP2 of that pid at that time--> (file, file offset) --PT_LOAD--> ELF vaddr
       --.symtab, else .dynsym--> function + offset

Binaries are read from the machine doing the analysis: a root folder + the path
in the MMAP2 record (or perf's build-id cache, ~/.debug/.build-id/xx/yyy/elf).  When the
capture has build ids (`perf record --buildid-mmap`, which `ptreplay record
--call-graph` passes), a binary whose NT_GNU_BUILD_ID differs is not used: its
symbols would name the wrong functions.  Whatever cannot be symbolized is shown
as `file+0xoffset` with the reason, never guessed.

Samples recorded with `--call-graph dwarf` carry the user registers and the top
of the user stack; `unwind` walks it with the CFI in .eh_frame/.debug_frame
(the rules perf's own libunwind/libdw unwinders follow).  This finds the caller
of a leaf such as glibc's madvise() wrapper, which has no frame pointer: a
frame-pointer chain skips straight to the caller's caller.
"""
from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from pathlib import Path

from elftools.dwarf.callframe import FDE, RegisterRule
from elftools.elf.elffile import ELFFile

# DWARF register numbers (x86-64 psABI) -> perf REGS_USER names.
DWARF_REGS = {0: "ax", 1: "dx", 2: "cx", 3: "bx", 4: "si", 5: "di", 6: "bp", 7: "sp",
              **{8 + k: f"r{8 + k}" for k in range(8)}, 16: "ip"}
RA = 16                     # return address column on x86-64
MAX_FRAMES = 64
RUNTIME_PREFIXES = ("libc.so", "libc-", "ld-linux", "libpthread", "[vdso]", "libdl", "librt")


@dataclass(frozen=True)
class Frame:
    """One symbolized frame: `symbol` is None when it cannot be named (see `note`)."""
    ip: int
    dso: str                 # file name of the mapping ('' when no mapping holds ip)
    offset: int              # offset in that file (or the ip itself when unmapped)
    function: str | None     # function symbol covering it
    function_offset: int = 0
    note: str = ""           # '', 'unverified build id', 'build id mismatch', 'binary not found', ...

    @property
    def name(self) -> str:
        """The function (or file+offset when it has no symbol): what call sites are grouped by."""
        if self.function:
            return self.function
        if not self.dso:
            return f"{self.ip:#x} [{self.note}]"
        return f"{os.path.basename(self.dso)}+{self.offset:#x}"

    @property
    def runtime(self) -> bool:
        """A C-runtime frame (libc, ld.so, vdso): the site is whoever called it."""
        return os.path.basename(self.dso).startswith(RUNTIME_PREFIXES)

    def __str__(self) -> str:
        if not self.dso:
            return self.name
        where = f"{os.path.basename(self.dso)}+{self.offset:#x}"
        if self.function:
            return f"{self.function}+{self.function_offset:#x} ({where})"
        return f"{where} [{self.note or 'no symbol'}]"


class Binary:
    """One ELF file: its PT_LOAD segments, function symbols and (lazily) CFI."""

    def __init__(self, path: Path):
        self.path = path
        self._file = open(path, "rb")
        self.elf = ELFFile(self._file)
        self.build_id = _build_id(self.elf)
        self.loads = [(s["p_offset"], s["p_vaddr"], s["p_filesz"]) for s in self.elf.iter_segments()
                      if s["p_type"] == "PT_LOAD"]
        self.starts, self.ends, self.names = _functions(self.elf)
        self.stripped = self.elf.get_section_by_name(".symtab") is None
        self._fdes = None

    def vaddr(self, file_offset: int) -> int | None:
        for off, vaddr, size in self.loads:
            if off <= file_offset < off + size:
                return file_offset - off + vaddr
        return None

    def symbol(self, vaddr: int) -> tuple[str, int] | None:
        """(function name, offset into it) of the function symbol covering vaddr."""
        i = bisect.bisect_right(self.starts, vaddr) - 1
        if i >= 0 and vaddr < self.ends[i]:
            return self.names[i], vaddr - self.starts[i]
        return None

    def cfi_row(self, vaddr: int):
        """(row of the decoded CFI table in force at vaddr, return-address column) or None."""
        if self._fdes is None:
            self._fdes = _fde_index(self.elf)
        starts, fdes = self._fdes
        i = bisect.bisect_right(starts, vaddr) - 1
        if i < 0:
            return None
        fde = fdes[i]
        if not (fde["initial_location"] <= vaddr < fde["initial_location"] + fde["address_range"]):
            return None
        table = fde.get_decoded().table
        row = None
        for r in table:
            if r["pc"] > vaddr:
                break
            row = r
        return row


def _build_id(elf: ELFFile) -> str | None:
    for sec in elf.iter_sections():
        if sec["sh_type"] == "SHT_NOTE":
            for note in sec.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID":
                    return note["n_desc"]
    return None


def _functions(elf: ELFFile) -> tuple[list, list, list]:
    """Sorted function symbols of .symtab (or .dynsym for stripped files)."""
    syms = {}
    for name in (".symtab", ".dynsym"):
        sec = elf.get_section_by_name(name)
        if sec is None or not hasattr(sec, "iter_symbols"):
            continue
        for s in sec.iter_symbols():
            if s["st_info"]["type"] in ("STT_FUNC", "STT_GNU_IFUNC") and s["st_value"] and s.name:
                syms.setdefault(s["st_value"], (s["st_value"] + max(s["st_size"], 1), s.name))
        if syms:
            break
    starts = sorted(syms)
    return starts, [syms[s][0] for s in starts], [syms[s][1] for s in starts]


def _fde_index(elf: ELFFile) -> tuple[list, list]:
    fdes = []
    if elf.has_dwarf_info():
        dwarf = elf.get_dwarf_info()
        for entries in ((dwarf.EH_CFI_entries() if dwarf.has_EH_CFI() else []),
                        (dwarf.CFI_entries() if dwarf.has_CFI() else [])):
            fdes += [e for e in entries if isinstance(e, FDE)]
    fdes.sort(key=lambda e: e["initial_location"])
    return [e["initial_location"] for e in fdes], fdes


class Symbolizer:
    """Names ips of one capture: its MMAP2 records plus binaries found in `roots`.

    A binary recorded as /usr/lib/x.so is looked for as ROOT/usr/lib/x.so, then
    ROOT/x.so, for each root in turn (like perf's --symfs, plus a flat folder of
    copied binaries), then at its recorded path, then in perf's build-id cache;
    the first whose build id matches the capture's wins.
    """

    def __init__(self, mmaps: list[dict], roots=(), build_id_cache: Path | None = None):
        self.roots = [Path(r) for r in roots]
        self.cache = build_id_cache if build_id_cache is not None else Path.home() / ".debug" / ".build-id"
        self.maps: dict[int, list[dict]] = {}
        for m in sorted(mmaps, key=lambda m: m.get("t_ns", -1)):
            self.maps.setdefault(int(m["pid"]), []).append(m)
        self._binaries: dict[tuple, tuple[Binary | None, str]] = {}

    # ---- address -> mapping -> binary
    def mapping(self, pid: int, t_ns: int, ip: int) -> dict | None:
        """The latest MMAP2 of `pid` before t_ns that covers ip (later maps replace earlier ones)."""
        for m in reversed(self.maps.get(pid, [])):
            if m.get("t_ns", -1) <= t_ns and m["addr"] <= ip < m["addr"] + m["len"]:
                return m
        return None

    def binary(self, m: dict) -> tuple[Binary | None, str]:
        """(Binary or None, note) for the file a mapping names; checked against its build id."""
        key = (m["filename"], m.get("build_id"))
        if key not in self._binaries:
            self._binaries[key] = self._load(m["filename"], m.get("build_id"))
        return self._binaries[key]

    def _load(self, filename: str, build_id: str | None) -> tuple[Binary | None, str]:
        if not filename.startswith("/") or "/../" in filename:
            return None, "no file ([anon], [vdso], ...)"
        candidates = [p for r in self.roots for p in (r / filename.lstrip("/"), r / Path(filename).name)]
        candidates.append(Path(filename))
        if build_id:
            candidates.append(self.cache / build_id[:2] / build_id[2:] / "elf")
        note = "binary not found"
        for path in candidates:
            if not path.is_file():
                continue
            try:
                b = Binary(path)
            except Exception as e:  # any malformed ELF: pyelftools raises ELFError, struct.error, ...
                note = f"unreadable ELF ({type(e).__name__})"
                continue
            if build_id and b.build_id and b.build_id != build_id:
                note = "build id mismatch"
                continue
            if not build_id:
                return b, "unverified build id"
            return b, ("stripped: .dynsym only" if b.stripped else "")
        return None, note

    def locate(self, pid: int, t_ns: int, ip: int) -> tuple[dict | None, Binary | None, str, int | None]:
        m = self.mapping(pid, t_ns, ip)
        if m is None:
            return None, None, "no mapping", None
        b, note = self.binary(m)
        vaddr = b.vaddr(ip - m["addr"] + m["pgoff"]) if b is not None else None
        return m, b, note, vaddr

    # ---- frames
    def frame(self, pid: int, t_ns: int, ip: int, is_return: bool) -> Frame:
        """A frame for ip; return addresses are looked up at ip - 1 (inside the call)."""
        look = ip - 1 if is_return else ip
        m, b, note, vaddr = self.locate(pid, t_ns, look)
        if m is None:
            return Frame(ip, "", ip, None, 0, note)
        offset = look - m["addr"] + m["pgoff"]
        sym = b.symbol(vaddr) if b is not None and vaddr is not None else None
        if sym is None:
            return Frame(ip, m["filename"], offset, None, 0, note or "no symbol covers it")
        return Frame(ip, m["filename"], offset, sym[0], sym[1], note)

    def stack(self, s) -> tuple[list[Frame], str]:
        """Frames of one `perf.stacks.SampleStack`, innermost first, and how they were found
        ('dwarf', 'fp', 'ip'; 'dwarf failed (...), fp' when a binary's CFI cannot be decoded)."""
        failed = ""
        if s.regs is not None and s.stack:
            try:
                ips = self.unwind(s.pid, s.t_ns, s.regs, s.stack)
                return [self.frame(s.pid, s.t_ns, ip, k > 0) for k, ip in enumerate(ips)], "dwarf"
            except Exception as e:  # CFI of a binary on disk that cannot be decoded: say so, fall back
                failed = f"dwarf failed ({type(e).__name__}), "
        if s.user_ips:
            ips, how = list(s.user_ips), failed + "fp"
        elif s.regs is not None:
            ips, how = [s.regs["ip"]], failed + "ip"
        else:
            return [], "none"
        return [self.frame(s.pid, s.t_ns, ip, k > 0) for k, ip in enumerate(ips)], how

    def unwind(self, pid: int, t_ns: int, regs: dict, stack: bytes) -> list[int]:
        """Walk the copied user stack with DWARF CFI (frame pointers where no CFI covers a pc)."""
        sp0 = regs["sp"]

        def mem(addr):
            k = addr - sp0
            if addr is None or k < 0 or k + 8 > len(stack):
                return None
            return int.from_bytes(stack[k:k + 8], "little")

        cur = {n: regs[name] for n, name in DWARF_REGS.items() if name in regs}
        ips = [regs["ip"]]
        for depth in range(MAX_FRAMES):
            pc = ips[-1] - (1 if depth else 0)
            m, b, _, vaddr = self.locate(pid, t_ns, pc)
            row = b.cfi_row(vaddr) if b is not None and vaddr is not None else None
            if row is not None and row["cfa"].expr is None and row["cfa"].reg in cur:
                cfa = cur[row["cfa"].reg] + row["cfa"].offset
                new = dict(cur)
                for reg, rule in row.items():
                    if isinstance(reg, int):
                        new[reg] = _apply(reg, rule, cfa, cur, mem)
                new[7] = cfa
                ra = new.get(RA) if RA in row else None
            else:                          # frame pointer: [bp] = caller's bp, [bp+8] = return address
                bp = cur.get(6)
                ra = mem(bp + 8) if bp is not None else None
                new = dict(cur)
                new[6], new[7] = (mem(bp) if bp is not None else None), (bp + 16 if bp is not None else None)
            if not ra or ra < 4096:
                break
            ips.append(ra)
            cur = {k: v for k, v in new.items() if v is not None}
        return ips


def _apply(reg: int, rule: RegisterRule, cfa: int, cur: dict, mem) -> int | None:
    if rule.type == RegisterRule.OFFSET:
        return mem(cfa + rule.arg)
    if rule.type == RegisterRule.VAL_OFFSET:
        return cfa + rule.arg
    if rule.type == RegisterRule.REGISTER:
        return cur.get(rule.arg)
    if rule.type == RegisterRule.SAME_VALUE:
        return cur.get(reg)
    return None                           # UNDEFINED (outermost frame), expressions: not followed


def site(frames: list[Frame]) -> Frame | None:
    """The call site: the innermost frame outside the C runtime (the code that asked)."""
    for f in frames:
        if not f.runtime:
            return f
    return frames[0] if frames else None


def caller(frames: list[Frame], at: Frame | None) -> Frame | None:
    """Who called into the site's binary: the first frame after the site in another binary
    outside the C runtime (for a purge inside jemalloc, the application function that freed)."""
    if at is None or at not in frames:
        return None
    for f in frames[frames.index(at) + 1:]:
        if f.dso != at.dso and not f.runtime:
            return f
    return None
