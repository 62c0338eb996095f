"""perf.data: file mode, pipe mode (`-o -`), `--threads` directories, `-z` compression.

Modules, lowest first (each imports only those above it)::

    layout.py    the on-disk layouts, declared as data (perf.data-file-format.txt, perf_event.h)
    tracing.py   HEADER_TRACING_DATA: tracepoint formats (field offsets of RAW payloads)
    errors.py    error positions; low-level decode errors -> one-line TraceFormatError
    kernel_abi.py  the compiled kernels' argument tables, status codes and buffer views (no numba)
    kernels.py   compiled: the record-header walk and the fixed-layout sample decoder (callers take
                 them from replay.aot.kernels(): compiled ahead of time, or numba's JIT)
    samples.py   where each field of a SAMPLE record sits (one field walk), numpy gathers
    header.py    Session: attrs, features, tracing data, side-band records, validation
    walk.py      the record walk: open_capture -> data files -> chunks of whole records
    decode.py    chunks -> RAW columns (the reader's sample decode)
    reader.py    the reader (NAME, sniff, read): decode, order by time, batch
    stacks.py    user call stacks of chosen samples (attribution), on the same walk

This package's __init__ imports nothing, so importing one module loads only what it needs.
"""
