-- fleet rollups: savings summed by host, by command and by kernel (one row per group and policy).
CREATE OR REPLACE VIEW _summary_with_capture AS
SELECT s.*, m.host, m.kernel_release                  -- summary joined to its capture's host and kernel
FROM summary s LEFT JOIN metadata m USING (trace_id);

CREATE OR REPLACE VIEW fleet_by_host AS
SELECT host,                                          -- traced machine
       policy,                                        -- reclaim policy spec
       count(*) AS processes,                         -- count: processes replayed
       sum(final_vmpte_bytes) AS vmpte_bytes,         -- bytes: final VmPTE under this policy
       sum(vmpte_saved_bytes) AS saved_bytes,         -- bytes: final VmPTE saved against none
       sum(ideal_pte_bytes) AS ideal_bytes            -- bytes: tables needed for the resident pages
FROM _summary_with_capture GROUP BY ALL;

CREATE OR REPLACE VIEW fleet_by_comm AS
SELECT comm,                                          -- command name
       policy,                                        -- reclaim policy spec
       count(*) AS processes,                         -- count: processes replayed
       sum(final_vmpte_bytes) AS vmpte_bytes,         -- bytes: final VmPTE under this policy
       sum(vmpte_saved_bytes) AS saved_bytes,         -- bytes: final VmPTE saved against none
       sum(ideal_pte_bytes) AS ideal_bytes            -- bytes: tables needed for the resident pages
FROM _summary_with_capture GROUP BY ALL;

CREATE OR REPLACE VIEW fleet_by_kernel AS
SELECT kernel_release,                                -- uname -r of the traced machine
       policy,                                        -- reclaim policy spec
       count(*) AS processes,                         -- count: processes replayed
       sum(final_vmpte_bytes) AS vmpte_bytes,         -- bytes: final VmPTE under this policy
       sum(vmpte_saved_bytes) AS saved_bytes,         -- bytes: final VmPTE saved against none
       sum(ideal_pte_bytes) AS ideal_bytes            -- bytes: tables needed for the resident pages
FROM _summary_with_capture GROUP BY ALL;
