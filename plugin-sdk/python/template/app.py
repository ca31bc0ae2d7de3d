"""{{name}}: a Sandflow operator (ABI v2 component) that sums `params.numbers`.

`run` is plain Python: `python3 sdk/sandflow.py app tests/basic.context.json` runs it under CPython.
"""
import sandflow
from sandflow import log


def run(ctx: sandflow.Context) -> sandflow.Result:
    numbers = ctx.params.get("numbers", [])
    if not isinstance(numbers, list) or not all(
            isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers):
        raise sandflow.TaskError(f"params.numbers must be a list of numbers, got {numbers!r}")
    total = sum(numbers)
    log.info(f"{{name}}: task {ctx.task_id or '?'} try {ctx.try_number}: sum of {len(numbers)} numbers is {total}")
    return sandflow.Result(output={"count": len(numbers), "sum": total}, metrics={"count": len(numbers)})


# The class componentize-py's bindings call for the world's `run` export.
WitWorld = sandflow.export(run)
