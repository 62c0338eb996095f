"""Options of each SYNTHETIC stream kind (`ptreplay synth KIND`), import-light for the CLI parser.

kind -> (help, [(option, type, default, help)]); option names are the keywords of the kind's
generator in replay.synth (which holds the generators and the arithmetic).
"""
from __future__ import annotations

KIND_OPTIONS = {
    "seed-loop": ("workloads/seed_loop.c: fault 2 MiB, DONTNEED it (in --split pieces)", [
        ("gib", int, 50, "GiB mapped"), ("iters", int, 25600, "2 MiB chunks faulted and released"),
        ("split", int, 1, "DONTNEED each chunk in this many pieces (2+: pt_reclaim frees nothing)")]),
    "production": ("the seed's production process (VIRT 55T, RES 590G, VmPTE ~110G at --scale 1)", [
        ("virt", str, "55T", "VIRT at scale 1"), ("res", str, "590G", "RES at the end, at scale 1"),
        ("churn", float, 1.0, "sweeps over the non-resident regions (each: fault --touch pages, DONTNEED)"),
        ("scale", float, 1.0, "multiplies VIRT, RES and so the event count"),
        ("touch", int, 464, "pages faulted per region per sweep (464: ~134 M faults at --scale 0.01)"),
        ("aligned", float, 0.5, "share of purges that are one aligned 2 MiB DONTNEED (pt_reclaim frees those only)"),
        ("chunk", str, "64G", "size of each mmap")]),
    "jemalloc": ("jemalloc-like extent purging (2-4 MiB extents, page-granular DONTNEED)", [
        ("arenas", int, 4, "arenas"), ("arena_gib", int, 1, "GiB per arena"),
        ("extents", int, 4000, "extent allocations"), ("live", int, 32, "allocations before an extent is purged")]),
    "tcmalloc": ("tcmalloc-like span release (8 KiB - 1 MiB spans)", [
        ("spans", int, 50000, "span allocations"), ("live", int, 1000, "allocations before a span is released"),
        ("heap_gib", int, 4, "GiB of page heap")]),
    "swapout": ("threads fault single pages while a zapper DONTNEEDs whole regions (refault at once)", [
        ("threads", int, 4, "faulting threads"), ("regions", int, 64, "2 MiB regions"),
        ("steps", int, 2000, "zaps"), ("faults_per_step", int, 256, "faults between zaps"),
        ("refault", float, 0.5, "share of a step's faults in the region just zapped")]),
    "balloon": ("balloon inflation: DONTNEED in 2 MiB steps, then refault", [
        ("gib", float, 1.0, "GiB of balloon"), ("rounds", int, 4, "inflate + deflate rounds")]),
    "many-procs": ("N processes forked by a launcher, each a small seed-like loop plus faults outside its mappings", [
        ("procs", int, 3000, "child processes"), ("iters", int, 4, "2 MiB chunks each child faults and releases"),
        ("outside", int, 16, "pages each child faults outside every mapping (implicit VMAs)"),
        ("live", int, 0, "children alive at once (0: all)"),
        ("burst", int, 256, "events a child runs before the next one's turn"),
        ("one_pid", int, 0, "1: one process runs the children's programs one after another, exec between")]),
}
