-- top_sites: call sites ranked by the empty PTE-table bytes they leave behind, per capture and policy
-- (rows of `attribution`, written by `ptreplay attribute`, summed over processes, kinds and stacks).
CREATE OR REPLACE VIEW top_sites AS
SELECT
    trace_id,                                                     -- capture identifier
    policy,                                                       -- reclaim policy spec
    site,                                                         -- function (innermost frame outside the C runtime), or file+0xoffset
    site_dso,                                                     -- file name of the binary holding the site
    string_agg(DISTINCT kind, ',' ORDER BY kind) AS kinds,        -- event kinds seen at the site
    arg_max(caller, empty_pte_bytes + pte_tables_allocated) AS top_caller,  -- the caller with the most empty bytes (then allocations)
    sum(events)::BIGINT AS events,                                -- count: events that allocated, emptied or freed a PTE table
    sum(pte_tables_allocated)::BIGINT AS pte_tables_allocated,    -- count: PTE tables allocated (faults)
    sum(pte_tables_emptied)::BIGINT AS pte_tables_emptied,        -- count: PTE tables emptied and left allocated
    sum(empty_pte_bytes)::BIGINT AS empty_pte_bytes,              -- bytes: those tables, 4 KiB each
    sum(empty_byte_seconds) AS empty_byte_seconds,                -- byte-seconds: how long they stayed empty
    rank() OVER (PARTITION BY trace_id, policy
                 ORDER BY sum(empty_pte_bytes) DESC, sum(pte_tables_allocated) DESC) AS rank  -- 1 = most empty bytes
FROM attribution
GROUP BY trace_id, policy, site, site_dso;
