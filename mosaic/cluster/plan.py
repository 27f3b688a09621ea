"""`python -m mosaic plan OVERRIDES`: what a grid will do and cost, before it is submitted, loading no model.

For each cell of the grid (`cluster.cells`): done (an earlier `results.json` of the same config and
inputs in `--sweep-dir`, as `sweep.skip_done` decides), skipped (not applicable), invalid, or to run.
For the cells to run, the activation cache entry each needs is looked up with the job's own keys
(`features.types.plan_encoders` and `store.entry_fields`, from the dataset's documents, the
model's weights identity and the encoder's identity), wherever they can be computed without
loading a model, training an SAE or downloading anything; what cannot (a model or dataset not
fetched, an SAE still to train) counts as missing. Jobs are then followed in launch order: a job
whose entry no earlier forward wrote runs one, which also writes its siblings' entries (the slots
`features.types.forward_slots` gives for the grid's sweep) and stops at their deepest layer,
and trains their missing SAEs from one corpus forward. The plan also lists the SAEs to train, the
behaviour answers to score, what the grid reads from the hub and whether it is fetched, the cache
growth, and the forwards' time from a throughput `make bench` measured for that model and device
(or `--tokens-per-second`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mosaic.cluster.cells import Grid
from mosaic.cluster.planner import EntryNeed, Planner
from mosaic.infra import hub
from mosaic.infra.disk import human_size
from mosaic.infra.errors import MosaicError, NotApplicableError, first_line


@dataclass
class CellPlan:
    number: int
    overrides: list[str]
    status: str  # "to run", "done", "skipped", "invalid"
    reason: str | None = None
    entry: EntryNeed | None = None
    filled_by: int | None = None  # the earlier cell whose forward writes this cell's entry


@dataclass
class Forward:
    """One pass of a model over documents, run by one cell: the missing entries it fills (its own and its
    siblings'), up to the deepest layer they need."""

    cell: int
    label: str
    model: str
    device_type: str
    n_layers: int
    layers: set[int] = field(default_factory=set)
    entries: set[str] = field(default_factory=set)
    documents: int | None = None
    tokens: int | None = None

    @property
    def deepest(self) -> int:
        return max(self.layers)


@dataclass
class Plan:
    cells: list[CellPlan]
    forwards: list[Forward]
    saes_to_train: list[str]
    sae_corpus_forwards: list[str]
    behaviour_forwards: list[str]
    hub_items: list[tuple[str, bool]]
    device_type: str
    notes: list[str]

    def count(self, status: str) -> int:
        return sum(cell.status == status for cell in self.cells)

    def growth_bytes(self) -> tuple[int, int]:
        """Bytes the missing activation entries will add (of those that can be estimated), and how many cannot be."""
        needs = {cell.entry.key: cell.entry for cell in self.cells if cell.entry and not cell.entry.cached}.values()
        return sum(n.bytes for n in needs if n.bytes is not None), sum(n.bytes is None for n in needs)


def _cell_status(cfg: DictConfig, number: int, sweep_dir: Path | None) -> tuple[str, str | None]:
    from mosaic.cluster.resume import finished_results
    from mosaic.config import validate
    from mosaic.job.inputs import job_inputs
    from mosaic.record import RESULTS_FILE

    try:
        validate(cfg)
    except NotApplicableError as error:
        return "skipped", first_line(error)
    except MosaicError as error:
        return "invalid", first_line(error)
    job_dir = None if sweep_dir is None else sweep_dir / str(number)
    if job_dir is None or not (job_dir / RESULTS_FILE).is_file():
        return "to run", None
    if not cfg.sweep.skip_done:
        return "to run", "it has results, but runs again: sweep.skip_done=false"
    inputs = job_inputs(cfg)
    if finished_results(job_dir, OmegaConf.to_container(cfg, resolve=True), inputs):
        return "done", None
    if None in (inputs["model"], *inputs["transfer_models"].values(), inputs.get("behaviour_model", "")):
        return "to run", "it has results, but a model it reads is not fetched here, so they cannot be shown current"
    return "to run", "its results came from another config or other inputs"


def _shared_passes(needs: list[CellPlan], configs: list[DictConfig], sweep) -> list[tuple[CellPlan, list[CellPlan]]]:
    """Which cells run a forward, and whose entries each writes.

    In launch order, a cell whose entry no earlier forward wrote runs one, as its job would: it
    also writes those of the cells of its family in the slots its forward computes for the sweep
    (`features.types.forward_slots`). Jobs that run at once may each run a forward an earlier one
    would have made; the count is the grid's run one cell after another.
    """
    from mosaic.features.types import forward_slots

    written: set[str] = set()
    passes = []
    for cell in needs:
        if cell.entry.key in written:
            continue
        slots = {(layer, kind, width) for layer, found in forward_slots(configs[cell.number], sweep).items()
                 for kind, width in found}
        members = [cell] + [other for other in needs if other is not cell and other.entry.key not in written
                            and other.entry.family == cell.entry.family and other.entry.slot in slots]
        written.update(member.entry.key for member in members)
        passes.append((cell, members))
    return passes


def _forwards(cells: list[CellPlan], configs: list[DictConfig], sweep,
              planner: Planner) -> tuple[list[Forward], list[str]]:
    """The forwards the cells to run need, each to the deepest layer of the entries it writes; and the SAE
    corpus forwards, one for each job that trains SAEs (all those its forward needs, from one pass)."""
    pending = [cell for cell in cells if cell.entry and not cell.entry.cached]
    forwards, corpus, writer, trained = [], [], {}, set()
    for runner, members in _shared_passes(pending, configs, sweep):
        cfg = configs[runner.number]
        forward = Forward(runner.number, runner.entry.label, cfg.model.name, planner.cell_device(cfg),
                          cfg.model.n_layers)
        for member in members:
            forward.layers.add(member.entry.layer)
            forward.entries.add(member.entry.key)
            writer[member.entry.key] = runner.number
        data = planner.data(cfg)
        if data.ok:
            from mosaic.activations.forward import estimated_tokens

            documents = data.value.job.data.documents
            forward.documents, forward.tokens = len(documents), estimated_tokens(documents, cfg.max_length)
        forwards.append(forward)
        saes = {member.entry.sae: member.entry.layer for member in members
                if member.entry.sae and member.entry.sae not in trained}
        if saes:
            trained.update(saes)
            corpus.append(f"cell {runner.number}: {cfg.model.name} over the SAE corpus ({cfg.sae.train_corpus}): "
                          f"layers {', '.join(map(str, sorted(set(saes.values()))))}")
    for cell in pending:
        if writer[cell.entry.key] != cell.number:
            cell.filled_by = writer[cell.entry.key]
    return forwards, corpus


def plan_grid(grid: Grid, sweep_dir: Path | None = None, device_type: str | None = None) -> Plan:
    """The grid's cells, forwards, SAEs, hub items and notes: everything computed with `hub.local_only`, no model.

    `device_type` is where cells on `model.device=auto` run: by default GPU nodes for a SLURM launcher
    that asks for GPUs, else this machine's device.
    """
    from mosaic.activations.models import resolve_device
    from mosaic.cluster.fetch import grid_items
    from mosaic.features.types import feature_type

    if device_type is None:
        device_type = "cuda" if grid.uses_gpus() else resolve_device("auto").type
    planner = Planner(device_type)
    cells: list[CellPlan] = []
    with hub.local_only():
        for number, (overrides, cfg) in enumerate(zip(grid.overrides, grid.configs)):
            status, reason = _cell_status(cfg, number, sweep_dir)
            cell = CellPlan(number, overrides, status, reason)
            cells.append(cell)
            if status != "to run":
                continue
            data = planner.data(cfg)
            if data.state in ("not applicable", "invalid"):
                cell.status, cell.reason = "skipped" if data.state == "not applicable" else "invalid", data.why
                continue
            if cfg.behaviour.model is not None:
                planner.behaviour_answers(cfg)
            if feature_type(cfg).reads_model:
                cell.entry = planner.entry(cfg)
        forwards, corpus = _forwards(cells, grid.configs, grid.sweep, planner)
        items = [(item.label, item.fetched()) for item in grid_items(
            [cfg for cfg, cell in zip(grid.configs, cells) if cell.status == "to run"])]
    notes = sorted({f"{label}: {why}" for label, why in (
        (c.entry.label, c.entry.why) for c in cells if c.entry and c.entry.cached is None)})
    return Plan(cells, forwards, list(planner.saes_to_train.values()),
                corpus, list(planner.behaviour.values()), items, device_type, notes)


def measured_rate(model: str, device_type: str) -> float | None:
    """Tokens a second of forward + SAE encode at full depth, as `make bench` measured it for this model and device."""
    from mosaic.bench import OUT

    try:
        measured = json.loads(Path(OUT).read_text()).get("extraction", [])
    except (OSError, ValueError):
        return None
    rates = [row["pipeline_tokens_per_s"] for row in measured
             if row.get("model") == model and row.get("device", {}).get("type") == device_type]
    return rates[0] if rates else None


def forward_seconds(forward: Forward, rate: float) -> float:
    """The forward's tokens at `rate` tokens a second, scaled by the share of the model it runs (early exit)."""
    return forward.tokens * (forward.deepest + 1) / forward.n_layers / rate


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


def _varying(cells: list[CellPlan]) -> Callable[[CellPlan], str]:
    """A cell's name by the overrides that differ between cells (all of them for a one-cell grid)."""
    keys = {o.split("=", 1)[0] for c in cells for o in c.overrides}
    varying = {k for k in keys if len({o for c in cells for o in c.overrides if o.split("=", 1)[0] == k}) > 1}
    return lambda cell: " ".join(o for o in cell.overrides if not varying or o.split("=", 1)[0] in varying) or "-"


def format_plan(plan: Plan, rate: float | None = None) -> str:
    """The plan as a few sections of plain lines: cells, forwards, SAEs, hub items, cache growth, time."""
    name = _varying(plan.cells)
    lines = [f"grid: {len(plan.cells)} cells: {plan.count('to run')} to run, {plan.count('done')} done, "
             f"{plan.count('skipped')} skipped (not applicable), {plan.count('invalid')} invalid"]
    for cell in plan.cells:
        detail = f": {cell.reason}" if cell.reason else ""
        cached = " (activations cached)" if cell.entry and cell.entry.cached else \
            f" (activations from cell {cell.filled_by}'s forward)" if cell.filled_by is not None else ""
        lines.append(f"  {cell.number:>4}  {name(cell)}  {cell.status}{cached}{detail}")
    lines.append(f"forwards after the cache ({plan.device_type}): {len(plan.forwards)}")
    total, unknown = 0.0, 0
    for forward in plan.forwards:
        size = "documents unknown here" if forward.documents is None else \
            f"{forward.documents} documents, ≈{forward.tokens or 0:,} tokens"
        per = rate or measured_rate(forward.model, forward.device_type)
        when = ""
        if per and forward.tokens:
            seconds = forward_seconds(forward, per)
            total += seconds
            when = f", ≈{_duration(seconds)} at {per:,.0f} tokens/s"
        else:
            unknown += 1
        layers = ", ".join(map(str, sorted(forward.layers)))
        lines.append(f"  cell {forward.cell}: {forward.label}: layers {layers} (deepest {forward.deepest} of "
                     f"{forward.n_layers}), {len(forward.entries)} entries; {size}{when}")
    for title, rows in (("SAEs to train", plan.saes_to_train), ("SAE corpus forwards", plan.sae_corpus_forwards),
                        ("behaviour answers to score", plan.behaviour_forwards)):
        if rows:
            lines.append(f"{title}: {len(rows)}")
            lines += [f"  {row}" for row in rows]
    missing = [label for label, fetched in plan.hub_items if not fetched]
    lines.append(f"from the hub: {len(plan.hub_items)} items, {len(missing)} not fetched" if plan.hub_items else
                 "from the hub: nothing (packaged models and datasets)")
    lines += [f"  {label}: {'fetched' if fetched else 'not fetched'}" for label, fetched in plan.hub_items]
    grown, unsized = plan.growth_bytes()
    sized = f"≈{human_size(grown)}" if grown or not unsized else "unknown"
    lines.append(f"activation cache growth: {sized}" + (f" (+ {unsized} entries not estimated: documents unknown "
                                                        "here)" if unsized else ""))
    if plan.forwards:
        timed = len(plan.forwards) - unknown
        estimate = f"≈{_duration(total)} for {timed} of {len(plan.forwards)} forwards" if timed else "not estimated"
        lines.append(f"time: {estimate} (forward and SAE encode; SAE corpus forwards and training, behaviour "
                     "answers and probes not counted)" + (
            f"; {unknown} without documents or a throughput for the model on {plan.device_type} (`make bench`, or "
            "--tokens-per-second N)" if unknown else ""))
    lines += [f"note: {note}" for note in plan.notes]
    if missing:
        lines.append(f"fetch first, where the hub is reachable: {hub.FETCH_COMMAND} <the same overrides>")
    return "\n".join(lines)
