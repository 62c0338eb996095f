-- census_waste: `ptreplay census` per process, most waste first (one row per host, pid, census time).
CREATE OR REPLACE VIEW census_waste AS
SELECT
    host,                                              -- hostname the census was taken on
    pid,                                               -- process id
    comm,                                              -- command name
    state,                                             -- ok, changed, vanished, denied (see `ptreplay schema census`)
    t_ns,                                              -- ns, CLOCK_MONOTONIC: when the process was scanned
    vmpte_bytes,                                       -- bytes: the kernel's VmPTE before the scan
    needed_bytes,                                      -- bytes: tables the present and swapped pages need
    waste_bytes,                                       -- bytes: vmpte_bytes - needed_bytes
    CASE WHEN vmpte_bytes > 0 THEN 100.0 * waste_bytes / vmpte_bytes END AS waste_pct,   -- percent of VmPTE
    waste_bytes // 4096 AS waste_tables,               -- count: tables held that no page needs
    needed_pte_tables,                                 -- count: PTE tables needed
    CASE WHEN needed_pte_tables > 0
         THEN 100.0 * pte_entries / (needed_pte_tables * 512) END AS occupancy_pct,      -- percent: entries in use per needed PTE table
    (present_pages + swapped_pages) * 4096 AS mapped_bytes,                              -- bytes: present + swapped pages
    pfnmap_regions                                     -- count: regions whose PTEs pagemap cannot see (upper bound on waste tables in use)
FROM census
ORDER BY waste_bytes DESC NULLS LAST, host, pid;

-- census_by_comm: the census rolled up per host and command name.
CREATE OR REPLACE VIEW census_by_comm AS
SELECT
    host,                                              -- hostname
    comm,                                              -- command name
    count(*) AS processes,                             -- count: processes with this name
    count(*) FILTER (WHERE state <> 'ok') AS not_ok,   -- count: of them changed, vanished or denied
    sum(vmpte_bytes)::BIGINT AS vmpte_bytes,           -- bytes: summed VmPTE
    sum(needed_bytes)::BIGINT AS needed_bytes,         -- bytes: summed tables needed
    sum(waste_bytes)::BIGINT AS waste_bytes            -- bytes: summed waste
FROM census
GROUP BY host, comm
ORDER BY waste_bytes DESC NULLS LAST, host, comm;

-- census_by_mapping: per host and mapping name (file, [heap], [stack], '' ...), summed over processes.
CREATE OR REPLACE VIEW census_by_mapping AS
SELECT
    host,                                              -- hostname
    name,                                              -- the maps pathname ('' = anonymous)
    kind,                                              -- file, anon or special
    count(DISTINCT pid) AS processes,                  -- count: processes mapping it
    count(*) AS vmas,                                  -- count: VMAs
    sum(size_bytes)::BIGINT AS size_bytes,             -- bytes: summed VMA sizes (VIRT)
    sum(present_pages)::BIGINT * 4096 AS present_bytes,   -- bytes: present pages
    sum(pte_tables)::BIGINT AS pte_tables,             -- count: needed PTE tables whose first page lies here
    sum(pte_tables)::BIGINT * 4096 AS pte_bytes,       -- bytes: those tables
    sum(pagefree_regions)::BIGINT AS pagefree_regions  -- count: 2 MiB regions without a page: where empty tables can be
FROM census_vmas
GROUP BY host, name, kind
ORDER BY pte_tables DESC, host, name;
