"""Record a job: `results.json` (typed, `results.py`), written atomically (`files.py`), its Weights & Biases run
(`tracker.py`), and the end-of-run table (`summary.py`)."""

from mosaic.record.files import (
           CELL_LOCK,
           FAILURE_FILE,
           PROBE_DIR,
           RESULTS_FILE,
           config_hash,
           run_info,
           write_json_atomic,
)
from mosaic.record.results import SCHEMA_VERSION, Results, json_schema, read_results, write_results
from mosaic.record.summary import quality_line, sae_name, sae_quality_scalars, summary_table
from mosaic.record.tracker import LOGGER_TYPES, RunLabels, Tracker, job_labels, keeps_runs, sweep_group

__all__ = ["CELL_LOCK", "FAILURE_FILE", "LOGGER_TYPES", "PROBE_DIR", "RESULTS_FILE", "SCHEMA_VERSION", "Results",
           "RunLabels", "Tracker", "config_hash", "job_labels", "json_schema", "keeps_runs", "quality_line",
           "read_results", "run_info", "sae_name", "sae_quality_scalars", "summary_table", "sweep_group",
           "write_json_atomic", "write_results"]
