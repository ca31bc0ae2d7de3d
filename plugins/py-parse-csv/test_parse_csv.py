"""CPython unit tests of py-parse-csv's logic (no wasm): `python3 -m unittest` in this directory, with
../../plugin-sdk/python/sdk on PYTHONPATH (plugin-sdk/python/test.sh does both)."""
import io
import unittest

import sandflow
import parse_csv


def ctx(**params):
    return {"abi": 1, "params": params}


sandflow.local_log_sink = io.StringIO()  # keep the test output quiet


class ParseCsv(unittest.TestCase):
    def test_contract_example(self):
        got = sandflow.run_local(parse_csv.run, ctx(csv="station,temp\nA,12.5\nB,x\n", column="temp"))
        self.assertEqual(got, {"output": {"column": "temp", "values": [12.5], "rows": 2, "skipped": 1},
                               "metrics": {"rows": 2.0, "skipped": 1.0}})

    def test_missing_column_names_column_and_header(self):
        with self.assertRaises(sandflow.TaskError) as err:
            sandflow.run_local(parse_csv.run, ctx(csv="station,temp\nA,1\n", column="tmp"))
        self.assertEqual(str(err.exception), "column 'tmp' is not in the CSV header ['station', 'temp']")

    def test_bad_params(self):
        for params, message in [
            ({}, "params.csv must be"),
            ({"csv": "a\n1\n"}, "params.column must"),
            ({"csv": "", "column": "a"}, "params.csv is empty"),
            ({"csv": "a\n1\n", "column": "a", "delimiter": ";;"}, "params.delimiter must"),
            ({"csv": "a\n1\n", "column": "a", "progress_every": 0}, "params.progress_every must"),
        ]:
            with self.subTest(params=params), self.assertRaises(sandflow.TaskError) as err:
                sandflow.run_local(parse_csv.run, ctx(**params))
            self.assertTrue(str(err.exception).startswith(message), str(err.exception))

    def test_non_finite_and_blank_lines(self):
        out = parse_csv.parse("v\nnan\n\ninf\n-1e-3\n", "v")
        self.assertEqual(out, {"column": "v", "values": [-0.001], "rows": 3, "skipped": 2})

    def test_progress_every(self):
        seen = []
        parse_csv.parse("v\n" + "1\n" * 7, "v", progress_every=3, on_progress=lambda *a: seen.append(a))
        self.assertEqual(seen, [(3, 0, 7), (6, 0, 7)])

    def test_live_metrics_are_replaced_by_the_result(self):
        got = sandflow.run_local(parse_csv.run, ctx(csv="v\n1\n\n2\nx\n", column="v", progress_every=1))
        self.assertEqual(got["metrics"], {"rows": 3.0, "skipped": 1.0})


if __name__ == "__main__":
    unittest.main()
