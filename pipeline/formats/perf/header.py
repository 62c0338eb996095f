"""A perf.data capture's session: attrs, header features, tracing data, side-band records.

`Session` holds what the header says (file mode: the attrs section and feature
sections, `read_file_header`; pipe mode: HEADER_ATTR / HEADER_FEATURE /
HEADER_TRACING_DATA records as they come), links attrs to their tracepoint
formats, refuses what cannot be replayed (`validate`) and decodes the non-sample
records (`side_record`: FORK, EXIT, COMM rows; MMAP2 and LOST into `meta`).
Named after perf's own `struct perf_session` (tools/perf/util/session.c).
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ptreplay.pipeline.formats.perf import layout as L
from ptreplay.pipeline.formats.perf.errors import Where, fail
from ptreplay.pipeline.formats.perf.samples import SampleIdLayout, SampleLayout
from ptreplay.pipeline.formats.perf.tracing import TraceFormat, parse_tracing_data

NAME = "perf.data"
COLS_U64 = ("a0", "a1", "a2", "a3", "a4", "a5")


# ----------------------------------------------------------------------------- attrs

class Attr:
    """One perf_event_attr (only the prefix in L.ATTR_FIELDS) plus its sample ids and names."""

    def __init__(self, raw: bytes, ids, index: int):
        for name, (off, code) in L.ATTR_FIELDS.items():
            if off + struct.calcsize(code) <= len(raw):
                setattr(self, name, struct.unpack_from("<" + code, raw, off)[0])
            else:
                setattr(self, name, 0)
        self.ids = list(ids)
        self.index = index
        self.name = ""            # 'system:event' from EVENT_DESC / EVENT_UPDATE
        self.fmt: TraceFormat | None = None
        self.plan = None          # [(column, Field)] for tracepoints

    def flag(self, name: str) -> bool:
        return bool(self.flags >> L.ATTR_FLAG_BITS[name] & 1)

    def has(self, bit: str) -> bool:
        return bool(self.sample_type & L.SAMPLE[bit])

    @property
    def dummy(self) -> bool:
        return self.type == L.PERF_TYPE_SOFTWARE and self.config == L.PERF_COUNT_SW_DUMMY

    @property
    def sampled(self) -> bool:
        """freq mode or a period above 1: not every event was recorded."""
        return not self.dummy and (self.flag("freq") or self.sample_period > 1)

    @property
    def event(self) -> str:
        """RAW `event`: the tracepoint name without its system."""
        if self.fmt is not None:
            return self.fmt.name
        return self.name.split(":")[-1] if self.name else f"attr{self.index}"

    @property
    def full_name(self) -> str:
        if self.fmt is not None:
            return f"{self.fmt.system}:{self.fmt.name}"
        return self.name or f"type{self.type}:config{self.config}"

    @property
    def layout(self) -> SampleLayout | None:
        """The fixed layout of this attr's samples (None: variable), once its format is known."""
        if not hasattr(self, "_layout"):
            self._layout = SampleLayout.of(self)
        return self._layout


def column_plan(fmt: TraceFormat) -> list:
    """[(RAW column, Field)] for one tracepoint, per the table in pipeline/formats/base.py."""
    name = fmt.name
    fields = fmt.event_fields
    if name in L.EVENT_FIELDS:
        plan = [(col, fmt.get(fname)) for col, fname in L.EVENT_FIELDS[name].items()]
        return [(c, f) for c, f in plan if f is not None]
    if name.startswith("sys_enter_"):
        args = [f for f in fields if f.name != "__syscall_nr" and f.integer]
        return list(zip(COLS_U64, args))
    if name.startswith("sys_exit_"):
        ret = fmt.get("ret")
        return [("ret", ret)] if ret is not None else []
    return list(zip(COLS_U64, [f for f in fields if f.integer]))


# ----------------------------------------------------------------------------- the session

