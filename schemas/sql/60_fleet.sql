-- fleet: many hosts' replays (what each policy would have saved over the trace) and censuses (what
-- an ideal policy would give back right now) side by side, per host and per command.
-- A host is the fleet's label (`ptreplay batch --fleet FLEET/HOST/...` or --manifest), else the
-- hostname in the capture's machine metadata or the census rows.
CREATE OR REPLACE VIEW _summary_with_capture AS
SELECT s.*, m.host, m.kernel_release                  -- summary joined to its capture's host and kernel
FROM summary s LEFT JOIN metadata m USING (trace_id);

CREATE OR REPLACE VIEW _fleet_rollup AS
SELECT CASE WHEN grouping(host) = 0 THEN 'host'
            WHEN grouping(comm) = 0 THEN 'comm'
            ELSE 'kernel' END AS dimension,            -- which grouping this row belongs to
       coalesce(host, comm, kernel_release) AS grp,   -- the host, command or kernel release
       policy,                                        -- reclaim policy spec
       count(DISTINCT trace_id) AS traces,            -- count: captures replayed
       count(*) AS processes,                         -- count: processes replayed
       sum(final_vmpte_bytes + vmpte_saved_bytes)::BIGINT AS none_vmpte_bytes,  -- bytes: final VmPTE with no reclaim
       sum(final_vmpte_bytes)::BIGINT AS vmpte_bytes,         -- bytes: final VmPTE under this policy
       sum(vmpte_saved_bytes)::BIGINT AS saved_bytes,         -- bytes: final VmPTE saved against none
       sum(ideal_pte_bytes)::BIGINT AS ideal_bytes,           -- bytes: tables needed for the resident pages
       sum(refaults)::BIGINT AS refaults                      -- count: tables re-allocated < 1 s after being freed
FROM _summary_with_capture
GROUP BY GROUPING SETS ((host, policy), (comm, policy), (kernel_release, policy));

-- the census rows that measured a process (ok or changed), one per (host, pid): its latest scan
CREATE OR REPLACE VIEW _census_measured AS
SELECT * FROM census
WHERE waste_bytes IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY host, pid ORDER BY t_ns DESC) = 1;

CREATE OR REPLACE VIEW _census_rollup AS
SELECT CASE WHEN grouping(host) = 0 THEN 'host' ELSE 'comm' END AS dimension,  -- which grouping
       coalesce(host, comm) AS grp,                   -- the host or command
       count(DISTINCT host) AS hosts,                 -- count: hosts with a census row
       count(*) AS processes,                         -- count: processes measured
       sum(vmpte_bytes)::BIGINT AS vmpte_bytes,       -- bytes: their VmPTE at the census
       sum(needed_bytes)::BIGINT AS needed_bytes,     -- bytes: tables their pages need
       sum(waste_bytes)::BIGINT AS waste_bytes        -- bytes: vmpte_bytes - needed_bytes
FROM _census_measured
GROUP BY GROUPING SETS ((host), (comm));

-- fleet_by_host: per host and replayed policy (a host with a census and no replay: one row, policy NULL).
-- The census columns are the host's, repeated on each of its policy rows.
CREATE OR REPLACE VIEW fleet_by_host AS
SELECT
    coalesce(r.grp, c.grp) AS host,                   -- host label (else the recorded hostname)
    r.policy,                                         -- reclaim policy spec replayed (NULL: census only)
    coalesce(r.traces, 0) AS traces,                  -- count: captures replayed on this host
    coalesce(r.processes, 0) AS processes,            -- count: processes replayed (trace, pid)
    r.none_vmpte_bytes,                               -- bytes: their final VmPTE with no reclaim (kernels < 6.14)
    r.vmpte_bytes,                                    -- bytes: their final VmPTE under this policy
    r.saved_bytes,                                    -- bytes: none_vmpte_bytes - vmpte_bytes, what the policy saves at the traces' ends
    CASE WHEN r.none_vmpte_bytes > 0 THEN 100.0 * r.saved_bytes / r.none_vmpte_bytes END AS saved_pct,  -- percent of none_vmpte_bytes
    r.ideal_bytes,                                    -- bytes: tables the traced processes' final resident pages need
    r.refaults,                                       -- count: tables re-allocated < 1 s after this policy freed them
    coalesce(c.processes, 0) AS census_processes,     -- count: processes the host's census measured (latest scan per pid)
    c.vmpte_bytes AS census_vmpte_bytes,              -- bytes: their VmPTE now (/proc/PID/status at the census)
    c.needed_bytes AS census_needed_bytes,            -- bytes: tables their present and swapped pages need
    c.waste_bytes AS census_waste_bytes,              -- bytes: census_vmpte_bytes - census_needed_bytes, what an ideal policy gives back now
    CASE WHEN c.vmpte_bytes > 0 THEN 100.0 * c.waste_bytes / c.vmpte_bytes END AS census_waste_pct  -- percent of census_vmpte_bytes
