//! Numbers keep their value on the way from one task's output to the next task's input: through the
//! sandbox's parse of the result, the store, and the context the scheduler writes.

use sandflow_core::state::RunState;
use serde_json::Value;

use crate::Harness;

/// Floats that do not survive f32 or 15 significant digits, the extremes of f64 (subnormals, the
/// smallest normal, the largest finite), and long decimal expansions.
const FLOATS: &[&str] = &[
    "0.30000000000000004",
    "0.1",
    "1e-310",
    "2.2250738585072014e-308",
    "2.225073858507201e-308",
    "1.7976931348623157e308",
    "5e-324",
    "4.9406564584124654e-324",
    "-0.0",
    "0.1000000000000000055511151231257827021181583404541015625",
    "1.00000000000000011102230246251565404236316680908203125",
    "0.39438292681909304",
    "0.78309922375860586",
    "0.79844003347607329",
    "12345.678901234567",
    "6.0221407600000003e23",
    "1.2345678901234567e-200",
    "9.8765432109876543e300",
    "-7.2057594037927933e16",
];

/// Integers that a float cannot hold, and the ends of i64 and u64.
const INTEGERS: &[&str] = &["9007199254740993", "-9007199254740993", "-9223372036854775808", "18446744073709551615"];

#[tokio::test]
async fn numbers_reach_the_next_task_exactly() {
    let numbers = [FLOATS, INTEGERS].concat().join(", ");
    let result = format!(r#"{{"output": {{"numbers": [{numbers}]}}}}"#);
    let dag = format!(
        r#"
id = "numbers"
[tasks.emit]
plugin = "plugins/hostile.wasm"
params = {{ mode = "raw", text = '{result}' }}
[tasks.see]
plugin = "plugins/hostile.wasm"
upstream = ["emit"]
params = {{ mode = "context" }}
"#
    );
    let mut h = Harness::start(&[("numbers", &dag)]).await;
    let (run, state) = h.run("numbers", serde_json::json!({})).await;
    if state != RunState::Success {
        let tis = h.store.task_instances(&run.run_id).await.unwrap();
        let reasons: Vec<_> = tis.iter().map(|t| format!("{} {}: {:?}", t.task_id, t.state, t.reason)).collect();
        panic!("run {state}: {reasons:#?}");
    }
    let context = h.output(&run.run_id, "see").await;
    let context: Value = serde_json::from_str(context.as_str().expect("the raw context, as a string")).unwrap();
    let received = context["inputs"]["emit"]["numbers"].as_array().expect("inputs.emit.numbers").clone();
    let stored = h.output(&run.run_id, "emit").await["numbers"].as_array().unwrap().clone();

    assert_eq!(received.len(), FLOATS.len() + INTEGERS.len());
    let mut changed = Vec::new();
    for (text, got) in FLOATS.iter().zip(&received) {
        let want: f64 = text.parse().unwrap();
        if got.as_f64().map(f64::to_bits) != Some(want.to_bits()) {
            changed.push(format!("{text} arrived as {got}, not {want:e}"));
        }
    }
    for (text, got) in INTEGERS.iter().zip(&received[FLOATS.len()..]) {
        if !(got.is_i64() || got.is_u64()) || &got.to_string() != text {
            changed.push(format!("{text} arrived as {got}"));
        }
    }
    assert!(changed.is_empty(), "numbers changed on the way:\n{}", changed.join("\n"));
    assert_eq!(stored, received, "what the store holds is what the next task got");
}

#[test]
fn this_tests_json_parser_reads_the_floats_exactly() {
    // The assertions above parse the context with serde_json too: check that parse first.
    let inexact: Vec<&str> = FLOATS
        .iter()
        .copied()
        .filter(|text| serde_json::from_str::<f64>(text).unwrap().to_bits() != text.parse::<f64>().unwrap().to_bits())
        .collect();
    assert!(inexact.is_empty(), "serde_json parses these inexactly: {inexact:?}");
}