class Session:
    """State of one capture: attrs, formats, interned strings, metadata, counters."""

    def __init__(self, path: Path, opener, allow_sampled: bool):
        self.path = path
        self.opener = opener or (lambda p: open(p, "rb"))
        self.allow_sampled = allow_sampled
        self.attrs: list[Attr] = []
        self.formats: dict[int, TraceFormat] = {}
        self.have_tracing = False
        self.events: list[str] = []          # interned event names (frame 'ev' codes)
        self._event_code: dict[str, int] = {}
        self.comms: list[str] = []           # interned comm strings (frame 'comm' codes)
        self._comm_code: dict[str, int] = {}
        self.meta = {"source_format": NAME, "host": None, "kernel_release": None, "arch": None,
                     "nr_cpus": None, "perf_version": None, "command_line": None, "clock": None,
                     "lost_events": 0, "lost_samples": 0, "sampled": False, "events_by_name": {},
                     "mmap2": [], "warnings": []}
        self.id_lut = np.full(1, -1, np.int64)   # sample id -> attr index (-1: none)
        self.validated = False
        self._sid = None
        self.where = Where(path)

    # ---- interning
    def event_code(self, name: str) -> int:
        if name not in self._event_code:
            self._event_code[name] = len(self.events)
            self.events.append(name)
        return self._event_code[name]

    def comm_code(self, s: str) -> int:
        if s not in self._comm_code:
            self._comm_code[s] = len(self.comms)
            self.comms.append(s)
        return self._comm_code[s]

    # ---- header pieces shared by file and pipe mode
    def add_attr(self, raw: bytes, ids, at: int):
        size = struct.unpack_from("<I", raw, 4)[0] if len(raw) >= 8 else 0
        if size < L.ATTR_SIZE_VER0 or size > len(raw):
            fail(self.path, at, f"perf_event_attr size {size} does not fit its {len(raw)}-byte "
                                f"entry (expected {L.ATTR_SIZE_VER0}..{len(raw)})")
        self.attrs.append(Attr(raw[:size], ids, len(self.attrs)))

    def feature(self, feat: int, blob: bytes, at: int):
        """Apply one header feature (file-mode section or pipe-mode HEADER_FEATURE payload)."""
        names = {v: k for k, v in L.FEAT.items()}
        name = names.get(feat)
        if name in L.FEAT_STRINGS:
            self.meta[L.FEAT_STRINGS[name]] = header_string(blob, 0, self.path, at)[0]
        elif name == "NRCPUS" and len(blob) >= 8:
            online, avail = struct.unpack_from("<II", blob)
            self.meta["nr_cpus"] = avail or online
        elif name == "CMDLINE":
            self.meta["command_line"] = " ".join(string_list(blob, self.path, at)).strip()
        elif name == "EVENT_DESC":
            self.event_desc(blob, at)
        elif name == "TRACING_DATA":
            self.tracing(blob, at)

    def event_desc(self, blob: bytes, at: int):
        """HEADER_EVENT_DESC: u32 nr, u32 attr_size, then {attr, u32 nr_ids, string, u64 ids[]}."""
        if len(blob) < 8:
            fail(self.path, at, "EVENT_DESC feature shorter than its 8-byte header")
        nr, attr_size = struct.unpack_from("<II", blob)
        p, names = 8, {}
        for _ in range(nr):
            if p + attr_size + 4 > len(blob):
                fail(self.path, at + p, "EVENT_DESC entry runs past the feature section")
            nr_ids = struct.unpack_from("<I", blob, p + attr_size)[0]
            name, p = header_string(blob, p + attr_size + 4, self.path, at)
            if p + 8 * nr_ids > len(blob):
                fail(self.path, at + p, f"EVENT_DESC lists {nr_ids} ids past the feature section")
            for i in struct.unpack_from(f"<{nr_ids}Q", blob, p):
                names[i] = name
            p += 8 * nr_ids
        for a in self.attrs:
            for i in a.ids:
                if i in names:
                    a.name = names[i]

    def tracing(self, blob: bytes, at: int):
        formats, info = parse_tracing_data(blob, self.path, at)
        self.formats.update(formats)
        self.have_tracing = True
        self.meta.setdefault("tracing", info)

    # ---- once all header information is known
    def validate(self):
        """Link attrs to formats, build the id -> attr index, refuse what cannot be replayed."""
        if self.validated:
            return
        self.validated = True
        path = self.path
        if not self.attrs:
            fail(path, 0, "no perf_event_attr in the capture (expected an attrs section or HEADER_ATTR records)")
        arch = self.meta.get("arch")
        if arch and arch != "x86_64":
            fail(path, 0, f"recorded on {arch}; ptreplay models x86_64 page tables only")
        tracepoints = [a for a in self.attrs if a.type == L.PERF_TYPE_TRACEPOINT]
        if tracepoints and not self.have_tracing:
            fail(path, 0, "tracepoint events but no tracing data (feature TRACING_DATA / "
                          "HEADER_TRACING_DATA record); was the capture cut short?")
        for a in tracepoints:
            a.fmt = self.formats.get(a.config)
            if a.fmt is None:
                fail(path, 0, f"attr {a.index} ({a.name or 'tracepoint'}) has config {a.config} "
                              f"but the tracing data has no format with that ID")
            a.plan = column_plan(a.fmt)
            if a.event == "sched_process_exit":     # group_dead came with the tracepoint's move before
                self.meta["exit_traced_first"] = a.fmt.get("group_dead") is not None   # exit_mm()
        names = {a.full_name for a in self.attrs}
        if not any(n in names for n in L.FAULT_EVENTS):
            fail(path, 0, "no page-fault events in the capture (found: "
                          f"{', '.join(sorted(names)) or 'none'}); record with "
                          "-e exceptions:page_fault_user -e exceptions:page_fault_kernel")
        sampled = [a for a in self.attrs if a.sampled]
        self.meta["sampled"] = bool(sampled)
        if sampled:
            msg = (f"sampled capture: {', '.join(a.full_name for a in sampled)} recorded with "
                   f"{'frequency' if sampled[0].flag('freq') else 'period'} {sampled[0].sample_period}, "
                   "not every event (record with -c 1, no -F)")
            if not self.allow_sampled:
                fail(path, 0, msg + "; pass allow_sampled=True to read it anyway")
            self.meta["warnings"].append(msg)
        if any(a.flag("write_backward") for a in self.attrs):
            self.meta["warnings"].append("overwrite (write_backward) buffers: older events may be missing")
        a0 = self.attrs[0]
        self.meta["clock"] = (L.CLOCK_NAMES.get(a0.clockid, f"clockid {a0.clockid}")
                              if a0.flag("use_clockid") else "perf_clock")
        all_ids = [i for a in self.attrs for i in a.ids]
        if max(all_ids, default=0) > 1 << 24:
            fail(path, 0, f"sample id {max(all_ids)} is implausibly large (perf numbers ids from 1)")
        self.id_lut = np.full(max(all_ids, default=0) + 1, -1, np.int64)
        for a in self.attrs:
            self.id_lut[a.ids] = a.index

    @property
    def sid(self) -> SampleIdLayout:
        if self._sid is None:
            if not self.attrs:
                self.where.fail("a record before any perf_event_attr (HEADER_ATTR) was seen")
            self._sid = SampleIdLayout(self.attrs)
        return self._sid

    # ---- non-sample records
    def side_record(self, buf, typ: int, off: int, size: int, seq: int) -> dict | None:
        """Decode one non-sample record; return a RAW row dict for FORK/EXIT/COMM, else None."""
        R = L.REC
        body = off + 8
        if typ in (R["FORK"], R["EXIT"], R["COMM"], R["MMAP2"]):
            tr = self.sid.trailer(buf, off, size)
        if typ in (R["FORK"], R["EXIT"]):
            pid, ppid, tid, ptid, t = L.TASK_BODY.unpack_from(buf, body)
            return {"t_ns": t, "pid": pid, "tid": tid, "cpu": tr.get("cpu", -1), "seq": seq,
                    "ev": self.event_code("perf_fork" if typ == R["FORK"] else "perf_exit"),
                    "a0": pid, "a1": tid, "a2": ppid, "a3": ptid}
        if typ == R["COMM"]:
            pid, tid = L.COMM_BODY.unpack_from(buf, body)
            end = off + size - tr["_size"]
            name = bytes(buf[body + 8:end]).split(b"\0", 1)[0].decode("utf-8", "replace")
            misc = struct.unpack_from("<H", buf, off + 4)[0]
            return {"t_ns": tr.get("time", -1), "pid": pid, "tid": tid, "cpu": tr.get("cpu", -1),
                    "seq": seq, "ev": self.event_code("perf_comm"), "a0": pid, "a1": tid,
                    "a2": int(bool(misc & L.PERF_RECORD_MISC_COMM_EXEC)), "comm": self.comm_code(name)}
        if typ == R["MMAP2"]:
            self.mmap2(buf, off, size, tr)
        elif typ == R["LOST"]:
            n = L.LOST_BODY.unpack_from(buf, body)[1]
            self.meta["lost_events"] += n
            self.lost_on(buf, off, size, n, "lost_events_per_cpu")
        elif typ == R["LOST_SAMPLES"]:
            n = L.LOST_SAMPLES_BODY.unpack_from(buf, body)[0]
            self.meta["lost_samples"] += n
            self.lost_on(buf, off, size, n, "lost_samples_per_cpu")
        elif typ == R["HEADER_ATTR"]:
            attr_size = struct.unpack_from("<I", buf, body + 4)[0]
            if attr_size < L.ATTR_SIZE_VER0 or 8 + attr_size > size:
                self.where.fail(f"HEADER_ATTR with attr size {attr_size} in a {size}-byte record")
            nids = (size - 8 - attr_size) // 8
            ids = struct.unpack_from(f"<{nids}Q", buf, body + attr_size)
            self.add_attr(bytes(buf[body:body + attr_size]), ids, off)
        elif typ == R["HEADER_TRACING_DATA"]:
            payload = struct.unpack_from("<I", buf, body)[0]
            self.tracing(bytes(buf[off + size:off + size + payload]), off + size)
        elif typ == R["HEADER_FEATURE"]:
            feat = struct.unpack_from("<Q", buf, body)[0]
            self.feature(feat, bytes(buf[body + 8:off + size]), off + 16)
        elif typ == R["EVENT_UPDATE"]:
            kind, ident = struct.unpack_from("<QQ", buf, body)
            if kind == L.EVENT_UPDATE_NAME:
                name = bytes(buf[body + 16:off + size]).split(b"\0", 1)[0].decode("utf-8", "replace")
                for a in self.attrs:
                    if ident in a.ids:
                        a.name = name
        return None

    def lost_on(self, buf, off: int, size: int, n: int, key_name: str) -> None:
        """meta['lost_events_per_cpu'] (LOST records) and ['lost_samples_per_cpu'] (LOST_SAMPLES):
        the counts by the CPU of the ring buffer that lost them (the record's sample_id trailer;
        "?" when the capture has no CPU there)."""
        cpu = self.sid.trailer(buf, off, size).get("cpu") if self.attrs else None
        per = self.meta.setdefault(key_name, {})
        key = "?" if cpu is None else str(cpu)
        per[key] = per.get(key, 0) + int(n)

    def mmap2(self, buf, off: int, size: int, tr: dict):
        """MMAP2 -> meta['mmap2'] (for attribution only; never a write path)."""
        body = off + 8
        pid, tid, addr, length, pgoff = L.MMAP2_BODY.unpack_from(buf, body)
        u = body + L.MMAP2_BODY.size
        rec = {"pid": pid, "tid": tid, "addr": addr, "len": length, "pgoff": pgoff}
        misc = struct.unpack_from("<H", buf, off + 4)[0]
        if misc & L.PERF_RECORD_MISC_MMAP_BUILD_ID:
            n, bid = L.MMAP2_BUILD_ID.unpack_from(buf, u)
            rec["build_id"] = bid[:n].hex()
        else:
            rec["maj"], rec["min"], rec["ino"], _ = L.MMAP2_INODE.unpack_from(buf, u)
        end = off + size - tr["_size"]
        rec["filename"] = bytes(buf[off + L.MMAP2_FILENAME_AT:end]).split(b"\0", 1)[0].decode("utf-8", "replace")
        rec["t_ns"] = tr.get("time", -1)
        self.meta["mmap2"].append(rec)


