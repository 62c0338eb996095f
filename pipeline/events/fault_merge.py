"""Compiled kernel of normalize: the fault rows of a raw batch and the slots of its other rows, in one pass.

Plain arrays in, plain arrays out (`Normalizer._merge` validates, converts and calls it, taking it
from `replay.aot.kernels()`: compiled ahead of time, or as here under numba's JIT).  Kept apart so
importing normalize compiles nothing; it serves every capture format.
"""
from __future__ import annotations

import numpy as np

from ptreplay.pipeline.formats.base import NOT_FAULT, USER_FAULT     # fault_kind codes
from ptreplay.replay.jit import njit


@njit(nogil=True)
def merge_faults(t_ns, seq, pid, tid, cpu, addr, ip, error_code, code, fault_kind, user_limit, fault_code,
                 s_t_ns, s_seq, o_t_ns, o_seq, o_pid, o_tid, o_cpu, o_kind, o_addr, o_ip, o_error_code,
                 o_user_mode, at):
    """Write the fault rows of one raw batch (sorted by t_ns, seq) and make room for the
    other rows (s_t_ns, s_seq: sorted), in (t_ns, seq) order, into the o_* columns.

    A row is a fault if fault_kind[code] is USER_FAULT or KERNEL_FAULT (user_mode is the
    former) and addr < user_limit; a fault row holds its raw t_ns, seq, pid, tid, cpu,
    addr (a0), ip (a1), error_code (a2, low 32 bits), kind `fault_code`.  Other row k goes
    before every fault row with a larger (t_ns, seq) and after its equals' others; its slot
    is at[k] (the caller fills it).  o_* hold at least (faults + others) rows.
    Returns (rows written, faults on kernel addresses dropped).
    """
    n = len(t_ns)
    ns = len(s_t_ns)
    j = 0
    k = 0
    dropped = 0
    for i in range(n):
        f = fault_kind[code[i]]
        if f == NOT_FAULT:
            continue
        if addr[i] >= user_limit:
            dropped += 1
            continue
        t = t_ns[i]
        s = seq[i]
        while k < ns and (s_t_ns[k] < t or (s_t_ns[k] == t and s_seq[k] <= s)):
            at[k] = j
            j += 1
            k += 1
        o_t_ns[j] = t
        o_seq[j] = s
        o_pid[j] = pid[i]
        o_tid[j] = tid[i]
        o_cpu[j] = cpu[i]
        o_kind[j] = fault_code
        o_addr[j] = addr[i]
        o_ip[j] = ip[i]
        o_error_code[j] = np.int32(np.int64(error_code[i] & np.uint64(0xFFFFFFFF)) - (
            np.int64(1) << 32 if error_code[i] & np.uint64(0x80000000) else 0))
        o_user_mode[j] = f == USER_FAULT
        j += 1
    while k < ns:
        at[k] = j
        j += 1
        k += 1
    return j, dropped


@njit(nogil=True)
def split_faults(t_ns, seq, pid, tid, cpu, addr, ip, error_code, code, fault_kind, user_limit,
                 s_t_ns, s_seq, o_t_ns, o_pid, o_tid, o_cpu, o_addr, o_ip, o_error_code, o_user_mode, at):
    """`merge_faults` for the events/2 layout: the fault rows, in order, packed into the o_*
    columns (the EVENT_FAULTS columns: no kind, no seq), and in at[k] the row other row k
    takes in the whole stream (the slot merge_faults would leave it).
    Returns (fault rows written, faults on kernel addresses dropped).
    """
    n = len(t_ns)
    ns = len(s_t_ns)
    j = 0
    k = 0
    dropped = 0
    for i in range(n):
        f = fault_kind[code[i]]
        if f == NOT_FAULT:
            continue
        if addr[i] >= user_limit:
            dropped += 1
            continue
        t = t_ns[i]
        s = seq[i]
        while k < ns and (s_t_ns[k] < t or (s_t_ns[k] == t and s_seq[k] <= s)):
            at[k] = j + k
            k += 1
        o_t_ns[j] = t
        o_pid[j] = pid[i]
        o_tid[j] = tid[i]
        o_cpu[j] = cpu[i]
        o_addr[j] = addr[i]
        o_ip[j] = ip[i]
        o_error_code[j] = np.int32(np.int64(error_code[i] & np.uint64(0xFFFFFFFF)) - (
            np.int64(1) << 32 if error_code[i] & np.uint64(0x80000000) else 0))
        o_user_mode[j] = f == USER_FAULT
        j += 1
    while k < ns:
        at[k] = j + k
        k += 1
    return j, dropped
