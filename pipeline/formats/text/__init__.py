"""Text captures: `perf script` output, tracefs `trace`/`trace_pipe` (ftrace), `trace-cmd report`.

    scan.py          the compiled line scanner, one step per part of a line (numba, on first use)
    reader.py        read_text: blocks of lines -> scan -> checks -> RAW tables (TextFormat says
                     what differs between the formats)
    perf_script.py, ftrace.py, tracecmd.py   the readers (NAME, sniff, read): one TextFormat each

This package's __init__ imports nothing.
"""