# ----------------------------------------------------------------------------- header strings

def header_string(blob: bytes, p: int, path, at: int) -> tuple[str, int]:
    """perf_header_string: u32 len (incl. NUL, padded) + bytes -> (text, next position)."""
    if p + 4 > len(blob):
        fail(path, at + p, "header string length runs past its section")
    n = struct.unpack_from("<I", blob, p)[0]
    if p + 4 + n > len(blob):
        fail(path, at + p, f"header string of {n} bytes runs past its section ({len(blob) - p - 4} left)")
    return blob[p + 4:p + 4 + n].split(b"\0", 1)[0].decode("utf-8", "replace"), p + 4 + n


def string_list(blob: bytes, path, at: int) -> list[str]:
    if len(blob) < 4:
        fail(path, at, "string list shorter than its u32 count")
    nr, p, out = struct.unpack_from("<I", blob)[0], 4, []
    for _ in range(nr):
        s, p = header_string(blob, p, path, at)
        out.append(s)
    return out


# ----------------------------------------------------------------------------- file header

def read_file_header(r: Session, f, size: int) -> tuple[str, int, int]:
    """Parse the file or pipe header; return (mode, data offset, data size)."""
    path = r.path
    head = f.read(L.FILE_HEADER_SIZE)
    if not head:
        fail(path, 0, "empty file, expected a perf.data header (magic PERFILE2)")
    if len(head) < 16:
        fail(path, 0, f"truncated header: {len(head)} bytes, expected at least {L.PIPE_HEADER_SIZE}")
    magic, hsize = L.PIPE_HEADER.unpack_from(head)
    if magic == L.MAGIC_SWAPPED:
        fail(path, 0, "byte-swapped PERFILE2 magic: recorded on a big-endian machine; "
                      "ptreplay models x86_64 (little-endian) only")
    if magic != L.MAGIC:
        fail(path, 0, f"bad magic {magic!r}, expected {L.MAGIC!r}")
    if hsize == L.PIPE_HEADER_SIZE:
        return "pipe", L.PIPE_HEADER_SIZE, size - L.PIPE_HEADER_SIZE     # records run to the end
    if hsize != L.FILE_HEADER_SIZE or len(head) < L.FILE_HEADER_SIZE:
        fail(path, 8, f"header size {hsize} with {len(head)} bytes present, expected "
                      f"{L.FILE_HEADER_SIZE} (file) or {L.PIPE_HEADER_SIZE} (pipe)")
    (_, _, attr_size, attrs_off, attrs_size, data_off, data_size,
     _, _, flags) = L.FILE_HEADER.unpack(head)
    for name, off, sz in (("attrs", attrs_off, attrs_size), ("data", data_off, data_size)):
        if off + sz > size:
            fail(path, 24 if name == "attrs" else 40,
                 f"{name} section [{off}, {off + sz}) runs past the end of the {size}-byte file (truncated?)")
    if attr_size < L.ATTR_SIZE_VER0 + 16 or attrs_size % attr_size:
        fail(path, 16, f"attr_size {attr_size} does not divide the {attrs_size}-byte attrs section "
                       f"(expected attr.size + 16 >= {L.ATTR_SIZE_VER0 + 16})")
    f.seek(attrs_off)
    attrs = f.read(attrs_size)
    for k in range(attrs_size // attr_size):
        at = attrs_off + k * attr_size
        entry = attrs[k * attr_size:(k + 1) * attr_size]
        attr_size_field = struct.unpack_from("<I", entry, 4)[0]
        if attr_size_field != attr_size - 16:
            fail(path, at + 4, f"attr.size {attr_size_field} does not match header attr_size "
                               f"{attr_size} - 16")
        ids_off, ids_size = L.SECTION.unpack_from(entry, attr_size - 16)
        if ids_off + ids_size > size or ids_size % 8:
            fail(path, at + attr_size - 16, f"attr ids section [{ids_off}, {ids_off + ids_size}) "
                                             f"outside the {size}-byte file")
        f.seek(ids_off)
        ids = struct.unpack(f"<{ids_size // 8}Q", f.read(ids_size))
        r.add_attr(entry[:attr_size - 16], ids, at)
    read_features(r, f, flags, data_off + data_size, size)
    return "file", data_off, data_size


def read_features(r: Session, f, flags: bytes, index_off: int, size: int):
    """Feature sections: one {offset, size} per set bit, ascending, right after the data section."""
    bits = [b for b in range(256) if flags[b // 8] >> (b % 8) & 1]
    if index_off + 16 * len(bits) > size:
        fail(r.path, index_off, f"feature index of {len(bits)} entries runs past the end of the "
                                f"{size}-byte file (truncated?)")
    f.seek(index_off)
    index = f.read(16 * len(bits))
    sections = [(b, *L.SECTION.unpack_from(index, 16 * k)) for k, b in enumerate(bits)]
    # EVENT_DESC names attrs by id; TRACING_DATA before validation; order otherwise irrelevant
    for feat, off, sz in sections:
        if off + sz > size:
            fail(r.path, index_off, f"feature {feat} section [{off}, {off + sz}) runs past the "
                                     f"end of the {size}-byte file")
        f.seek(off)
        r.feature(feat, f.read(sz), off)
    r.meta["features"] = bits
