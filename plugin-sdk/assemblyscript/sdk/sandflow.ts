/**
 * Sandflow plugin SDK for AssemblyScript (ABI v1, the WASI command ABI).
 *
 * A plugin reads one JSON task context on stdin, writes one JSON task result on stdout, logs on stderr
 * and ends with exit code 0 for success (see plugin-sdk/ABI.md). AssemblyScript has no JSON library,
 * so this file carries a small one: a DOM (`JValue`), a parser (`parseJSON`) and a writer
 * (`JValue.toJSON`).
 *
 * Build with the `asc` shim (plugin-sdk/assemblyscript/install.sh), which adds the wasi-shim config:
 *
 *     asc main.ts -O3 --noAssert -o plugin.wasm
 *
 * Typical use:
 *
 *     import { run, Context, Result, JValue, fail } from "./sdk/sandflow";
 *     function handle(ctx: Context): Result {
 *       const xs = ctx.numbers("values");          // params.values as f64[] (fails if not numbers)
 *       let sum = 0.0;
 *       for (let i = 0; i < xs.length; i++) sum += xs[i];
 *       const out = JValue.newObject().set("sum", JValue.newNumber(sum));
 *       return new Result().withOutput(out).metric("count", <f64>xs.length);
 *     }
 *     run(handle);
 *
 * Errors: AssemblyScript has no `catch`; a `throw` aborts with exit code 255. Report bad input with
 * `fail(message)` instead: it logs `error: <message>` and exits with code 1. Exit codes follow the Rust
 * SDK: 1 the handler failed, 2 stdin was not a valid ABI v1 context, 3 the result could not be written.
 */

// ---------------------------------------------------------------------------------------------------
// WASI preview1 imports (the same ones @assemblyscript/wasi-shim uses; declared here so that the SDK
// can loop over partial reads and writes).

// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_read")
declare function wasi_fd_read(fd: u32, iovs: usize, iovs_len: usize, nread: usize): u16;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_write")
declare function wasi_fd_write(fd: u32, iovs: usize, iovs_len: usize, nwritten: usize): u16;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "proc_exit")
declare function wasi_proc_exit(code: u32): void;

/** Ends the plugin now with exit `code` (0 = success). Never returns. */
export function exit(code: i32): void {
  wasi_proc_exit(<u32>code);
  unreachable();
}

function writeAll(fd: u32, data: ArrayBuffer): bool {
  const iov = new ArrayBuffer(16); // iovec {buf, len} + nwritten
  const base = changetype<usize>(iov);
  let ptr = changetype<usize>(data);
  let left = <usize>data.byteLength;
  while (left > 0) {
    store<u32>(base, <u32>ptr);
    store<u32>(base + 4, <u32>left);
    const err = wasi_fd_write(fd, base, 1, base + 8);
    if (err != 0) return false;
    const n = <usize>load<u32>(base + 8);
    if (n == 0) return false;
    ptr += n;
    left -= n;
  }
  return true;
}

/** Reads all of stdin (to end of file) and decodes it as UTF-8. */
export function readStdin(): string {
  let cap = 65536;
  let buf = new ArrayBuffer(cap);
  let len = 0;
  const iov = new ArrayBuffer(16);
  const base = changetype<usize>(iov);
  while (true) {
    if (len == cap) {
      const bigger = new ArrayBuffer(cap * 2);
      memory.copy(changetype<usize>(bigger), changetype<usize>(buf), <usize>len);
      buf = bigger;
      cap *= 2;
    }
    store<u32>(base, <u32>(changetype<usize>(buf) + <usize>len));
    store<u32>(base + 4, <u32>(cap - len));
    const err = wasi_fd_read(0, base, 1, base + 8);
    if (err != 0) {
      log("error: reading stdin failed (WASI errno " + err.toString() + ")");
      exit(2);
    }
    const n = <i32>load<u32>(base + 8);
    if (n == 0) break;
    len += n;
  }
  return String.UTF8.decodeUnsafe(changetype<usize>(buf), <usize>len);
}

/** Writes `text` on stdout as UTF-8. Only the result belongs there: use `log` for anything else. */
export function writeStdout(text: string): bool {
  return writeAll(1, String.UTF8.encode(text));
}

