-- fleet rollups: savings summed by host, by command and by kernel (one row per group and policy).
CREATE OR REPLACE VIEW _summary_with_capture AS
SELECT s.*, m.host, m.kernel_release                  -- summary joined to its capture's host and kernel
FROM summary s LEFT JOIN metadata m USING (trace_id);

CREATE OR REPLACE VIEW _fleet_rollup AS
SELECT CASE WHEN grouping(host) = 0 THEN 'host'
            WHEN grouping(comm) = 0 THEN 'comm'
            ELSE 'kernel' END AS dimension,            -- which grouping this row belongs to
       coalesce(host, comm, kernel_release) AS grp,   -- the host, command or kernel release
       policy,                                        -- reclaim policy spec
       count(*) AS processes,                         -- count: processes replayed
       sum(final_vmpte_bytes)::BIGINT AS vmpte_bytes,         -- bytes: final VmPTE under this policy
       sum(vmpte_saved_bytes)::BIGINT AS saved_bytes,         -- bytes: final VmPTE saved against none
       sum(ideal_pte_bytes)::BIGINT AS ideal_bytes            -- bytes: tables needed for the resident pages
FROM _summary_with_capture
GROUP BY GROUPING SETS ((host, policy), (comm, policy), (kernel_release, policy));

CREATE OR REPLACE VIEW fleet_by_host AS               -- host: traced machine
SELECT grp AS host, policy, processes, vmpte_bytes, saved_bytes, ideal_bytes FROM _fleet_rollup WHERE dimension = 'host';

CREATE OR REPLACE VIEW fleet_by_comm AS               -- comm: command name
SELECT grp AS comm, policy, processes, vmpte_bytes, saved_bytes, ideal_bytes FROM _fleet_rollup WHERE dimension = 'comm';

CREATE OR REPLACE VIEW fleet_by_kernel AS             -- kernel_release: uname -r of the traced machine
SELECT grp AS kernel_release, policy, processes, vmpte_bytes, saved_bytes, ideal_bytes FROM _fleet_rollup WHERE dimension = 'kernel';
