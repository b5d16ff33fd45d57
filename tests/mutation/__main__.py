"""Mutation score of the notebooks' tests: ``.venv/bin/python -m tests.mutation``.

Grades every mutant and every alternative of ``tests/mutation/catalog.py`` (see
:mod:`tests.mutation.score`) and writes ``tests/mutation/RESULTS.md``. About half an hour
on 2 busy CPU cores. ``--only NAME...`` grades some entries and only prints their results.
Exits with status 1 when the kill rate is under 95 % or an alternative loses points.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time

from .catalog import ALTERNATIVES, MUTANTS
from .results import RESULTS, kill_rate, render, verdict
from .score import grade_all

GOAL = 0.95
COMMAND = ".venv/bin/python -m tests.mutation"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="notebooks graded at once (default 2)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="grade these entries only; RESULTS.md is kept")
    args = parser.parse_args(argv)
    mutants, alternatives = list(MUTANTS), list(ALTERNATIVES)
    if args.only:
        unknown = set(args.only) - {entry.name for entry in mutants + alternatives}
        if unknown:
            parser.error(f"unknown entries: {', '.join(sorted(unknown))}")
        mutants = [entry for entry in mutants if entry.name in args.only]
        alternatives = [entry for entry in alternatives if entry.name in args.only]

    def show(outcome) -> None:
        print(
            f"{outcome.seconds:5.0f} s  {outcome.entry.kind:11s} {outcome.entry.name:34s} {verdict(outcome)}",
            flush=True,
        )

    started = time.monotonic()
    outcomes = grade_all(mutants, alternatives, workers=args.workers, on_outcome=show)
    seconds = time.monotonic() - started
    killed, total = kill_rate(outcomes)
    kept = sum(o.full_marks for o in outcomes if o.entry.kind == "alternative")
    print(f"kill rate {killed}/{total}; alternatives with full marks {kept}/{len(alternatives)}; {seconds:.0f} s")
    if not args.only:
        date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
        RESULTS.write_text(render(outcomes, command=COMMAND, date=date, seconds=seconds, workers=args.workers))
        print(f"wrote {RESULTS}")
    return 0 if (not total or killed >= GOAL * total) and kept == len(alternatives) else 1


if __name__ == "__main__":
    sys.exit(main())