FROM (SELECT * FROM _fleet_rollup WHERE dimension = 'host') r
FULL OUTER JOIN (SELECT * FROM _census_rollup WHERE dimension = 'host') c ON c.grp IS NOT DISTINCT FROM r.grp;

-- hosts each command was seen on, replayed or censused
CREATE OR REPLACE VIEW _comm_hosts AS
SELECT comm, count(DISTINCT host) AS hosts FROM (
    SELECT comm, host FROM _summary_with_capture UNION SELECT comm, host FROM _census_measured)
GROUP BY comm;

-- fleet_by_comm: per command across hosts and replayed policy (census only: one row, policy NULL).
CREATE OR REPLACE VIEW fleet_by_comm AS
SELECT
    coalesce(r.grp, c.grp) AS comm,                   -- command name (TASK_COMM_LEN, as the kernel keeps it)
    r.policy,                                         -- reclaim policy spec replayed (NULL: census only)
    h.hosts,                                          -- count: hosts where the command was replayed or censused
    coalesce(r.traces, 0) AS traces,                  -- count: captures holding a replayed process of it
    coalesce(r.processes, 0) AS processes,            -- count: its processes replayed
    r.none_vmpte_bytes,                               -- bytes: their final VmPTE with no reclaim
    r.vmpte_bytes,                                    -- bytes: their final VmPTE under this policy
    r.saved_bytes,                                    -- bytes: none_vmpte_bytes - vmpte_bytes
    CASE WHEN r.none_vmpte_bytes > 0 THEN 100.0 * r.saved_bytes / r.none_vmpte_bytes END AS saved_pct,  -- percent of none_vmpte_bytes
    r.ideal_bytes,                                    -- bytes: tables their final resident pages need
    r.refaults,                                       -- count: tables re-allocated < 1 s after this policy freed them
    coalesce(c.processes, 0) AS census_processes,     -- count: its processes the censuses measured
    c.vmpte_bytes AS census_vmpte_bytes,              -- bytes: their VmPTE now
    c.needed_bytes AS census_needed_bytes,            -- bytes: tables their pages need
    c.waste_bytes AS census_waste_bytes,              -- bytes: census_vmpte_bytes - census_needed_bytes
    CASE WHEN c.vmpte_bytes > 0 THEN 100.0 * c.waste_bytes / c.vmpte_bytes END AS census_waste_pct  -- percent of census_vmpte_bytes
FROM (SELECT * FROM _fleet_rollup WHERE dimension = 'comm') r
FULL OUTER JOIN (SELECT * FROM _census_rollup WHERE dimension = 'comm') c ON c.grp IS NOT DISTINCT FROM r.grp
LEFT JOIN _comm_hosts h ON h.comm IS NOT DISTINCT FROM coalesce(r.grp, c.grp);

CREATE OR REPLACE VIEW fleet_by_kernel AS             -- kernel_release: uname -r of the traced machine
SELECT grp AS kernel_release, policy, processes, vmpte_bytes, saved_bytes, ideal_bytes FROM _fleet_rollup WHERE dimension = 'kernel';

-- fleet_runs: one row per batch partition, where its task ran (from the outputs' metadata).
CREATE OR REPLACE VIEW fleet_runs AS
SELECT
    json_extract_string(fleet, '$.kind') AS kind,                     -- capture (ingested + replayed) or census (filed)
    json_extract_string(fleet, '$.id') AS id,                         -- trace id (NAME@HOST in a fleet) or census id
    json_extract_string(fleet, '$.host') AS host_label,               -- the fleet's host label (NULL: the input's own hostname)
    json_extract_string(fleet, '$.input') AS input,                   -- the capture or census the task read
    json_extract_string(fleet, '$.worker.address') AS worker_address, -- dask worker address ('' outside a worker)
    CAST(json_extract(fleet, '$.worker.pid') AS BIGINT) AS worker_pid,  -- process id of the worker that ran the task
    json_extract_string(fleet, '$.worker.hostname') AS worker_hostname, -- hostname of that worker
    file_name                                                         -- the partition file the record was read from
FROM _fleet_records
ORDER BY kind, id;
