"""Grid bookkeeping, apart from a job's data flow: what a sweep covers, resuming, failed cells, the sweep's end.

`siblings.current_sweep` (what one forward can also serve), `resume.finished_results` (skip a done
cell), `outcome` (failure records and the `SweepOutcome` callback that writes the report).
"""
