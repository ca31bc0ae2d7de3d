//! sandflow.zig: the Zig SDK for Sandflow operators (ABI v1, the WASI command ABI; plugin-sdk/ABI.md).
//!
//! A plugin reads the task context (JSON) on stdin, writes the task result (JSON) on stdout, logs on
//! stderr and exits 0 on success. `run` does all of that around your handler:
//!
//! ```zig
//! const std = @import("std");
//! const sandflow = @import("sdk/sandflow.zig");
//!
//! pub fn main(init: std.process.Init) u8 {
//!     return sandflow.run(init, handle);
//! }
//!
//! fn handle(ctx: *sandflow.Context) !sandflow.Result {
//!     const xs = try ctx.numbers(ctx.param("values"), "params.values");
//!     var sum: f64 = 0;
//!     for (xs) |x| sum += x;
//!     sandflow.log("summing {d} numbers", .{xs.len});
//!     return .{ .output = try ctx.value(.{ .sum = sum }), .metrics = &.{.{ .name = "count", .value = @floatFromInt(xs.len) }} };
//! }
//! ```
//!
//! Exit codes, as the Rust SDK: 0 success; 1 the handler failed (`ctx.fail(...)` or a returned error;
//! the reason is logged as `error: ...`); 2 stdin was not an ABI v1 context (bad JSON, no `abi`, or
//! `abi` other than 1); 3 the result could not be written (e.g. a metric that is NaN or infinite).
//!
//! Written for Zig 0.17 (`std.process.Init`, `std.Io`). All memory comes from one arena that lives for
//! the whole try: nothing needs freeing.
const std = @import("std");
const json = std.json;
const Value = json.Value;
const Writer = std.Io.Writer;

/// One named figure of the result's `metrics` (a finite number).
pub const Metric = struct { name: []const u8, value: f64 };

/// What a handler returns: the task's `output` (handed to downstream tasks; `.null` leaves it out)
/// and its `metrics`.
pub const Result = struct {
    output: Value = .null,
    metrics: []const Metric = &.{},
};

/// The task context, parsed, with helpers. `root` is the whole context object.
pub const Context = struct {
    /// The arena every SDK allocation uses; use it for yours too (it is freed when the process ends).
    arena: std.mem.Allocator,
    io: std.Io,
    root: Value,
    /// `params` as an object (empty when missing or null).
    params: json.ObjectMap,
    /// `inputs` as an object (upstream task id -> its output; empty when missing or null).
    inputs: json.ObjectMap,

    /// params[name], or null when it is missing or JSON null.
    pub fn param(self: *const Context, name: []const u8) ?Value {
        return nonNull(self.params.get(name));
    }

    /// inputs[task]: that upstream task's output, or null when missing or JSON null.
    pub fn input(self: *const Context, task: []const u8) ?Value {
        return nonNull(self.inputs.get(task));
    }

    /// A top-level context field (`task_id`, `try_number`, `map_item`...), or null.
    pub fn field(self: *const Context, name: []const u8) ?Value {
        return nonNull(self.root.object.get(name));
    }

    /// Logs `error: <message>` and exits 1: the try fails with that message in its log.
    pub fn fail(self: *const Context, comptime fmt: []const u8, args: anytype) noreturn {
        _ = self;
        failCode(1, fmt, args);
    }

    /// v as an array of numbers (integers or floats), or fails naming `what` ("params.values").
    pub fn numbers(self: *const Context, v: ?Value, what: []const u8) ![]f64 {
        const arr = switch (v orelse self.fail("{s} must be an array of numbers (it is missing)", .{what})) {
            .array => |a| a.items,
            else => self.fail("{s} must be an array of numbers, not {s}", .{ what, typeName(v.?) }),
        };
        const out = try self.arena.alloc(f64, arr.len);
        for (arr, 0..) |item, i| {
            out[i] = asNumber(item) orelse
                self.fail("{s} must contain only numbers: element {d} is {s}", .{ what, i, typeName(item) });
        }
        return out;
    }

    /// v as an integer (a JSON integer, or a float with no fraction), dflt when null, else fails.
    pub fn integer(self: *const Context, v: ?Value, dflt: i64, what: []const u8) i64 {
        const x = v orelse return dflt;
        switch (x) {
            .integer => |i| return i,
            .float => |f| if (@floor(f) == f and @abs(f) < 9.0e15) return @intFromFloat(f),
            else => {},
        }
        self.fail("{s} must be an integer, not {s}", .{ what, typeName(x) });
    }

    /// v as a number, dflt when null, else fails naming `what`.
    pub fn number(self: *const Context, v: ?Value, dflt: f64, what: []const u8) f64 {
        const x = v orelse return dflt;
        return asNumber(x) orelse self.fail("{s} must be a number, not {s}", .{ what, typeName(x) });
    }

    /// v as a string, dflt when null, else fails naming `what`.
    pub fn string(self: *const Context, v: ?Value, dflt: ?[]const u8, what: []const u8) ?[]const u8 {
        const x = v orelse return dflt;
        return switch (x) {
            .string => |s| s,
            else => self.fail("{s} must be a string, not {s}", .{ what, typeName(x) }),
        };
    }

    /// Any Zig value as a JSON Value: structs become objects (fields in order), slices and arrays
    /// arrays, `[]const u8` strings, optionals null or their value, enums their tag's name, numbers
    /// numbers. `try ctx.value(.{ .count = n, .items = xs })`.
    pub fn value(self: *const Context, v: anytype) !Value {
        return toValue(self.arena, v);
    }

    /// A copy of `list` in the arena, for `Result.metrics`: a `&.{ ... }` literal with run-time values
    /// lives in the handler's stack frame, which is gone by the time the result is written.
    pub fn metrics(self: *const Context, list: []const Metric) ![]const Metric {
        return self.arena.dupe(Metric, list);
    }

    /// A new empty JSON object to fill with `try obj.object.put(ctx.arena, "key", value)`.
    pub fn object(self: *const Context) Value {
        _ = self;
        return .{ .object = .empty };
    }
};

