"""Mutation score of the notebooks' tests: ``.venv/bin/python -m tests.mutation``.

Generates the mutants of every answer cell (:mod:`tests.mutation.generate`) and grades them,
with the catalog's wrong and alternative answers (:mod:`tests.mutation.catalog`), by the fork
runner (:mod:`tests.mutation.forkrun`), one notebook after another; writes
``generated.json``, ``GENERATED.md`` and ``RESULTS.md``. ``--notebooks`` grades some notebooks
(the others keep their recorded verdicts); ``--only ID...`` grades some mutants or entries and
only prints them; with ``--validator`` they are graded by nbgrader's validator instead, and
compared with the record. Exits with status 1 when a graded notebook kills under 95 % of its
non-equivalent mutants, a catalog mutant survives or an alternative loses points.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

from .catalog import ENTRIES
from .forkrun import grade_variants
from .generate import notebook_mutants, notebooks
from .results import RESULTS
from .results import render as render_results
from .score import Outcome, entry_source, validate, with_cell
from .table import GOAL, TABLE, load, minutes, save, tallies
from .table import render as render_table

COMMAND = ".venv/bin/python -m tests.mutation"


def stderr_pattern() -> str:
    from grading.config import STDERR_NOISE

    return STDERR_NOISE


def select(names: list[str] | None) -> list[str]:
    """Notebooks named in full or by their number (``01``)."""
    every = notebooks()
    if not names:
        return every
    chosen = [nb for nb in every if any(nb == name or nb.startswith(f"{name}_") for name in names)]
    unknown = [name for name in names if not any(nb == name or nb.startswith(f"{name}_") for nb in every)]
    if unknown:
        raise SystemExit(f"unknown notebooks: {', '.join(unknown)}")
    return chosen


def variants_of(notebook: str, only: set[str] | None) -> tuple[list, list]:
    """(generated mutants, catalog entries) of ``notebook``, as (id, cell, source) triples."""
    generated = [(m.id, m.cell, m.source) for m in notebook_mutants(notebook)]
    catalog = [(e.name, e.cell, entry_source(e)) for e in ENTRIES if e.notebook == notebook]
    if only is not None:
        generated = [v for v in generated if v[0] in only]
        catalog = [v for v in catalog if v[0] in only]
    return generated, catalog


def show(verdict) -> None:
    where = f"{verdict.test}: {verdict.message}" if verdict.test else verdict.message
    print(f"{verdict.seconds:6.1f} s  {verdict.status:8s} {verdict.id:48s} {where[:110]}", flush=True)


def record_of(verdict) -> dict:
    return {
        "status": verdict.status,
        "test": verdict.test,
        "message": verdict.message[:160],
        "seconds": verdict.seconds,
    }


def outcome(entry, record: dict) -> Outcome:
    """A catalog entry's recorded verdict as the outcome RESULTS.md shows."""
    if record["status"] == "survived":
        return Outcome(entry, record["seconds"])
    return Outcome(entry, record["seconds"], failed={record["test"] or record["status"]: record["message"]})


def workers_of(record: dict) -> str:
    """The numbers of mutants graded at a time in the recorded runs, as text: ``"1 or 2"``."""
    counts = sorted({graded["workers"] for graded in record["notebooks"].values()})
    return " or ".join(str(count) for count in counts)


def write_tables(record: dict) -> None:
    generated = {notebook: notebook_mutants(notebook) for notebook in notebooks()}
    TABLE.write_text(render_table(record, generated))
    entries = [entry for entry in ENTRIES if entry.name in record["catalog"]]
    outcomes = [outcome(entry, record["catalog"][entry.name]) for entry in entries]
    ungraded = tuple(entry for entry in ENTRIES if entry.name not in record["catalog"])
    RESULTS.write_text(
        render_results(
            outcomes, command=COMMAND, minutes=minutes(record), workers=workers_of(record), ungraded=ungraded
        )
    )


