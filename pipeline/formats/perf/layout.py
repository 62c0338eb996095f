"""perf.data layouts declared as data, in one place.

Sources: tools/perf/Documentation/perf.data-file-format.txt (file header,
features, perf's own record types), include/uapi/linux/perf_event.h (attr,
record types, sample field order) and tools/perf/util/tool.h/event.h.  Field
names follow those sources.  Every struct here is little-endian ('<'): a
byte-swapped PERFILE2 magic means a big-endian recorder, which is refused
(ptreplay models x86-64 only).
"""
from __future__ import annotations

import struct

MAGIC = b"PERFILE2"
MAGIC_SWAPPED = MAGIC[::-1]

# struct perf_header: magic, size, attr_size, attrs{offset,size}, data{..}, event_types{..}, 256-bit flags
FILE_HEADER = struct.Struct("<8sQQ QQ QQ QQ 32s")
FILE_HEADER_SIZE = 104
# struct perf_pipe_file_header: magic, size
PIPE_HEADER = struct.Struct("<8sQ")
PIPE_HEADER_SIZE = 16
SECTION = struct.Struct("<QQ")                 # struct perf_file_section {offset, size}
EVENT_HEADER = struct.Struct("<IHH")           # struct perf_event_header {type, misc, size}
EVENT_HEADER_SIZE = 8

# --- perf_event_attr: only the prefix ptreplay understands (PERF_ATTR_SIZE_VER0 = 64 bytes) ---
ATTR_SIZE_VER0 = 64
ATTR_FIELDS = {                                # name: (offset, struct code)
    "type": (0, "I"), "size": (4, "I"), "config": (8, "Q"), "sample_period": (16, "Q"),
    "sample_type": (24, "Q"), "read_format": (32, "Q"), "flags": (40, "Q"), "clockid": (92, "i"),
    "branch_sample_type": (72, "Q"), "sample_regs_user": (80, "Q"), "sample_stack_user": (88, "I"),
}
ATTR_FLAG_BITS = {"freq": 10, "sample_id_all": 18, "use_clockid": 25, "write_backward": 27}
PERF_TYPE_SOFTWARE, PERF_TYPE_TRACEPOINT = 1, 2
PERF_COUNT_SW_DUMMY = 9

CLOCK_NAMES = {0: "CLOCK_REALTIME", 1: "CLOCK_MONOTONIC", 4: "CLOCK_MONOTONIC_RAW",
               7: "CLOCK_BOOTTIME", 11: "CLOCK_TAI"}

# --- record types (enum perf_event_type and perf's user types) ---
REC = dict(MMAP=1, LOST=2, COMM=3, EXIT=4, THROTTLE=5, UNTHROTTLE=6, FORK=7, READ=8, SAMPLE=9,
           MMAP2=10, LOST_SAMPLES=13,
           HEADER_ATTR=64, HEADER_EVENT_TYPE=65, HEADER_TRACING_DATA=66, HEADER_BUILD_ID=67,
           FINISHED_ROUND=68, ID_INDEX=69, EVENT_UPDATE=78, TIME_CONV=79, HEADER_FEATURE=80,
           COMPRESSED=81, FINISHED_INIT=82, COMPRESSED2=83)
PERF_RECORD_MISC_COMM_EXEC = 1 << 13
PERF_RECORD_MISC_MMAP_BUILD_ID = 1 << 14
EVENT_UPDATE_NAME = 1                          # struct perf_record_event_update: type, id, then name

# Record bodies after the 8-byte header (perf_event.h), before any sample_id trailer.
TASK_BODY = struct.Struct("<IIIIQ")            # FORK/EXIT: pid, ppid, tid, ptid, time
COMM_BODY = struct.Struct("<II")               # COMM: pid, tid, then char comm[]
MMAP2_BODY = struct.Struct("<IIQQQ")           # MMAP2: pid, tid, addr, len, pgoff
MMAP2_INODE = struct.Struct("<IIQQ")           #   union: maj, min, ino, ino_generation
MMAP2_BUILD_ID = struct.Struct("<B3x20s")      #   or: build_id_size, reserved, build_id[20]
MMAP2_TAIL = struct.Struct("<II")              #   then prot, flags, char filename[]
MMAP2_FILENAME_AT = 8 + MMAP2_BODY.size + MMAP2_INODE.size + MMAP2_TAIL.size
LOST_BODY = struct.Struct("<QQ")               # LOST: id, lost
LOST_SAMPLES_BODY = struct.Struct("<Q")        # LOST_SAMPLES: lost
COMPRESSED2_BODY = struct.Struct("<Q")         # COMPRESSED2: data_size, then data (padded)

