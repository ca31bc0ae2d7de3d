//! histogram: equal-width histogram of a list of numbers, in Zig on the Sandflow Zig SDK.
//!
//! Numbers: inputs[params.from].values (params.from defaults to "clean", the upstream task of the
//! polyglot DAG), else params.values when that input is absent. params.bins (default 10, 1..10000)
//! equal-width bins from min to max; every bin is [lo, hi) except the last, [lo, max], which holds max.
//! Output: {"bins": [{"lo": x, "hi": y, "count": n}, ...]}; an empty list gives {"bins": []}, and a
//! list whose numbers are all equal gives one bin {"lo": x, "hi": x, "count": n}.
//! Metrics: {"values": n, "bins": k}.
//!
//! Build: plugins/zig-histogram/build.sh OUT.wasm
const std = @import("std");
const sandflow = @import("sandflow");

pub fn main(init: std.process.Init) u8 {
    return sandflow.run(init, histogram);
}

const Bin = struct { lo: f64, hi: f64, count: u64 };

fn histogram(ctx: *sandflow.Context) !sandflow.Result {
    const from = ctx.string(ctx.param("from"), "clean", "params.from").?;
    const xs = if (ctx.input(from)) |upstream| blk: {
        const values = switch (upstream) {
            .object => |o| o.get("values"),
            else => null,
        };
        const what = try std.fmt.allocPrint(ctx.arena, "inputs.{s}.values", .{from});
        break :blk try ctx.numbers(values, what);
    } else if (ctx.param("values") != null)
        try ctx.numbers(ctx.param("values"), "params.values")
    else
        ctx.fail("no numbers: expected inputs.{s}.values (an upstream task `{s}`) or params.values", .{ from, from });

    const bins_wanted = ctx.integer(ctx.param("bins"), 10, "params.bins");
    if (bins_wanted < 1 or bins_wanted > 10000)
        ctx.fail("params.bins must be between 1 and 10000, not {d}", .{bins_wanted});

    const bins = try bin(ctx.arena, xs, @intCast(bins_wanted));
    sandflow.log("histogram of {d} values in {d} bins", .{ xs.len, bins.len });
    return .{
        .output = try ctx.value(.{ .bins = bins }),
        .metrics = try ctx.metrics(&.{
            .{ .name = "values", .value = @floatFromInt(xs.len) },
            .{ .name = "bins", .value = @floatFromInt(bins.len) },
        }),
    };
}

/// The histogram itself: `n` equal-width bins from min to max, the last one closed.
fn bin(arena: std.mem.Allocator, xs: []const f64, n: usize) ![]Bin {
    if (xs.len == 0) return &.{};
    var min = xs[0];
    var max = xs[0];
    for (xs) |x| {
        min = @min(min, x);
        max = @max(max, x);
    }
    if (min == max) {
        const one = try arena.alloc(Bin, 1);
        one[0] = .{ .lo = min, .hi = max, .count = xs.len };
        return one;
    }
    const bins = try arena.alloc(Bin, n);
    const width = (max - min) / @as(f64, @floatFromInt(n));
    if (!std.math.isFinite(width)) sandflow.fail("the values span {e} to {e}: too wide a range for f64 bins", .{ min, max });
    for (bins, 0..) |*b, i| {
        b.* = .{ .lo = edge(min, width, i), .hi = if (i + 1 == n) max else edge(min, width, i + 1), .count = 0 };
    }
    for (xs) |x| {
        var i: usize = @intFromFloat(@min(@floor((x - min) / width), @as(f64, @floatFromInt(n - 1))));
        // The division may round across an edge: settle on the bin whose [lo, hi) holds x.
        while (i + 1 < n and x >= bins[i + 1].lo) i += 1;
        while (i > 0 and x < bins[i].lo) i -= 1;
        bins[i].count += 1;
    }
    return bins;
}

fn edge(min: f64, width: f64, i: usize) f64 {
    return min + width * @as(f64, @floatFromInt(i));
}
