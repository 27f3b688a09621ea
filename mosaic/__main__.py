"""`python -m mosaic ...`: tools around the job runner.

  python -m mosaic cache list [--kind K] [--where FIELD=VALUE ...]
  python -m mosaic cache remove (--where FIELD=VALUE ... | --all) [--kind K]
  python -m mosaic cache verify [--kind K]
  python -m mosaic bench [--quick] [--only FIGURE,...] [--whole-suite]
  python -m mosaic report SWEEP_DIR [--out DIR]
  python -m mosaic explore SWEEP_OR_JOB_DIR [latent=N,...] [--out FILE]
                                                        (one HTML page: the sweep's table, each probe's top
                                                        latents with the contexts where they fire)
  python -m mosaic predict JOB_DIR/probe TEXTS.txt      (one text per line; prints label and probability)
  python -m mosaic tasks                                (the sparse-probing suite's tasks: dataset=sae_probes)
  python -m mosaic plan [--sweep-dir DIR] [--device cpu|cuda] [--tokens-per-second N] OVERRIDES...
                                                        (a grid's cells, forwards, SAEs, hub items, cache, time)
  python -m mosaic fetch OVERRIDES...                   (download what the grid reads from the hub, once)
  python -m mosaic doctor                               (torch/GPU, hub and licences, W&B, SLURM, caches)
  python -m mosaic sae train OVERRIDES...               (the SAE a job with these overrides would train, cached)
  python -m mosaic sae eval OVERRIDES...                (that job's SAE, measured on its documents)
  python -m mosaic sae list                             (trained SAEs in the cache)
  python -m mosaic schema                               (results.json's JSON Schema: docs/results.schema.json)

FIELD is a dotted path into an entry's key fields, e.g. `layer=12`, `model.source=minilm`,
`encoder.type=sae`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from mosaic.config import get_dotted
from mosaic.infra.cache import (
    Entry,
    cache_root,
    incomplete_dirs,
    list_entries,
    remove_entry,
    saved_states,
    verify_entry,
)
from mosaic.infra.disk import human_size, written_bytes
from mosaic.infra.errors import MosaicError
from mosaic.infra.timing import quiet_progress_off_terminal


def _field(fields: dict[str, Any], dotted: str) -> Any:
    try:
        return get_dotted(fields, dotted)
    except (KeyError, TypeError):
        return None


def _matches(entry: Entry, conditions: list[str]) -> bool:
    for condition in conditions:
        name, _, value = condition.partition("=")
        if str(_field(entry.fields, name)) != value:
            return False
    return True


def _summary(entry: Entry) -> str:
    fields = entry.fields
    model = fields.get("model", {})
    parts = [str(model.get("hf_id") or model.get("path") or model.get("source") or "")]
    if "layer" in fields:
        parts.append(f"layer {fields['layer']}")
    encoder = fields.get("encoder") or {}
    parts.append(encoder.get("id") or encoder.get("source") or encoder.get("type") or fields.get("package", ""))
    return " ".join(p for p in parts if p)


def _selected(args) -> list[Entry]:
    return [e for e in list_entries(args.kind) if _matches(e, args.where)]


def _asked_latents(words: list[str]) -> tuple[int, ...]:
    """`latent=1234,56` arguments as latent numbers; a MosaicError naming what is wrong otherwise."""
    found = []
    for word in words:
        name, _, values = word.partition("=")
        if name != "latent" or not values or not all(v.strip().isdecimal() for v in values.split(",")):
            raise MosaicError(f"{word!r} is not a latent request: write latent=N or latent=N,M (non-negative integers)")
        found += [int(v) for v in values.split(",")]
    return tuple(sorted(set(found)))


def explore_command(args) -> int:
    from mosaic.report.explore import write_page

    try:
        print(write_page(args.directory, args.out, _asked_latents(args.latents))[0])
    except (OSError, MosaicError) as error:
        print(f"mosaic: error: {error}", file=sys.stderr)
        return 2
    return 0


def cache_command(args) -> int:
    entries = _selected(args)
    if args.action == "list":
        print(f"cache: {cache_root()}")
        for e in entries:
            created = datetime.fromtimestamp(e.created).strftime("%Y-%m-%d %H:%M")
            print(f"{e.kind:<12} {e.key}  {human_size(e.size):>9}  {created}  {_summary(e)}")
        print(f"{len(entries)} entries, {human_size(sum(e.size for e in entries))}")
        broken = incomplete_dirs(args.kind)
        if broken:
            print(f"{len(broken)} incomplete (rebuilt when next needed; `cache remove --all` deletes them)")
        if states := saved_states(args.kind):
            print(f"{len(states)} saved build states, {human_size(written_bytes(states))} (a stopped SAE training or "
                  "answers scoring resumes from them; `cache remove --all` deletes them)")
        return 0
    if args.action == "remove":
        if not args.where and not args.all:
            print("mosaic: error: cache remove needs --where FIELD=VALUE or --all", file=sys.stderr)
            return 2
        for e in entries:
            remove_entry(e)
        broken = incomplete_dirs(args.kind) + saved_states(args.kind) if args.all else []
        for path in broken:
            shutil.rmtree(path, ignore_errors=True)
        print(f"removed {len(entries)} entries" + (f" and {len(broken)} incomplete or saved states" if broken else ""))
        return 0
    bad = 0
    for e in entries:
        problems = verify_entry(e)
        bad += bool(problems)
        for problem in problems:
            print(f"{e.kind}/{e.key}: {problem}")
    broken = incomplete_dirs(args.kind)
    for path in broken:
        print(f"{path.parent.name}/{path.name}: incomplete (no valid manifest, or a file of the wrong size)")
    print(f"verified {len(entries)} entries: {bad} damaged, {len(broken)} incomplete")
    return 1 if bad or broken else 0


def predict_command(args) -> int:
    from mosaic.job.predict import predict_texts

    try:
        texts = [line for line in args.texts.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not texts:
            raise MosaicError(f"{args.texts} has no non-empty lines to label")
        labels, proba, attended = predict_texts(args.probe, texts)
    except (MosaicError, OSError) as error:
        print(f"mosaic: error: {error}", file=sys.stderr)
        return 2
    for i, (label, row) in enumerate(zip(labels, proba)):
        print(f"{label}\t{row.max():.4f}" + ("" if attended is None else f"\tattended: {attended[i]}"))
    return 0


def tasks_command(args) -> int:
    from mosaic.data.sources import sae_probes

    try:
        known, shifted = sae_probes.tasks(), set(sae_probes.ood_tasks())
    except MosaicError as error:
        print(f"mosaic: error: {error}", file=sys.stderr)
        return 2
    for task, kind in known.items():
        print(f"{task:<40} {kind:<10} {'covariate-shift test set' if task in shifted else ''}".rstrip())
    counts = {kind: sum(k == kind for k in known.values()) for kind in ("binary", "multiclass")}
    print(f"{counts['binary']} binary, {counts['multiclass']} multiclass (sae-probes {sae_probes.package_version()}); "
          "run one with: python run.py dataset=sae_probes dataset.task=TASK")
    return 0


def _shown(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def sae_command(args) -> int:
    from mosaic.commands import sae
    from mosaic.record import quality_line, sae_name

    try:
        if args.action == "list":
            rows = sae.listing()
            for key, row in rows:
                print(f"{key}  " + "  ".join(f"{name} {_shown(value)}" for name, value in row.items()))
            print(f"{len(rows)} trained SAEs")
        elif args.action == "train":
            record = sae.train(args.overrides)
            measured = record.get("on_training_tokens", {})
            print(f"SAE {record['key']}: {record.get('tokens')} training tokens, {record.get('seconds', 0):.0f} s; "
                  f"on its training tokens FVU {measured.get('fvu', float('nan')):.3f}, L0 "
                  f"{measured.get('l0', float('nan')):.1f}, dead {measured.get('dead_fraction', float('nan')):.1%}")
        else:
            measured = sae.evaluate(args.overrides)
            print(f"SAE {sae_name(measured['sae'])}")
            print(quality_line(measured["quality"]))
    except MosaicError as error:
        print(f"mosaic: error: {error}", file=sys.stderr)
        return 2
    return 0


def plan_command(args) -> int:
    from mosaic.cluster.cells import expand_grid
    from mosaic.cluster.plan import format_plan, plan_grid

    if args.sweep_dir is not None and not args.sweep_dir.is_dir():
        print(f"mosaic: error: --sweep-dir {args.sweep_dir} is not a directory: give the grid's sweep directory "
              "(multirun/DATE/TIME) to count its finished cells", file=sys.stderr)
        return 2
    try:
        plan = plan_grid(expand_grid(args.overrides), args.sweep_dir, args.device)
    except MosaicError as error:
        print(f"mosaic: error: {error}", file=sys.stderr)
        return 2
    print(format_plan(plan, args.tokens_per_second))
    return 0


def fetch_command(args) -> int:
    from mosaic.cluster.cells import expand_grid
    from mosaic.cluster.fetch import fetch_items, fetch_summary, grid_items, runnable

    try:
        configs = expand_grid(args.overrides).configs
        cells = runnable(configs)
        items = grid_items(cells)
        for line in fetch_items(items):
            print(line, flush=True)
    except MosaicError as error:
        print(f"mosaic: error: {error}", file=sys.stderr)
        return 2
    print(fetch_summary(items, len(configs) - len(cells)))
    return 0


def main(argv: list[str] | None = None) -> int:
    quiet_progress_off_terminal()
    parser = argparse.ArgumentParser(prog="python -m mosaic", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    cache = commands.add_parser("cache", help="list, remove or verify cached SAEs, models and activations")
    cache.add_argument("action", choices=("list", "remove", "verify"))
    cache.add_argument("--kind", help="only entries of this kind (activations, saes, models)")
    cache.add_argument("--where", action="append", default=[], metavar="FIELD=VALUE",
                       help="only entries whose key field equals VALUE (repeatable)")
    cache.add_argument("--all", action="store_true", help="with remove: every selected entry")
    bench = commands.add_parser("bench", help="run the benchmark; writes bench/results.json")
    bench.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    bench.add_argument("--only", default="", help="refresh only these figures (comma-separated, e.g. parity,padding) "
                       "in bench/results.json")
    bench.add_argument("--whole-suite", action="store_true",
                       help="figure 9 on all 113 binary suite tasks (about 1.5 h on 2 CPU cores), not every fifth")
    report = commands.add_parser("report", help="tables and plots from every results.json under a sweep dir")
    report.add_argument("sweep_dir", type=Path)
    report.add_argument("--out", type=Path, help="where to write (default: the sweep dir)")
    explore = commands.add_parser("explore", help="one self-contained HTML page: the sweep's jobs, each probe's "
                                  "top latents and where they fire")
    explore.add_argument("directory", type=Path, help="a sweep directory or one job's directory")
    explore.add_argument("latents", nargs="*", help="latent=N[,M...]: cards for these latents in every SAE job too")
    explore.add_argument("--out", type=Path, help="the page to write (default: DIRECTORY/explore.html)")
    predict = commands.add_parser("predict", help="label each line of a text file with a saved probe")
    predict.add_argument("probe", type=Path, help="a job's probe directory (JOB_DIR/probe)")
    predict.add_argument("texts", type=Path, help="a UTF-8 file, one text per line")
    commands.add_parser("tasks", help="list the sparse-probing suite's tasks (dataset=sae_probes dataset.task=TASK)")
    sae = commands.add_parser("sae", help="train, measure or list SAEs outside a job (same cache and keys)")
    sae.add_argument("action", choices=("train", "eval", "list"))
    sae.add_argument("overrides", nargs="*", help="a job's overrides, e.g. model=minilm layer=3 sae.architecture=topk")
    plan = commands.add_parser("plan", help="what a grid will run and cost, loading no model")
    plan.add_argument("--sweep-dir", type=Path, help="the grid's sweep directory, to count its finished cells")
    plan.add_argument("--device", choices=("cpu", "cuda"),
                      help="where the cells run (default: cuda for hydra/launcher=slurm with GPUs, else here)")
    plan.add_argument("--tokens-per-second", type=float,
                      help="forward + SAE encode throughput, instead of what `make bench` measured")
    plan.add_argument("overrides", nargs="*", help="the grid's overrides, as for `python run.py -m`")
    fetch = commands.add_parser("fetch", help="download a grid's models, SAEs and hub datasets into the hub cache")
    fetch.add_argument("overrides", nargs="*", help="the grid's overrides, as for `python run.py -m`")
    commands.add_parser("doctor", help="what a run on this machine will meet: GPU, hub, W&B, SLURM, caches")
    commands.add_parser("schema", help="print results.json's JSON Schema (docs/results.schema.json)")
    # explore's latent=N words may follow its options too (`explore DIR --out F latent=5`).
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command != "explore":
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "explore":
        args.latents += unknown
    if args.command == "schema":
        from mosaic.record import json_schema

        print(json.dumps(json_schema(), indent=2))
        return 0
    if args.command == "plan":
        return plan_command(args)
    if args.command == "fetch":
        return fetch_command(args)
    if args.command == "doctor":
        from mosaic.cluster.doctor import report as doctor_report

        print(doctor_report())
        return 0
    if args.command == "sae":
        return sae_command(args)
    if args.command == "tasks":
        return tasks_command(args)
    if args.command == "predict":
        return predict_command(args)
    if args.command == "cache":
        return cache_command(args)
    if args.command == "report":
        from mosaic.report import write_report

        try:
            written = write_report(args.sweep_dir, args.out)
        except (FileNotFoundError, MosaicError) as error:
            print(f"mosaic: error: {error}", file=sys.stderr)
            return 2
        for path in written.values():
            print(path)
        return 0
    if args.command == "explore":
        return explore_command(args)
    from mosaic.bench import run_benchmark

    run_benchmark(quick=args.quick, only=tuple(name for name in args.only.split(",") if name),
                  whole_suite=args.whole_suite)
    return 0


if __name__ == "__main__":
    sys.exit(main())
