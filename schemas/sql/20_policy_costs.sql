-- policy_costs: what each policy costs for what it saves, per process and policy.
CREATE OR REPLACE VIEW policy_costs AS
SELECT
    s.trace_id,                                   -- capture identifier
    s.pid,                                        -- process id
    s.comm,                                       -- command name
    s.policy,                                     -- reclaim policy spec
    s.pte_tables_allocated,                       -- count: PTE tables allocated
    s.pte_tables_freed,                           -- count: PTE tables freed
    s.refaults,                                   -- count: tables re-allocated < 1 s after being freed
    s.scan_entries,                               -- count: PTE entries a scanner examined
    s.extra_atomics,                              -- count: extra atomic operations (refcount-like policies)
    s.vmpte_saved_bytes AS saved_bytes,           -- bytes: final VmPTE saved against none
    CASE WHEN s.vmpte_saved_bytes > 0
         THEN s.refaults / (s.vmpte_saved_bytes / 1073741824.0) END AS refaults_per_gb_saved,       -- count per GiB saved
    CASE WHEN s.vmpte_saved_bytes > 0
         THEN s.scan_entries / (s.vmpte_saved_bytes / 1073741824.0) END AS scan_entries_per_gb_saved, -- count per GiB saved
    CASE WHEN s.vmpte_saved_bytes > 0
         THEN s.extra_atomics / (s.vmpte_saved_bytes / 1073741824.0) END AS atomics_per_gb_saved     -- count per GiB saved
FROM summary s;
