"""py-parse-csv: the `parse` task of dags/polyglot.toml, an ABI v2 component written in Python.

params:
  csv            the CSV text, header row first (required)
  column         the header of the column to read (required)
  delimiter      one character (default ",")
  progress_every report progress (and the live `rows`/`skipped` metrics) every N data rows (default 1000)

output: {"column": C, "values": [numbers, in row order], "rows": data rows read, "skipped": rows whose
cell is empty, missing or not a finite number}; metrics {"rows": n, "skipped": k}.

`parse()` is plain Python (no host calls but the optional `on_progress`), so CPython tests import it.
"""
import csv
import io
import math
from typing import Callable, List, Optional

import sandflow
from sandflow import log

# At most this many "row N skipped" lines in the log; a summary counts the rest.
MAX_SKIP_LINES = 5


def parse(text: str, column: str, delimiter: str = ",", progress_every: int = 1000,
          on_progress: Optional[Callable[[int, int, int], None]] = None) -> dict:
    """Reads `column` of the CSV `text`; returns the task's output. Raises TaskError on a bad column.

    on_progress(rows_read, skipped, total_rows) is called every `progress_every` data rows.
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise sandflow.TaskError("params.csv is empty: it has no header row") from None
    names = [h.strip() for h in header]
    if column not in names:
        raise sandflow.TaskError(f"column {column!r} is not in the CSV header {names}")
    index = names.index(column)

    records = [r for r in reader if r]  # csv yields [] for a blank line: not a data row
    values: List[float] = []
    skipped = 0
    for n, record in enumerate(records, start=1):
        cell = record[index].strip() if index < len(record) else ""
        reason = None
        if index >= len(record):
            reason = "is missing (the row is short)"
        elif not cell:
            reason = "is empty"
        else:
            try:
                value = float(cell)
                if not math.isfinite(value):  # "nan", "inf": JSON cannot carry them
                    reason = "is not finite"
            except ValueError:
                reason = "is not a number"
        if reason is None:
            values.append(value)
        else:
            skipped += 1
            if skipped <= MAX_SKIP_LINES:
                log.warn(f"row {n}: {column} = {cell!r} {reason}: skipped")
        if on_progress is not None and n % progress_every == 0:
            on_progress(n, skipped, len(records))
    if skipped > MAX_SKIP_LINES:
        log.warn(f"{skipped} rows skipped in all (only the first {MAX_SKIP_LINES} are logged)")
    return {"column": column, "values": values, "rows": len(records), "skipped": skipped}


def run(ctx: sandflow.Context) -> sandflow.Result:
    p = ctx.params
    text, column = p.get("csv"), p.get("column")
    if not isinstance(text, str):
        raise sandflow.TaskError("params.csv must be the CSV text (a string, header row first)")
    if not isinstance(column, str) or not column:
        raise sandflow.TaskError("params.column must name a column of the CSV header")
    delimiter = p.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise sandflow.TaskError(f"params.delimiter must be one character, got {delimiter!r}")
    every = p.get("progress_every", 1000)
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise sandflow.TaskError(f"params.progress_every must be a positive integer, got {every!r}")

    log.debug(f"parsing {len(text)} characters of CSV, column {column!r}")

    def on_progress(rows: int, skipped: int, total: int) -> None:
        sandflow.progress(rows / total, f"{rows} of {total} rows read")
        sandflow.metric("rows", rows)
        sandflow.metric("skipped", skipped)

    out = parse(text, column, delimiter, every, on_progress)
    sandflow.progress(1.0, f"{out['rows']} rows read")
    log.info(f"column {column!r}: {len(out['values'])} values from {out['rows']} rows, {out['skipped']} skipped")
    return sandflow.Result(output=out, metrics={"rows": out["rows"], "skipped": out["skipped"]})


# The class componentize-py's bindings call for the world's `run` export.
WitWorld = sandflow.export(run)
