//! {{name}}: a Sandflow operator in Zig (ABI v1). Sums params.values (default: no numbers) and
//! multiplies the sum by params.scale (default 1). Output: {"count": n, "sum": s}; metric "count".
//!
//! Build: ./build.sh  ->  {{name}}.wasm
//! Test:  sandflow plugin test tests --plugin {{name}}.wasm
const std = @import("std");
const sandflow = @import("sandflow"); // sdk/sandflow.zig, wired up by build.sh

pub fn main(init: std.process.Init) u8 {
    return sandflow.run(init, handle);
}

fn handle(ctx: *sandflow.Context) !sandflow.Result {
    const values: []const f64 = if (ctx.param("values")) |v| try ctx.numbers(v, "params.values") else &.{};
    const scale = ctx.number(ctx.param("scale"), 1, "params.scale");

    var sum: f64 = 0;
    for (values) |x| sum += x;
    sandflow.log("{{name}}: {d} values", .{values.len}); // the log: stderr

    return .{
        .output = try ctx.value(.{ .count = values.len, .sum = sum * scale }),
        .metrics = try ctx.metrics(&.{.{ .name = "count", .value = @floatFromInt(values.len) }}),
    };
}
