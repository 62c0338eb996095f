-- savings: what each policy saves against `none`, per process (one row per trace, pid, policy).
CREATE OR REPLACE VIEW savings AS
SELECT
    s.trace_id,                                        -- capture identifier
    s.pid,                                             -- process id
    s.comm,                                            -- command name
    s.policy,                                          -- reclaim policy spec
    n.final_vmpte_bytes AS none_vmpte_bytes,           -- bytes: final VmPTE with no reclaim (kernels < 6.14)
    s.final_vmpte_bytes AS policy_vmpte_bytes,         -- bytes: final VmPTE under this policy
    s.ideal_pte_bytes,                                 -- bytes: tables needed to map the final resident pages
    n.final_vmpte_bytes - s.final_vmpte_bytes AS saved_bytes,            -- bytes: final VmPTE saved
    CASE WHEN n.final_vmpte_bytes > 0
         THEN 100.0 * (n.final_vmpte_bytes - s.final_vmpte_bytes) / n.final_vmpte_bytes END AS saved_pct,  -- percent of none's final VmPTE
    n.peak_vmpte_bytes - s.peak_vmpte_bytes AS peak_saved_bytes,         -- bytes: peak VmPTE saved
    n.mean_vmpte_bytes - s.mean_vmpte_bytes AS mean_saved_bytes,         -- bytes: time-weighted mean VmPTE saved
    'VmPTE ' || format_bytes(n.final_vmpte_bytes) || ' under none -> ' || format_bytes(s.final_vmpte_bytes)
        || ' under ' || s.policy || '; ideal ' || format_bytes(s.ideal_pte_bytes) AS line  -- the seed's sentence
FROM summary s
JOIN summary n ON n.trace_id = s.trace_id AND n.pid = s.pid AND n.policy = 'none';