/// See Context.value.
pub fn toValue(arena: std.mem.Allocator, v: anytype) std.mem.Allocator.Error!Value {
    const T = @TypeOf(v);
    if (T == Value) return v;
    switch (@typeInfo(T)) {
        .null, .void => return .null,
        .bool => return .{ .bool = v },
        .int, .comptime_int => {
            if (std.math.cast(i64, v)) |i| return .{ .integer = i };
            return .{ .float = @floatFromInt(v) };
        },
        .float, .comptime_float => return .{ .float = @floatCast(v) },
        .optional => return if (v) |inner| toValue(arena, inner) else .null,
        .@"enum", .enum_literal => return .{ .string = @tagName(v) },
        .array => return toValue(arena, &v),
        .pointer => |ptr| switch (ptr.size) {
            .one => switch (@typeInfo(ptr.child)) {
                .array => |arr| {
                    if (arr.child == u8) return .{ .string = v };
                    return toValue(arena, @as([]const arr.child, v));
                },
                else => return toValue(arena, v.*),
            },
            .slice => {
                if (ptr.child == u8) return .{ .string = v };
                var list = try json.Array.initCapacity(arena, v.len);
                for (v) |item| list.appendAssumeCapacity(try toValue(arena, item));
                return .{ .array = list };
            },
            else => @compileError("sandflow.toValue: unsupported pointer type " ++ @typeName(T)),
        },
        .@"struct" => |st| {
            var obj: json.ObjectMap = .empty;
            inline for (st.field_names) |name| try obj.put(arena, name, try toValue(arena, @field(v, name)));
            return .{ .object = obj };
        },
        else => @compileError("sandflow.toValue: unsupported type " ++ @typeName(T)),
    }
}

fn nonNull(v: ?Value) ?Value {
    const x = v orelse return null;
    return if (x == .null) null else x;
}

/// A JSON number as f64 (integers and big numbers included), or null for any other type.
pub fn asNumber(v: Value) ?f64 {
    return switch (v) {
        .integer => |i| @floatFromInt(i),
        .float => |f| f,
        .number_string => |s| std.fmt.parseFloat(f64, s) catch null,
        else => null,
    };
}

/// The JSON type of v, for messages: "null", "a boolean", "a number", "a string", "an array", "an object".
pub fn typeName(v: Value) []const u8 {
    return switch (v) {
        .null => "null",
        .bool => "a boolean",
        .integer, .float, .number_string => "a number",
        .string => "a string",
        .array => "an array",
        .object => "an object",
    };
}

/// A line on the log (stderr), std.fmt style; the newline is added.
pub fn log(comptime fmt: []const u8, args: anytype) void {
    std.debug.print(fmt ++ "\n", args);
}

/// Logs `error: <message>` and exits 1.
pub fn fail(comptime fmt: []const u8, args: anytype) noreturn {
    failCode(1, fmt, args);
}

/// Logs `error: <message>` and exits with `code`.
pub fn failCode(code: u8, comptime fmt: []const u8, args: anytype) noreturn {
    std.debug.print("error: " ++ fmt ++ "\n", args);
    std.process.exit(code);
}

/// Reads the context, calls `handler`, writes its result; returns the exit code for `main`.
pub fn run(init: std.process.Init, comptime handler: fn (*Context) anyerror!Result) u8 {
    const arena = init.arena.allocator();
    const io = init.io;

    var in_buf: [4096]u8 = undefined;
    var stdin = std.Io.File.stdin().readerStreaming(io, &in_buf);
    const text = stdin.interface.allocRemaining(arena, .unlimited) catch |err|
        failCode(2, "could not read the task context from stdin: {t}", .{err});

    var ctx = parseContext(arena, io, text);
    const result = handler(&ctx) catch |err| failCode(1, "{t}", .{err});

    for (result.metrics) |m| {
        if (!std.math.isFinite(m.value))
            failCode(3, "metric `{s}` is {s}: JSON carries only finite numbers", .{ m.name, if (std.math.isNan(m.value)) "NaN" else "infinite" });
    }
    var out_buf: [4096]u8 = undefined;
    var stdout = std.Io.File.stdout().writerStreaming(io, &out_buf);
    writeResult(&stdout.interface, result) catch |err| failCode(3, "could not write the result: {t}", .{err});
    return 0;
}

