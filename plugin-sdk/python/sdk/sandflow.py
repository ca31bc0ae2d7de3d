"""Sandflow's Python SDK for ABI v2 operators (the `sandflow:operator@2.0.0` component world).

An operator is a module (say `app.py`) with a function that takes a `Context` and returns a `Result`
(or a dict, or None), and one line that exports it::

    import sandflow
    from sandflow import log

    def run(ctx: sandflow.Context) -> sandflow.Result:
        numbers = ctx.params.get("numbers", [])
        log.info("summing", len(numbers), "numbers")
        sandflow.progress(0.5, "halfway")
        return sandflow.Result(output={"sum": sum(numbers)}, metrics={"count": len(numbers)})

    WitWorld = sandflow.export(run)   # the class componentize-py's bindings call

Build it with `componentize-py -d sdk/wit -w operator componentize app -p . -p sdk -o NAME.wasm`.

- `ctx.params`, `ctx.conf`, `ctx.inputs`, `ctx.map_item` and `ctx.dag_runs` are plain Python values
  (`json.loads` of the JSON text the host sends).
- `log.trace/debug/info/warn/error(*parts)` write one log line each (parts joined by spaces, like
  `print`); `progress(fraction, message)` and `metric(name, value)` go to the host as they happen.
- Raising any exception fails the try with a task-error whose message is the exception's text (an
  exception other than `sandflow.TaskError` also logs its traceback at level error; raise
  `sandflow.TaskError("...")` for an expected failure such as bad params).

The same module runs under plain CPython, outside wasm, for tests: `python3 sdk/sandflow.py app
CONTEXT.json` (or `python3 -m sandflow app` with `sdk` on PYTHONPATH and the context on stdin) reads
an ABI v1 task context (`{"abi": 1, "params": {...}, ...}`) and prints the ABI v1 task result JSON
that `sandflow plugin test` compares with `*.expected.json`; log lines go to stderr.
"""

from __future__ import annotations

import json
import math
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Union

__all__ = [
    "Context", "Result", "Trigger", "TaskError", "DataInterval",
    "log", "progress", "metric", "export", "run_local",
]

# --- the host: the generated bindings inside the component, a stand-in under plain CPython ----------

try:  # componentize-py generates `wit_world` while it builds the component.
    from wit_world.imports import host as _host
    from wit_world.imports import types as _types
    from componentize_py_types import Err as _Err

    IN_WASM = True
except ImportError:  # plain CPython: tests and `python3 sandflow.py APP CONTEXT`
    _host = None
    _types = None
    _Err = None
    IN_WASM = False

_LEVELS = ("trace", "debug", "info", "warn", "error")

# Metrics sent with `metric()` during a local (CPython) run; the host keeps its own inside wasm.
_local_metrics: Dict[str, float] = {}
# Where log and progress lines go in a local run: None is sys.stderr (tests set a StringIO).
local_log_sink: Any = None


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TaskError(f"metric `{name}` is {type(value).__name__}, not a number")
    number = float(value)
    if not math.isfinite(number):
        raise TaskError(f"metric `{name}` is {number}: the host keeps only finite numbers")
    return number


def _log(level: int, parts: tuple) -> None:
    message = " ".join(str(p) for p in parts)
    for line in message.splitlines() or [""]:  # the host takes one line per call
        if _host is not None:
            _host.log(_host.Level(level), line)
        else:
            print(f"{_LEVELS[level]}: {line}", file=local_log_sink or sys.stderr)


class _Log:
    """The try's log, one line per call, with a level: `log.info("read", n, "rows")`."""

    def trace(self, *parts: Any) -> None:
        _log(0, parts)

    def debug(self, *parts: Any) -> None:
        _log(1, parts)

    def info(self, *parts: Any) -> None:
        _log(2, parts)

    def warn(self, *parts: Any) -> None:
        _log(3, parts)

    warning = warn

    def error(self, *parts: Any) -> None:
        _log(4, parts)


log = _Log()


def progress(fraction: float, message: str = "") -> None:
    """How far the try has come (0.0 to 1.0; the host clamps) and what it is doing, shown live."""
    if _host is not None:
        _host.progress(float(fraction), str(message))
    else:
        print(f"progress: {float(fraction):.2f} {message}", file=local_log_sink or sys.stderr)


def metric(name: str, value: float) -> None:
    """One named figure, stored with the try now; a later call (or the result's metrics) replaces it."""
    number = _finite(name, value)
    if _host is not None:
        _host.metric(str(name), number)
    else:
        _local_metrics[str(name)] = number


# --- what the operator gets and returns -------------------------------------------------------------


class TaskError(Exception):
    """Raise to fail the try with this message (no traceback is logged)."""


