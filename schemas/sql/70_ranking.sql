-- process_ranking: processes ranked by what each policy would save (one row per trace, policy, pid);
-- for host recordings (`record -a`): which of the host's processes a policy helps, and how much.
CREATE OR REPLACE VIEW process_ranking AS
SELECT
    v.trace_id,                                        -- capture identifier
    v.policy,                                          -- reclaim policy spec
    rank() OVER (PARTITION BY v.trace_id, v.policy
                 ORDER BY v.saved_bytes DESC, v.pid) AS policy_rank,       -- 1 = saves the most under this policy
    v.pid,                                             -- process id
    v.comm,                                            -- command name
    v.none_vmpte_bytes,                                -- bytes: final VmPTE with no reclaim
    v.policy_vmpte_bytes,                              -- bytes: final VmPTE under this policy
    v.ideal_pte_bytes,                                 -- bytes: tables needed to map the final resident pages
    v.saved_bytes,                                     -- bytes: final VmPTE saved against none
    v.saved_pct,                                       -- percent of none's final VmPTE
    CASE WHEN sum(v.saved_bytes) OVER w > 0
         THEN 100.0 * v.saved_bytes / sum(v.saved_bytes) OVER w END AS saved_share_pct,  -- percent of the policy's saving over the whole trace
    sum(v.saved_bytes) OVER w AS trace_saved_bytes     -- bytes: the policy's saving summed over the trace's processes
FROM savings v
WINDOW w AS (PARTITION BY v.trace_id, v.policy);