/** Writes one line on stderr, the task's log (the host prefixes each line with the time). */
export function log(message: string): void {
  writeAll(2, String.UTF8.encode(message + "\n"));
}

/** Fails the task: logs `error: <message>` and exits with code 1. Never returns. */
export function fail(message: string): void {
  log("error: " + message);
  exit(1);
}

// ---------------------------------------------------------------------------------------------------
// JSON DOM

/** The kind of a JSON value. */
export enum JKind { Null, Bool, Number, String, Array, Object }

/**
 * One JSON value. Objects keep their keys in insertion order (parallel `keys`/`values` arrays; lookup is
 * linear, which is fine for the small objects a task context carries). Numbers are f64.
 */
export class JValue {
  kind: JKind = JKind.Null;
  bool: bool = false;
  num: f64 = 0;
  str: string = "";
  /** Array elements (kind Array). */
  items: Array<JValue> = [];
  /** Object keys and values (kind Object), in order. */
  keys: Array<string> = [];
  values: Array<JValue> = [];

  static newNull(): JValue { return new JValue(); }
  static newBool(b: bool): JValue { const v = new JValue(); v.kind = JKind.Bool; v.bool = b; return v; }
  static newNumber(n: f64): JValue { const v = new JValue(); v.kind = JKind.Number; v.num = n; return v; }
  static newString(s: string): JValue { const v = new JValue(); v.kind = JKind.String; v.str = s; return v; }
  static newArray(): JValue { const v = new JValue(); v.kind = JKind.Array; return v; }
  static newObject(): JValue { const v = new JValue(); v.kind = JKind.Object; return v; }
  /** An array of numbers. */
  static fromNumbers(xs: Array<f64>): JValue {
    const v = JValue.newArray();
    for (let i = 0; i < xs.length; i++) v.items.push(JValue.newNumber(xs[i]));
    return v;
  }
  /** A number, or null when `n` is NaN (used as "no value", e.g. a quantile of no data). */
  static numberOrNull(n: f64): JValue { return isNaN(n) ? JValue.newNull() : JValue.newNumber(n); }

  isNull(): bool { return this.kind == JKind.Null; }
  isBool(): bool { return this.kind == JKind.Bool; }
  isNumber(): bool { return this.kind == JKind.Number; }
  isString(): bool { return this.kind == JKind.String; }
  isArray(): bool { return this.kind == JKind.Array; }
  isObject(): bool { return this.kind == JKind.Object; }

  /** The member `key` of an object, or null (also when this is not an object). */
  get(key: string): JValue | null {
    if (this.kind != JKind.Object) return null;
    for (let i = 0; i < this.keys.length; i++) if (this.keys[i] == key) return this.values[i];
    return null;
  }
  /** Whether an object has the member `key` (even if its value is null). */
  has(key: string): bool { return this.get(key) !== null; }
  /** Sets (or replaces) the member `key` of an object; returns this object, for chaining. */
  set(key: string, value: JValue): JValue {
    for (let i = 0; i < this.keys.length; i++) {
      if (this.keys[i] == key) { this.values[i] = value; return this; }
    }
    this.keys.push(key);
    this.values.push(value);
    return this;
  }
  /** Appends to an array; returns this array, for chaining. */
  push(value: JValue): JValue { this.items.push(value); return this; }
  /** The number of array elements or object members (0 otherwise). */
  get length(): i32 {
    return this.kind == JKind.Array ? this.items.length : this.kind == JKind.Object ? this.keys.length : 0;
  }
  /** Array element `i`, or null when out of range or not an array. */
  at(i: i32): JValue | null {
    if (this.kind != JKind.Array || i < 0 || i >= this.items.length) return null;
    return this.items[i];
  }

  /** This number, or `fallback` when it is not a number. */
  numberOr(fallback: f64): f64 { return this.kind == JKind.Number ? this.num : fallback; }
  /** This string, or `fallback` when it is not a string. */
  stringOr(fallback: string): string { return this.kind == JKind.String ? this.str : fallback; }
  /** This bool, or `fallback` when it is not a bool. */
  boolOr(fallback: bool): bool { return this.kind == JKind.Bool ? this.bool : fallback; }