@dataclass
class DataInterval:
    """The half-open interval [start, end) a scheduled run covers, RFC 3339 text."""
    start: str
    end: str


@dataclass
class Context:
    """One try's task context. JSON fields are parsed: `params`, `conf`, `inputs` are dicts."""
    dag_id: str = ""
    dag_version: str = ""
    run_id: str = ""
    task_id: str = ""
    map_index: Optional[int] = None
    #: The mapped element (any JSON value); None when the task is not mapped (see `map_index`).
    map_item: Any = None
    try_number: int = 1
    logical_date: Optional[str] = None
    data_interval: Optional[DataInterval] = None
    conf: Dict[str, Any] = field(default_factory=dict)
    params: Dict[str, Any] = field(default_factory=dict)
    #: Upstream outputs keyed by task id.
    inputs: Dict[str, Any] = field(default_factory=dict)
    #: Only for sensors that watch DAGs: their latest runs; None otherwise.
    dag_runs: Optional[Dict[str, Any]] = None


@dataclass
class Trigger:
    """A run of another DAG to start when this try succeeds."""
    dag_id: str
    conf: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    """What a successful try returns. Every field is optional."""
    #: Handed to downstream tasks as `inputs[<this task id>]`; any JSON-serialisable value.
    output: Any = None
    #: Named figures (finite numbers), merged over those sent with `metric()`.
    metrics: Dict[str, float] = field(default_factory=dict)
    #: For branch tasks: the direct downstream tasks to follow.
    branch: Optional[List[str]] = None
    #: For sensors: True ends the wait, False asks to be poked again.
    sensor_done: Optional[bool] = None
    trigger: List[Union[Trigger, Dict[str, Any]]] = field(default_factory=list)


_RESULT_KEYS = ("output", "metrics", "branch", "sensor_done", "sensor", "trigger")


def _as_result(value: Any) -> Result:
    """A Result, from what the operator returned: a Result, a dict of Result's fields, or None."""
    if value is None:
        return Result()
    if isinstance(value, Result):
        return value
    if isinstance(value, dict):
        unknown = [k for k in value if k not in _RESULT_KEYS]
        if unknown:
            raise TaskError(
                f"the returned dict has unknown result field(s) {', '.join(map(repr, unknown))}; "
                f"expected {', '.join(_RESULT_KEYS)} (wrap a plain output as {{'output': ...}})")
        sensor_done = value.get("sensor_done")
        if sensor_done is None and isinstance(value.get("sensor"), dict):
            sensor_done = value["sensor"].get("done")
        return Result(output=value.get("output"), metrics=dict(value.get("metrics") or {}),
                      branch=value.get("branch"), sensor_done=sensor_done,
                      trigger=list(value.get("trigger") or []))
    raise TaskError(f"the operator returned {type(value).__name__}; return a sandflow.Result, a dict "
                    "of its fields, or None")


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise TaskError(f"{what} is not JSON: {err}") from None


def _trigger(entry: Union[Trigger, Dict[str, Any]]) -> Trigger:
    if isinstance(entry, Trigger):
        return entry
    if isinstance(entry, dict) and isinstance(entry.get("dag_id"), str) and set(entry) <= {"dag_id", "conf"}:
        return Trigger(entry["dag_id"], entry.get("conf") or {})
    raise TaskError(f"trigger entry {entry!r} is not a sandflow.Trigger nor {{'dag_id': str, 'conf': dict}}")


def _loads(text: Optional[str], what: str, empty: Any) -> Any:
    if text is None or text.strip() == "":
        return empty
    try:
        return json.loads(text)
    except ValueError as err:
        raise TaskError(f"the host sent {what} that is not JSON: {err}") from None


def _context_from_wit(c: Any) -> Context:
    interval = c.data_interval
    return Context(
        dag_id=c.dag_id, dag_version=c.dag_version, run_id=c.run_id, task_id=c.task_id,
        map_index=c.map_index, map_item=_loads(c.map_item, "map-item", None),
        try_number=c.try_number, logical_date=c.logical_date,
        data_interval=DataInterval(interval.start, interval.end) if interval is not None else None,
        conf=_loads(c.conf, "conf", {}), params=_loads(c.params, "params", {}),
        inputs=_loads(c.inputs, "inputs", {}),
        dag_runs=_loads(c.dag_runs, "dag-runs", None) if c.dag_runs is not None else None)


def _call(handler: Callable[[Context], Any], make_context: Callable[[], Context]) -> Result:
    """Runs the handler; any exception becomes a TaskError carrying the exception's text."""
    try:
        result = _as_result(handler(make_context()))
        for name, value in result.metrics.items():
            _finite(name, value)
        result.trigger = [_trigger(t) for t in result.trigger]
        return result
    except TaskError:
        raise
    except SystemExit as err:
        raise TaskError(f"the operator called sys.exit({err.code!r}): return a result or raise instead") from err
    except Exception as err:  # noqa: BLE001 - every failure of the operator is the try's failure
        log.error("".join(traceback.format_exception(type(err), err, err.__traceback__)).rstrip())
        raise TaskError(str(err) or type(err).__name__) from err


