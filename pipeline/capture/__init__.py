"""Capture: record a workload with perf plus the kernel's own truth (record), and what the machine is (machine)."""