  /**
   * This array of numbers as f64[], or null when this is not an array or an element is not a number.
   */
  toNumbers(): Array<f64> | null {
    if (this.kind != JKind.Array) return null;
    const out = new Array<f64>(this.items.length);
    for (let i = 0; i < this.items.length; i++) {
      const it = this.items[i];
      if (it.kind != JKind.Number) return null;
      out[i] = it.num;
    }
    return out;
  }

  /** Compact JSON text (no white space). NaN and infinities, which JSON lacks, are written as null. */
  toJSON(): string {
    const parts = new Array<string>();
    writeValue(this, parts);
    return parts.join("");
  }
  toString(): string { return this.toJSON(); }
}

function hex4(c: i32): string {
  const digits = "0123456789abcdef";
  return "\\u" + digits.charAt((c >> 12) & 15) + digits.charAt((c >> 8) & 15) +
    digits.charAt((c >> 4) & 15) + digits.charAt(c & 15);
}

/** `s` as a JSON string literal, quotes included. */
export function quoteJSON(s: string): string {
  const parts = new Array<string>();
  parts.push("\"");
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let esc: string | null = null;
    if (c == 0x22) esc = "\\\"";
    else if (c == 0x5c) esc = "\\\\";
    else if (c == 0x0a) esc = "\\n";
    else if (c == 0x0d) esc = "\\r";
    else if (c == 0x09) esc = "\\t";
    else if (c == 0x08) esc = "\\b";
    else if (c == 0x0c) esc = "\\f";
    else if (c < 0x20) esc = hex4(c);
    if (esc !== null) {
      if (i > start) parts.push(s.substring(start, i));
      parts.push(esc);
      start = i + 1;
    }
  }
  if (start < s.length) parts.push(s.substring(start));
  parts.push("\"");
  return parts.join("");
}

/**
 * `n` as JSON: integral values below 2^53 without a fraction (`3`, not `3.0`); others with
 * AssemblyScript's formatter (Grisu2), which always reads back as the same f64 and has the shortest
 * length, though its last digit may differ from the closest one JavaScript / serde would print
 * (`0.30000000000000007` for `0.1 + 0.2`, the same double as `0.30000000000000004`). NaN and
 * infinities, which JSON lacks, are written as `null`; -0 as `0`.
 */
export function numberJSON(n: f64): string {
  if (!isFinite(n)) return "null";
  if (n == Math.floor(n) && Math.abs(n) < 9007199254740992.0) return (<i64>n).toString();
  const s = n.toString();
  return s.endsWith(".0") ? s.substring(0, s.length - 2) : s; // AS prints 1e20 as "100000000000000000000.0"
}

