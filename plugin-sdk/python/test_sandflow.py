"""CPython unit tests of the SDK's result and error handling (no wasm): `python3 -m unittest` here with
sdk/ on PYTHONPATH (test.sh does that)."""
import io
import unittest

import sandflow


sandflow.local_log_sink = io.StringIO()  # keep the test output quiet


class Sdk(unittest.TestCase):
    def test_dict_result_and_live_metrics(self):
        def run(ctx):
            sandflow.metric("live", 1)
            sandflow.metric("m", 5)
            return {"output": {"item": ctx.map_item, "i": ctx.map_index}, "metrics": {"m": 2},
                    "branch": ["a"], "sensor_done": True,
                    "trigger": [{"dag_id": "d", "conf": {"k": 1}}, sandflow.Trigger("e")]}
        got = sandflow.run_local(run, {"abi": 1, "map_index": 3, "map_item": {"x": 1}})
        self.assertEqual(got, {"output": {"item": {"x": 1}, "i": 3}, "metrics": {"live": 1.0, "m": 2.0},
                               "branch": ["a"], "sensor": {"done": True},
                               "trigger": [{"dag_id": "d", "conf": {"k": 1}}, {"dag_id": "e", "conf": {}}]})

    def test_none_is_empty_result(self):
        self.assertEqual(sandflow.run_local(lambda ctx: None, {"abi": 1}), {})

    def test_exception_text_is_the_message(self):
        def run(ctx):
            return ctx.params["nope"]
        with self.assertRaises(sandflow.TaskError) as err:
            sandflow.run_local(run, {"abi": 1})
        self.assertEqual(str(err.exception), "'nope'")

    def test_errors(self):
        for value, message in [
            ({"outptu": 1}, "the returned dict has unknown result field(s) 'outptu'"),
            (sandflow.Result(output=float("nan")), "the output is not JSON"),
            (sandflow.Result(metrics={"x": float("inf")}), "metric `x` is inf"),
            (sandflow.Result(metrics={"x": "1"}), "metric `x` is str"),
            (42, "the operator returned int"),
        ]:
            with self.subTest(value=value), self.assertRaises(sandflow.TaskError) as err:
                sandflow.run_local(lambda ctx: value, {"abi": 1})
            self.assertTrue(str(err.exception).startswith(message), str(err.exception))


if __name__ == "__main__":
    unittest.main()