def goals_met(record: dict, graded: list[str]) -> bool:
    ok = True
    for notebook in graded:
        mutants = notebook_mutants(notebook)
        total, _ = tallies(notebook, mutants, record["notebooks"][notebook]["mutants"])
        print(
            f"{notebook}: {total.generated} generated, {total.equivalent} equivalent, {total.killed} killed, "
            f"{total.survived} survived: {100 * total.score:.1f} %"
        )
        ok &= total.score >= GOAL
    for entry in ENTRIES:
        verdict = record["catalog"].get(entry.name)
        if entry.notebook in graded and verdict is not None:
            wrong = (verdict["status"] == "survived") == (entry.kind == "mutant")
            if wrong:
                print(f"catalog: {entry.kind} {entry.name}: {verdict['status']}")
            ok &= not wrong
    return ok


def by_validator(ids: set[str], names: list[str], workers: int) -> int:
    """Grade ``ids`` with nbgrader's validator and compare with the record."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from .score import set_kernel_environment

    record, jobs = load(), []
    for notebook in names:
        generated, catalog = variants_of(notebook, ids)
        for id_, cell, source in generated + catalog:
            recorded = record["notebooks"].get(notebook, {}).get("mutants", {}).get(id_) or record["catalog"].get(id_)
            jobs.append((notebook, id_, cell, source, recorded))
    disagree = 0
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=set_kernel_environment) as pool:
        futures = [(job, pool.submit(validate_variant, *job[:4], job[4])) for job in jobs]
        for (_, id_, _, _, recorded), future in futures:
            failed, error, seconds = future.result()
            got = "survived" if not failed and error is None else f"killed by {next(iter(failed), error)}"
            want = "not recorded" if recorded is None else agreement_key(recorded)
            disagree += recorded is not None and got != want
            print(f"{seconds:6.1f} s  {id_:48s} validator: {got}; recorded: {want}", flush=True)
    return 1 if disagree else 0


def agreement_key(recorded: dict) -> str:
    return "survived" if recorded["status"] == "survived" else f"killed by {recorded['test']}"


def validate_variant(notebook: str, id_: str, cell: str, source: str, recorded: dict | None):
    """Validator grading of one variant: through the test cell that killed it in the record (a test
    cell that fails in a prefix of the notebook fails in the whole), else through the last."""
    started = time.perf_counter()
    last = recorded["test"] if recorded and recorded["status"] == "killed" else None
    failed, error = validate(with_cell(notebook, cell, source), notebook, last)
    return failed, error, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", nargs="+", metavar="NN", help="grade these notebooks only (default: all)")
    parser.add_argument("--only", nargs="+", metavar="ID", help="grade these mutants or entries only; print them")
    parser.add_argument("--validator", action="store_true", help="with --only: grade with nbgrader's validator")
    parser.add_argument("--list", action="store_true", help="list the generated mutants and exit")
    parser.add_argument("--workers", type=int, default=2, help="mutants graded at once (default 2)")
    args = parser.parse_args(argv)
    names = select(args.notebooks)
    only = set(args.only) if args.only else None
    if args.list:
        for notebook in names:
            for mutant in notebook_mutants(notebook):
                print(f"{mutant.id:48s} {mutant.description}")
        return 0
    if args.validator:
        if only is None:
            parser.error("--validator needs --only")
        return by_validator(only, names, args.workers)

    record, pattern, started = load(), stderr_pattern(), time.monotonic()
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    for notebook in names:
        generated, catalog = variants_of(notebook, only)
        if not generated and not catalog:
            continue
        print(f"{notebook}: {len(generated)} generated mutants, {len(catalog)} catalog entries", flush=True)
        verdicts, summary = grade_variants(
            notebook, generated + catalog, stderr_pattern=pattern, workers=args.workers, on_verdict=show
        )
        if only is None:
            record["notebooks"][notebook] = {
                "seconds": summary["seconds"],
                "date": date,
                "load": round(os.getloadavg()[0], 1),
                "workers": args.workers,
                "mutants": {id_: record_of(verdicts[id_]) for id_, _, _ in generated},
            }
            record["catalog"].update({name: record_of(verdicts[name]) for name, _, _ in catalog})
    print(f"{(time.monotonic() - started) / 60:.1f} min")
    if only is not None:
        return 0
    record["run"] = {"command": COMMAND, "workers": args.workers, "cpus": os.cpu_count()}
    save(record)
    write_tables(record)
    print(f"wrote {TABLE} and {RESULTS}")
    return 0 if goals_met(record, list(record["notebooks"])) else 1


if __name__ == "__main__":
    sys.exit(main())