# --- PERF_SAMPLE_* bits and the order of fields in a SAMPLE record ---
SAMPLE = dict(IP=1 << 0, TID=1 << 1, TIME=1 << 2, ADDR=1 << 3, READ=1 << 4, CALLCHAIN=1 << 5,
              ID=1 << 6, CPU=1 << 7, PERIOD=1 << 8, STREAM_ID=1 << 9, RAW=1 << 10,
              BRANCH_STACK=1 << 11, REGS_USER=1 << 12, STACK_USER=1 << 13, IDENTIFIER=1 << 16)
# After RAW (only the attribution pass reads these): branch stack, user registers, user stack dump.
SAMPLE_ORDER_AFTER_RAW = ["BRANCH_STACK", "REGS_USER", "STACK_USER"]
PERF_SAMPLE_BRANCH_HW_INDEX = 1 << 17          # branch_sample_type: a u64 hw_idx before the entries
BRANCH_ENTRY_SIZE = 24                         # struct perf_branch_entry: from, to, flags
# Callchain context markers (enum perf_callchain_context): values >= PERF_CONTEXT_MAX as u64.
PERF_CONTEXT_USER = (1 << 64) - 512
PERF_CONTEXT_MAX = (1 << 64) - 4095
# PERF_SAMPLE_REGS_USER bit -> x86-64 register (enum perf_event_x86_regs).
X86_PERF_REGS = ["ax", "bx", "cx", "dx", "si", "di", "bp", "sp", "ip", "flags", "cs", "ss", "ds", "es",
                 "fs", "gs", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]
# (bit name, bytes) in record order up to RAW; None = variable length (handled by the decoder).
SAMPLE_ORDER = [("IDENTIFIER", 8), ("IP", 8), ("TID", 8), ("TIME", 8), ("ADDR", 8), ("ID", 8),
                ("STREAM_ID", 8), ("CPU", 8), ("PERIOD", 8), ("READ", None), ("CALLCHAIN", None),
                ("RAW", None)]
# sample_id trailer appended to non-sample records when attr.sample_id_all is set, in order.
SAMPLE_ID_ORDER = [("TID", 8), ("TIME", 8), ("ID", 8), ("STREAM_ID", 8), ("CPU", 8), ("IDENTIFIER", 8)]
READ_FORMAT = dict(TOTAL_TIME_ENABLED=1 << 0, TOTAL_TIME_RUNNING=1 << 1, ID=1 << 2, GROUP=1 << 3,
                   LOST=1 << 4)


def read_block_size(read_format: int, nr=1):
    """Bytes of a PERF_SAMPLE_READ block (perf_event.h `struct read_format`); `nr` is the
    value count a GROUP block starts with (its own u64 included in the size)."""
    rf = READ_FORMAT
    times = 8 * (bool(read_format & rf["TOTAL_TIME_ENABLED"]) + bool(read_format & rf["TOTAL_TIME_RUNNING"]))
    per_value = 8 * (1 + bool(read_format & rf["ID"]) + bool(read_format & rf["LOST"]))
    if read_format & rf["GROUP"]:
        return 8 + times + nr * per_value
    return times + per_value

# --- header features (enum perf_header_feature, tools/perf/util/header.h) ---
FEAT = dict(TRACING_DATA=1, BUILD_ID=2, HOSTNAME=3, OSRELEASE=4, VERSION=5, ARCH=6, NRCPUS=7,
            CPUDESC=8, CPUID=9, TOTAL_MEM=10, CMDLINE=11, EVENT_DESC=12, CLOCKID=23,
            DIR_FORMAT=24, COMPRESSED=27, CLOCK_DATA=29)
FEAT_STRINGS = {"HOSTNAME": "host", "OSRELEASE": "kernel_release", "VERSION": "perf_version",
                "ARCH": "arch"}

# --- HEADER_TRACING_DATA (tools/perf/util/trace-event-read.c) ---
TRACING_MAGIC = b"\x17\x08\x44tracing"

# --- how tracepoint fields become RAW columns (see pipeline/formats/base.py) ---
# event name -> {RAW column: tracepoint field}; sys_enter_*/sys_exit_* and generic events are rules.
EVENT_FIELDS = {
    "page_fault_user": {"a0": "address", "a1": "ip", "a2": "error_code"},
    "page_fault_kernel": {"a0": "address", "a1": "ip", "a2": "error_code"},
    "sched_process_fork": {"a0": "child_pid", "comm": "child_comm"},
    "sched_process_exec": {"a0": "pid", "a1": "old_pid", "comm": "filename"},
    "sched_process_exit": {"comm": "comm"},
    "exit_mmap": {},
    "count_memcg_events": {"a0": "item", "a1": "val"},
}
FAULT_EVENTS = ("exceptions:page_fault_user", "exceptions:page_fault_kernel")