/// Parses the context text (exits 2 when it is not an ABI v1 context). `run` calls it; exposed for tests.
pub fn parseContext(arena: std.mem.Allocator, io: std.Io, text: []const u8) Context {
    var scanner = json.Scanner.initCompleteInput(arena, text);
    var diag: json.Diagnostics = .{};
    scanner.enableDiagnostics(&diag);
    const root = json.parseFromTokenSourceLeaky(Value, arena, &scanner, .{ .duplicate_field_behavior = .use_first }) catch |err|
        failCode(2, "the task context is not valid JSON: {t} at line {d} column {d}", .{ err, diag.getLine(), diag.getColumn() });
    if (root != .object) failCode(2, "the task context must be a JSON object, not {s}", .{typeName(root)});
    const abi = root.object.get("abi") orelse failCode(2, "the task context has no `abi` field", .{});
    if ((asNumber(abi) orelse 0) != 1) failCode(2, "unsupported ABI version in the task context: this plugin speaks ABI 1", .{});
    return .{
        .arena = arena,
        .io = io,
        .root = root,
        .params = objectField(root, "params"),
        .inputs = objectField(root, "inputs"),
    };
}

fn objectField(root: Value, name: []const u8) json.ObjectMap {
    const v = root.object.get(name) orelse return .empty;
    return switch (v) {
        .object => |o| o,
        .null => .empty,
        else => fail("the task context's {s} must be an object, not {s}", .{ name, typeName(v) }),
    };
}

/// Writes `{"output":...,"metrics":{...}}` (leaving out a null output and empty metrics) and flushes.
pub fn writeResult(w: *Writer, result: Result) Writer.Error!void {
    try w.writeByte('{');
    var first = true;
    if (result.output != .null) {
        try w.writeAll("\"output\":");
        try writeValue(w, result.output);
        first = false;
    }
    if (result.metrics.len > 0) {
        if (!first) try w.writeByte(',');
        try w.writeAll("\"metrics\":{");
        for (result.metrics, 0..) |m, i| {
            if (i > 0) try w.writeByte(',');
            try writeString(w, m.name);
            try w.writeByte(':');
            try writeNumber(w, m.value);
        }
        try w.writeByte('}');
    }
    try w.writeByte('}');
    try w.flush();
}

/// Writes a JSON value, compact. Floats use writeNumber's format.
pub fn writeValue(w: *Writer, v: Value) Writer.Error!void {
    switch (v) {
        .null => try w.writeAll("null"),
        .bool => |b| try w.writeAll(if (b) "true" else "false"),
        .integer => |i| try w.print("{d}", .{i}),
        .float => |f| try writeNumber(w, f),
        .number_string => |s| try w.writeAll(s),
        .string => |s| try writeString(w, s),
        .array => |a| {
            try w.writeByte('[');
            for (a.items, 0..) |item, i| {
                if (i > 0) try w.writeByte(',');
                try writeValue(w, item);
            }
            try w.writeByte(']');
        },
        .object => |o| {
            try w.writeByte('{');
            var it = o.iterator();
            var i: usize = 0;
            while (it.next()) |entry| : (i += 1) {
                if (i > 0) try w.writeByte(',');
                try writeString(w, entry.key_ptr.*);
                try w.writeByte(':');
                try writeValue(w, entry.value_ptr.*);
            }
            try w.writeByte('}');
        },
    }
}

/// A number in the shortest form that reads back as the same f64: whole numbers below 2^53 without a
/// fraction ("3"), others as "0.1", "1.5e-7", "1e300" (always with an exponent from 2^53 up). NaN and infinities (not JSON) become null.
pub fn writeNumber(w: *Writer, x: f64) Writer.Error!void {
    if (!std.math.isFinite(x)) return w.writeAll("null");
    if (@floor(x) == x and @abs(x) < 9007199254740992.0) {
        if (x == 0 and std.math.signbit(x)) return w.writeAll("-0");
        return w.print("{d}", .{@as(i64, @intFromFloat(x))});
    }
    const a = @abs(x);
    // Not from 2^53 up: "1283719970930836700" would read back as a different (integer) number.
    if (a >= 1e-5 and a < 9007199254740992.0) return w.print("{d}", .{x});
    return w.print("{e}", .{x});
}

/// A JSON string, escaped.
pub fn writeString(w: *Writer, s: []const u8) Writer.Error!void {
    try w.writeByte('"');
    for (s) |c| {
        switch (c) {
            '"' => try w.writeAll("\\\""),
            '\\' => try w.writeAll("\\\\"),
            '\n' => try w.writeAll("\\n"),
            '\r' => try w.writeAll("\\r"),
            '\t' => try w.writeAll("\\t"),
            0...8, 11, 12, 14...0x1f => try w.print("\\u{x:0>4}", .{c}),
            else => try w.writeByte(c),
        }
    }
    try w.writeByte('"');
}
