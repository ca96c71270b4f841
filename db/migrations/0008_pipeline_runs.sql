-- Run metrics: one row per finished flow run (ingest, process, pipeline, ...), written by
-- pipeline/metrics.py:record_run as an upsert on run_id (the Prefect flow run id), so
-- recording the same run twice (a retried flow, the facade after the flow) keeps one row.
--
-- A sub-flow (an ingest run inside a pipeline run) names its parent in parent_run_id; totals over
-- a period (`marketpipe metrics`, get_pipeline_metrics()) add up top-level runs only, so records
-- are never counted twice. Definitions (computed from the run's summary):
--   records_ingested               vendor records collected into the raw zone
--   records_stored                 rows the run inserted or changed in the hot store (a rerun: 0)
--   rejected                       records that failed validation (quarantined or flagged)
--   dead_lettered                  vendor pages dead-lettered during collection
--   throughput_records_per_second  records_ingested / wall seconds of the run
--   processing_latency_seconds     wall seconds from the run's start until its data committed
--   error_rate                     failed symbol tasks / symbol tasks (0..1)
-- A plain table, not a hypertable: a few rows per run, read newest first.
CREATE TABLE ops.pipeline_runs (
    run_id                         text             PRIMARY KEY CHECK (run_id <> ''),
    flow                           text             NOT NULL CHECK (flow <> ''),
    parent_run_id                  text,
    started_at                     timestamptz      NOT NULL,
    finished_at                    timestamptz      NOT NULL,
    status                         text             NOT NULL CHECK (status IN ('completed', 'partial', 'failed')),
    records_ingested               bigint           NOT NULL DEFAULT 0 CHECK (records_ingested >= 0),
    records_stored                 bigint           NOT NULL DEFAULT 0 CHECK (records_stored >= 0),
    rejected                       bigint           NOT NULL DEFAULT 0 CHECK (rejected >= 0),
    dead_lettered                  bigint           NOT NULL DEFAULT 0 CHECK (dead_lettered >= 0),
    quality_score                  double precision CHECK (quality_score BETWEEN 0 AND 1),
    throughput_records_per_second  double precision CHECK (throughput_records_per_second >= 0),
    processing_latency_seconds     double precision CHECK (processing_latency_seconds >= 0),
    error_rate                     double precision CHECK (error_rate BETWEEN 0 AND 1),
    details                        jsonb            NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT pipeline_runs_time_order CHECK (finished_at >= started_at)
);

-- `marketpipe metrics` and the facade read the newest runs, or the top-level runs since a time.
CREATE INDEX pipeline_runs_finished_idx ON ops.pipeline_runs (finished_at DESC);
CREATE INDEX pipeline_runs_top_level_idx ON ops.pipeline_runs (finished_at DESC) WHERE parent_run_id IS NULL;