def export(handler: Callable[[Context], Any]) -> type:
    """The class componentize-py's bindings call for the world's `run` export: `WitWorld = export(run)`."""

    class WitWorld:
        def run(self, context: Any) -> Any:
            try:
                result = _call(handler, lambda: _context_from_wit(context))
                output = None if result.output is None else _dumps(result.output, "the output")
                return _types.TaskResult(
                    output=output,
                    metrics=[(str(k), float(v)) for k, v in result.metrics.items()],
                    branch=None if result.branch is None else [str(b) for b in result.branch],
                    sensor_done=None if result.sensor_done is None else bool(result.sensor_done),
                    trigger=[_types.TriggerRequest(t.dag_id, _dumps(t.conf or {}, "a trigger's conf"))
                             for t in result.trigger])
            except TaskError as err:
                raise _Err(_types.TaskError(message=str(err)))
            except Exception as err:  # noqa: BLE001 - a bad result field: fail the try, don't trap
                raise _Err(_types.TaskError(message=f"invalid result: {err}"))

    WitWorld.__qualname__ = WitWorld.__name__ = "WitWorld"
    return WitWorld


# --- plain CPython: run an operator on an ABI v1 task context ---------------------------------------


def context_from_v1(doc: Dict[str, Any]) -> Context:
    """A Context from an ABI v1 task context object (what `sandflow plugin run --input` takes)."""
    interval = doc.get("data_interval")
    return Context(
        dag_id=doc.get("dag_id", ""), dag_version=doc.get("dag_version", ""),
        run_id=doc.get("run_id", ""), task_id=doc.get("task_id", ""),
        map_index=doc.get("map_index"), map_item=doc.get("map_item"),
        try_number=doc.get("try_number", 1), logical_date=doc.get("logical_date"),
        data_interval=DataInterval(interval["start"], interval["end"]) if interval else None,
        conf=doc.get("conf") or {}, params=doc.get("params") or {}, inputs=doc.get("inputs") or {},
        dag_runs=doc.get("dag_runs"))


def result_to_v1(result: Result, sent_metrics: Optional[Dict[str, float]] = None) -> Dict[str, Any]:
    """The ABI v1 task result JSON object the host records for this v2 result."""
    doc: Dict[str, Any] = {}
    if result.output is not None:
        doc["output"] = json.loads(_dumps(result.output, "the output"))
    metrics = dict(sent_metrics or {})
    metrics.update({k: float(v) for k, v in result.metrics.items()})
    if metrics:
        doc["metrics"] = metrics
    if result.branch is not None:
        doc["branch"] = list(result.branch)
    if result.sensor_done is not None:
        doc["sensor"] = {"done": bool(result.sensor_done)}
    if result.trigger:
        doc["trigger"] = [{"dag_id": t.dag_id, "conf": t.conf or {}} for t in map(_trigger, result.trigger)]
    return doc


def run_local(handler: Callable[[Context], Any], context: Dict[str, Any]) -> Dict[str, Any]:
    """Runs `handler` under CPython on an ABI v1 context; returns the v1 result object.

    Raises TaskError (message = what the task-error would carry) when the operator fails.
    """
    _local_metrics.clear()
    result = _call(handler, lambda: context_from_v1(context))
    return result_to_v1(result, _local_metrics)


def main(argv: List[str]) -> int:
    """`python3 sandflow.py MODULE [CONTEXT.json]`: prints the v1 result; or `task-error: MESSAGE` on
    stderr and exit code 1 when the operator fails."""
    import importlib
    import os

    if len(argv) not in (2, 3):
        print("usage: sandflow.py MODULE [CONTEXT.json]   (context on stdin without a file)", file=sys.stderr)
        return 2
    sys.path.insert(0, os.getcwd())
    module = importlib.import_module(argv[1])
    handler = getattr(module, "run", None)
    if handler is None:
        print(f"error: module {argv[1]} has no function `run(ctx)`", file=sys.stderr)
        return 2
    text = open(argv[2], encoding="utf-8").read() if len(argv) == 3 else sys.stdin.read()
    try:
        doc = run_local(handler, json.loads(text or "{}"))
    except TaskError as err:
        print(f"task-error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(doc, sort_keys=True))
    return 0


if __name__ == "__main__":
    # Run as a script, this file is `__main__`: make `import sandflow` in the app use this same module.
    sys.modules.setdefault("sandflow", sys.modules[__name__])
    sys.exit(main(sys.argv))