function writeValue(v: JValue, out: Array<string>): void {
  switch (v.kind) {
    case JKind.Null: out.push("null"); break;
    case JKind.Bool: out.push(v.bool ? "true" : "false"); break;
    case JKind.Number: out.push(numberJSON(v.num)); break;
    case JKind.String: out.push(quoteJSON(v.str)); break;
    case JKind.Array: {
      out.push("[");
      for (let i = 0; i < v.items.length; i++) {
        if (i > 0) out.push(",");
        writeValue(v.items[i], out);
      }
      out.push("]");
      break;
    }
    case JKind.Object: {
      out.push("{");
      for (let i = 0; i < v.keys.length; i++) {
        if (i > 0) out.push(",");
        out.push(quoteJSON(v.keys[i]));
        out.push(":");
        writeValue(v.values[i], out);
      }
      out.push("}");
      break;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// JSON parser

let lastParseError = "";

/** Why the last `parseJSON` call returned null (empty after a success). */
export function parseError(): string { return lastParseError; }

// Decimal to f64, correctly rounded (AssemblyScript's parseFloat is not: it reads 0.30000000000000004
// as 0.30000000000000007). Exact fast path when the digits fit in 2^53 and the power of ten is at most
// 1e22; otherwise start from parseFloat's guess and correct it by comparing the exact decimal value with
// the midpoints to the neighbouring doubles, in big-integer arithmetic.

const POW10: StaticArray<f64> = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13,
  1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22];

/** Little-endian base-2^32 unsigned big integer, just enough for the comparison. */
class Big {
  limbs: Array<u32> = [0];
  mulAdd(k: u32, add: u32): void {
    let carry = <u64>add;
    for (let i = 0; i < this.limbs.length; i++) {
      const t = <u64>this.limbs[i] * <u64>k + carry;
      this.limbs[i] = <u32>t;
      carry = t >> 32;
    }
    if (carry != 0) this.limbs.push(<u32>carry);
  }
  mulPow10(e: i32): void {
    while (e >= 9) { this.mulAdd(1000000000, 0); e -= 9; }
    if (e > 0) this.mulAdd(<u32>(<i32>POW10[e]), 0);
  }
  shl(bits: i32): void {
    const words = bits >> 5;
    const r = bits & 31;
    if (r != 0) {
      let carry: u32 = 0;
      for (let i = 0; i < this.limbs.length; i++) {
        const v = this.limbs[i];
        this.limbs[i] = (v << r) | carry;
        carry = v >> (32 - r);
      }
      if (carry != 0) this.limbs.push(carry);
    }
    if (words > 0) {
      const fresh = new Array<u32>(words);
      this.limbs = fresh.concat(this.limbs);
    }
  }
  static fromU64(v: u64): Big {
    const b = new Big();
    b.limbs[0] = <u32>v;
    if ((v >> 32) != 0) b.limbs.push(<u32>(v >> 32));
    return b;
  }
  cmp(o: Big): i32 {
    let n = this.limbs.length;
    let m = o.limbs.length;
    while (n > 1 && this.limbs[n - 1] == 0) n--;
    while (m > 1 && o.limbs[m - 1] == 0) m--;
    if (n != m) return n > m ? 1 : -1;
    for (let i = n - 1; i >= 0; i--) {
      const a = this.limbs[i], b = o.limbs[i];
      if (a != b) return a > b ? 1 : -1;
    }
    return 0;
  }
}

/** Compares digits × 10^e10 with (num × 2^e2): -1, 0 or 1. */
function cmpDecimal(digits: string, e10: i32, num: u64, e2: i32): i32 {
  const lhs = new Big();
  for (let i = 0; i < digits.length; i++) lhs.mulAdd(10, <u32>(digits.charCodeAt(i) - 0x30));
  const rhs = Big.fromU64(num);
  if (e10 >= 0) lhs.mulPow10(e10); else rhs.mulPow10(-e10);
  if (e2 >= 0) rhs.shl(e2); else lhs.shl(-e2);
  return lhs.cmp(rhs);
}

/** The JSON number text `s[start, end)` as the nearest f64 (correctly rounded, unlike `parseFloat`). */
export function decimalToF64(s: string, start: i32, end: i32): f64 {
  let i = start;
  let neg = false;
  if (s.charCodeAt(i) == 0x2d) { neg = true; i++; }
  // Significant digits (without the point and leading zeros) and the decimal exponent.
  const parts = new Array<string>();
  let e10 = 0;
  let intStart = i;
  while (i < end && s.charCodeAt(i) >= 0x30 && s.charCodeAt(i) <= 0x39) i++;
  parts.push(s.substring(intStart, i));
  if (i < end && s.charCodeAt(i) == 0x2e) {
    i++;
    const fracStart = i;
    while (i < end && s.charCodeAt(i) >= 0x30 && s.charCodeAt(i) <= 0x39) i++;
    parts.push(s.substring(fracStart, i));
    e10 = -(i - fracStart);
  }
  if (i < end) { // exponent
    i++;
    let eneg = false;
    const c = s.charCodeAt(i);
    if (c == 0x2b || c == 0x2d) { eneg = c == 0x2d; i++; }
    let ev = 0;
    while (i < end) { if (ev < 100000) ev = ev * 10 + (s.charCodeAt(i) - 0x30); i++; }
    e10 += eneg ? -ev : ev;
  }
  let digits = parts.join("");
  let lead = 0;
  while (lead < digits.length && digits.charCodeAt(lead) == 0x30) lead++;
  digits = digits.substring(lead);
  let trail = digits.length;
  while (trail > 0 && digits.charCodeAt(trail - 1) == 0x30) trail--;
  e10 += digits.length - trail;
  digits = digits.substring(0, trail);
  if (digits.length == 0) return neg ? -0.0 : 0.0;
  if (digits.length + e10 > 310) return neg ? -Infinity : Infinity;
  if (digits.length + e10 < -330) return neg ? -0.0 : 0.0;

  // Fast path: both the integer and the power of ten are exact doubles, one rounding.
  if (digits.length <= 15 && e10 >= -22 && e10 <= 22) {
    let w: u64 = 0;
    for (let k = 0; k < digits.length; k++) w = w * 10 + <u64>(digits.charCodeAt(k) - 0x30);
    const x = <f64>w;
    const r = e10 >= 0 ? x * POW10[e10] : x / POW10[-e10];
    return neg ? -r : r;
  }

  // A guess a few ulps off: the first 19 digits times exact powers of ten (one rounding per step).
  const take = digits.length < 19 ? digits.length : 19;
  let w: u64 = 0;
  for (let k = 0; k < take; k++) w = w * 10 + <u64>(digits.charCodeAt(k) - 0x30);
  let x = <f64>w;
  let e = e10 + (digits.length - take);
  while (e > 0) { const k = e < 22 ? e : 22; x *= POW10[k]; e -= k; }
  if (e < 0) {
    // Keep the intermediate out of the subnormal range as long as possible: scale by 2^-600 exactly last.
    let scaled = false;
    while (e < 0) {
      const k = -e < 22 ? -e : 22;
      if (!scaled && x / POW10[k] < 1e-290) { x *= 4.149515568880993e+180; scaled = true; } // 2^600
      x /= POW10[k];
      e += k;
    }
    if (scaled) x *= 2.409919865102884e-181; // 2^-600
  }
  if (!isFinite(x)) x = f64.MAX_VALUE;
  for (let iter = 0; iter < 256; iter++) {
    const bits = reinterpret<u64>(x);
    const expField = <i32>(bits >> 52);
    const frac = bits & 0xFFFFFFFFFFFFF;
    const m: u64 = expField == 0 ? frac : frac | (<u64>1 << 52);
    const e2 = expField == 0 ? -1074 : expField - 1075;
    // Upper midpoint: (2m+1) × 2^(e2-1).
    const up = cmpDecimal(digits, e10, 2 * m + 1, e2 - 1);
    if (up > 0 || (up == 0 && (m & 1) == 1)) {
      x = reinterpret<f64>(bits + 1);
      if (!isFinite(x) || up == 0) break;
      continue;
    }
    if (up == 0 || x == 0) break;
    // Lower midpoint: (2m-1) × 2^(e2-1), or (4m-1) × 2^(e2-2) just above a power of two.
    const boundary = frac == 0 && expField > 1;
    const down = boundary ? cmpDecimal(digits, e10, 4 * m - 1, e2 - 2) : cmpDecimal(digits, e10, 2 * m - 1, e2 - 1);
    if (down < 0 || (down == 0 && (m & 1) == 1)) {
      x = reinterpret<f64>(bits - 1);
      if (down == 0) break;
      continue;
    }
    break;
  }
  return neg ? -x : x;
}

class Parser {
  pos: i32 = 0;
  err: string | null = null;
  depth: i32 = 0;
  constructor(public s: string) {}

  fail(msg: string): JValue | null {
    if (this.err === null) this.err = msg + " at offset " + this.pos.toString();
    return null;
  }
  ws(): void {
    const s = this.s;
    while (this.pos < s.length) {
      const c = s.charCodeAt(this.pos);
      if (c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09) this.pos++;
      else break;
    }
  }
  lit(word: string, v: JValue): JValue | null {
    if (this.s.substr(this.pos, word.length) == word) {
      this.pos += word.length;
      return v;
    }
    return this.fail("invalid literal");
  }
  value(): JValue | null {
    this.ws();
    if (this.pos >= this.s.length) return this.fail("unexpected end of input");
    const c = this.s.charCodeAt(this.pos);
    if (c == 0x7b) return this.object();
    if (c == 0x5b) return this.array();
    if (c == 0x22) {
      const str = this.string();
      return str === null ? null : JValue.newString(str);
    }
    if (c == 0x74) return this.lit("true", JValue.newBool(true));
    if (c == 0x66) return this.lit("false", JValue.newBool(false));
    if (c == 0x6e) return this.lit("null", JValue.newNull());
    if (c == 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
    return this.fail("unexpected character '" + String.fromCharCode(c) + "'");
  }
  digits(): i32 {
    const start = this.pos;
    while (this.pos < this.s.length) {
      const c = this.s.charCodeAt(this.pos);
      if (c < 0x30 || c > 0x39) break;
      this.pos++;
    }
    return this.pos - start;
  }
  number(): JValue | null {
    const start = this.pos;
    if (this.s.charCodeAt(this.pos) == 0x2d) this.pos++;
    if (this.digits() == 0) return this.fail("invalid number");
    if (this.pos < this.s.length && this.s.charCodeAt(this.pos) == 0x2e) {
      this.pos++;
      if (this.digits() == 0) return this.fail("invalid number");
    }
    if (this.pos < this.s.length) {
      const e = this.s.charCodeAt(this.pos);
      if (e == 0x65 || e == 0x45) {
        this.pos++;
        if (this.pos < this.s.length) {
          const sign = this.s.charCodeAt(this.pos);
          if (sign == 0x2b || sign == 0x2d) this.pos++;
        }
        if (this.digits() == 0) return this.fail("invalid number");
      }
    }
    return JValue.newNumber(decimalToF64(this.s, start, this.pos));
  }
  hexQuad(): i32 {
    if (this.pos + 4 > this.s.length) return -1;
    let v = 0;
    for (let i = 0; i < 4; i++) {
      const c = this.s.charCodeAt(this.pos + i);
      let d = -1;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x61 + 10;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x41 + 10;
      if (d < 0) return -1;
      v = (v << 4) | d;
    }
    this.pos += 4;
    return v;
  }
  string(): string | null {
    this.pos++; // opening quote
    const s = this.s;
    const parts = new Array<string>();
    let start = this.pos;
    while (true) {
      if (this.pos >= s.length) { this.fail("unterminated string"); return null; }
      const c = s.charCodeAt(this.pos);
      if (c == 0x22) {
        parts.push(s.substring(start, this.pos));
        this.pos++;
        return parts.join("");
      }
      if (c < 0x20) { this.fail("control character in string"); return null; }
      if (c != 0x5c) { this.pos++; continue; }
      parts.push(s.substring(start, this.pos));
      this.pos++;
      if (this.pos >= s.length) { this.fail("unterminated string"); return null; }
      const e = s.charCodeAt(this.pos);
      this.pos++;
      if (e == 0x22) parts.push("\"");
      else if (e == 0x5c) parts.push("\\");
      else if (e == 0x2f) parts.push("/");
      else if (e == 0x62) parts.push("\b");
      else if (e == 0x66) parts.push("\f");
      else if (e == 0x6e) parts.push("\n");
      else if (e == 0x72) parts.push("\r");
      else if (e == 0x74) parts.push("\t");
      else if (e == 0x75) {
        const u = this.hexQuad();
        if (u < 0) { this.fail("invalid \\u escape"); return null; }
        parts.push(String.fromCharCode(u)); // UTF-16 code unit: surrogate pairs combine naturally
      } else { this.fail("invalid escape"); return null; }
      start = this.pos;
    }
  }
  array(): JValue | null {
    if (++this.depth > 512) return this.fail("nesting too deep");
    this.pos++;
    const v = JValue.newArray();
    this.ws();
    if (this.pos < this.s.length && this.s.charCodeAt(this.pos) == 0x5d) { this.pos++; this.depth--; return v; }
    while (true) {
      const item = this.value();
      if (item === null) return null;
      v.items.push(item);
      this.ws();
      if (this.pos >= this.s.length) return this.fail("unterminated array");
      const c = this.s.charCodeAt(this.pos++);
      if (c == 0x5d) break;
      if (c != 0x2c) { this.pos--; return this.fail("expected ',' or ']'"); }
    }
    this.depth--;
    return v;
  }
  object(): JValue | null {
    if (++this.depth > 512) return this.fail("nesting too deep");
    this.pos++;
    const v = JValue.newObject();
    this.ws();
    if (this.pos < this.s.length && this.s.charCodeAt(this.pos) == 0x7d) { this.pos++; this.depth--; return v; }
    while (true) {
      this.ws();
      if (this.pos >= this.s.length || this.s.charCodeAt(this.pos) != 0x22) return this.fail("expected a string key");
      const key = this.string();
      if (key === null) return null;
      this.ws();
      if (this.pos >= this.s.length || this.s.charCodeAt(this.pos) != 0x3a) return this.fail("expected ':'");
      this.pos++;
      const item = this.value();
      if (item === null) return null;
      v.set(key, item); // a repeated key keeps the last value, as most parsers do
      this.ws();
      if (this.pos >= this.s.length) return this.fail("unterminated object");
      const c = this.s.charCodeAt(this.pos++);
      if (c == 0x7d) break;
      if (c != 0x2c) { this.pos--; return this.fail("expected ',' or '}'"); }
    }
    this.depth--;
    return v;
  }
}

/** Parses JSON text. Returns null on a syntax error; `parseError()` then says what and where. */
export function parseJSON(text: string): JValue | null {
  const p = new Parser(text);
  const v = p.value();
  if (v !== null) {
    p.ws();
    if (p.pos < text.length) p.fail("trailing characters");
  }
  const err = p.err;
  if (err !== null) {
    lastParseError = err;
    return null;
  }
  lastParseError = "";
  return v;
}

// ---------------------------------------------------------------------------------------------------
// Task context and result

/** The task context (ABI v1 §3). Missing fields take their defaults; `raw` is the whole object. */
export class Context {
  raw: JValue = JValue.newObject();
  abi: i32 = 1;
  dagId: string = "";
  dagVersion: string = "";
  runId: string = "";
  taskId: string = "";
  /** For a mapped task the element's index, else -1 (`map_index: null`). */
  mapIndex: i32 = -1;
  /** For a mapped task the element itself, else null. */
  mapItem: JValue | null = null;
  tryNumber: i32 = 1;
  /** RFC 3339, or "" when the run has no logical date. */
  logicalDate: string = "";
  conf: JValue = JValue.newObject();
  params: JValue = JValue.newObject();
  inputs: JValue = JValue.newObject();

  /** `params[name]`, or null when missing. */
  param(name: string): JValue | null { return this.params.get(name); }
  /** `inputs[taskId]`, the output of upstream task `taskId`, or null when missing. */
  input(taskId: string): JValue | null { return this.inputs.get(taskId); }

  /** `params[name]` as a number; `fallback` when missing or null; fails the task when not a number. */
  numberParam(name: string, fallback: f64): f64 {
    const v = this.params.get(name);
    if (v === null || v.isNull()) return fallback;
    if (!v.isNumber()) fail("param `" + name + "` must be a number, got " + v.toJSON());
    return v.num;
  }
  /** `params[name]` as a string; `fallback` when missing or null; fails the task when not a string. */
  stringParam(name: string, fallback: string): string {
    const v = this.params.get(name);
    if (v === null || v.isNull()) return fallback;
    if (!v.isString()) fail("param `" + name + "` must be a string, got " + v.toJSON());
    return v.str;
  }
  /**
   * `params[name]` as f64[]: an empty array when missing or null; fails the task when it is not an array
   * of numbers.
   */
  numbers(name: string): Array<f64> {
    const v = this.params.get(name);
    if (v === null || v.isNull()) return new Array<f64>();
    const xs = v.toNumbers();
    if (xs === null) { fail("param `" + name + "` must be an array of numbers"); return new Array<f64>(); }
    return xs;
  }
}

function strField(o: JValue, key: string): string {
  const v = o.get(key);
  return v === null ? "" : v.stringOr("");
}

function objField(o: JValue, key: string): JValue {
  const v = o.get(key);
  if (v === null || v.isNull()) return JValue.newObject();
  if (!v.isObject()) {
    log("error: invalid task context: `" + key + "` must be an object");
    exit(2);
  }
  return v;
}

/** Parses a task context. Logs the reason and exits with code 2 when it is not a valid ABI v1 context. */
export function parseContext(text: string): Context {
  const ctx = new Context();
  const parsed = parseJSON(text);
  if (parsed === null) {
    log("error: invalid task context JSON: " + parseError());
    exit(2);
    return ctx;
  }
  const root = parsed;
  if (!root.isObject()) { log("error: invalid task context: not a JSON object"); exit(2); }
  const abi = root.get("abi");
  if (abi === null || !abi.isNumber()) { log("error: invalid task context: missing `abi`"); exit(2); return ctx; }
  if (abi.num != 1) { log("error: unsupported ABI version " + numberJSON(abi.num) + " (this SDK speaks 1)"); exit(2); }
  ctx.raw = root;
  ctx.abi = 1;
  ctx.dagId = strField(root, "dag_id");
  ctx.dagVersion = strField(root, "dag_version");
  ctx.runId = strField(root, "run_id");
  ctx.taskId = strField(root, "task_id");
  ctx.logicalDate = strField(root, "logical_date");
  const mi = root.get("map_index");
  if (mi !== null && mi.isNumber()) ctx.mapIndex = <i32>mi.num;
  ctx.mapItem = root.get("map_item");
  const tn = root.get("try_number");
  if (tn !== null && tn.isNumber()) ctx.tryNumber = <i32>tn.num;
  ctx.conf = objField(root, "conf");
  ctx.params = objField(root, "params");
  ctx.inputs = objField(root, "inputs");
  return ctx;
}

/** Reads stdin to end of file and parses it as the task context (exit code 2 when invalid). */
export function readContext(): Context {
  return parseContext(readStdin());
}

/** The task result (ABI v1 §4). Fields left unset are left out of the JSON. */
export class Result {
  /** The task's output, handed to downstream tasks; null leaves it out. */
  output: JValue | null = null;
  metricNames: Array<string> = [];
  metricValues: Array<f64> = [];
  /** For branch tasks: the downstream task ids to follow. */
  branch: Array<string> | null = null;
  /** For sensor tasks: 1 = done, 0 = poke again later, -1 = not a sensor result. */
  sensorDone: i32 = -1;
  triggers: Array<JValue> = [];

  /** Sets the output; returns this, for chaining. */
  withOutput(output: JValue): Result { this.output = output; return this; }
  /** Sets (or replaces) a metric; it must be finite. Returns this, for chaining. */
  metric(name: string, value: f64): Result {
    for (let i = 0; i < this.metricNames.length; i++) {
      if (this.metricNames[i] == name) { this.metricValues[i] = value; return this; }
    }
    this.metricNames.push(name);
    this.metricValues.push(value);
    return this;
  }
  /** Asks for a run of DAG `dagId` with configuration `conf` (null = `{}`). Returns this. */
  trigger(dagId: string, conf: JValue | null = null): Result {
    const t = JValue.newObject().set("dag_id", JValue.newString(dagId));
    if (conf !== null) t.set("conf", conf);
    this.triggers.push(t);
    return this;
  }

  /** The result as a JSON value. Fails with exit code 3 when a metric is NaN or infinite. */
  toJValue(): JValue {
    const o = JValue.newObject();
    const out = this.output;
    if (out !== null) o.set("output", out);
    if (this.metricNames.length > 0) {
      const m = JValue.newObject();
      for (let i = 0; i < this.metricNames.length; i++) {
        const x = this.metricValues[i];
        if (!isFinite(x)) {
          log("error: metric `" + this.metricNames[i] + "` is " + (isNaN(x) ? "NaN" : "infinite") +
            ": JSON carries only finite numbers");
          exit(3);
        }
        m.set(this.metricNames[i], JValue.newNumber(x));
      }
      o.set("metrics", m);
    }
    const br = this.branch;
    if (br !== null) {
      const a = JValue.newArray();
      for (let i = 0; i < br.length; i++) a.items.push(JValue.newString(br[i]));
      o.set("branch", a);
    }
    if (this.sensorDone >= 0) o.set("sensor", JValue.newObject().set("done", JValue.newBool(this.sensorDone > 0)));
    if (this.triggers.length > 0) {
      const a = JValue.newArray();
      for (let i = 0; i < this.triggers.length; i++) a.items.push(this.triggers[i]);
      o.set("trigger", a);
    }
    return o;
  }
}

/** Writes the result on stdout as one line of compact JSON (exit code 3 when that fails). */
export function writeResult(result: Result): void {
  if (!writeStdout(result.toJValue().toJSON() + "\n")) {
    log("error: writing the result on stdout failed");
    exit(3);
  }
}

/**
 * The whole plugin: reads the context from stdin, calls `handler`, writes its result on stdout. The
 * handler reports errors with `fail(message)` (exit code 1). Call it once, at the top level of the
 * entry file.
 */
export function run(handler: (ctx: Context) => Result): void {
  const ctx = readContext();
  const result = handler(ctx);
  writeResult(result);
}
