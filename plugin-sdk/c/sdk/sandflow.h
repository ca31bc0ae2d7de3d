/*
 * sandflow.h: a small SDK for Sandflow operators written in C (ABI v1, the WASI command ABI).
 *
 * A plugin reads the task context (JSON) on stdin, writes the task result (JSON) on stdout, logs on
 * stderr and exits 0 on success (plugin-sdk/ABI.md). This SDK does the JSON part, which C lacks:
 *
 *   - sandflow_context()   reads all of stdin, parses it, checks `abi` is 1 (else exit 2);
 *   - sf_parse()           a JSON DOM parser (RFC 8259: objects, arrays, strings with every escape
 *                          including \uXXXX surrogate pairs, numbers, true/false/null), depth-limited;
 *   - sf_get()/sf_at()     look-ups by key and by index, NULL-safe (a NULL in gives NULL out);
 *   - sf_writer            a streaming writer for the result: objects, arrays, keys, strings
 *                          (escaped), numbers (shortest form that reads back exactly), booleans, null;
 *   - sandflow_log()       a line on the log (stderr);  sandflow_fail()  "error: ..." and exit 1.
 *
 * Build with wasi-libc:  clang --target=wasm32-wasi -Os -s -I sdk -o op.wasm op.c sdk/sandflow.c -lm
 */
#ifndef SANDFLOW_H
#define SANDFLOW_H

#include <stddef.h>
#include <stdio.h>

/* Deepest nesting of arrays/objects the parser accepts (and the writer supports). */
#define SF_MAX_DEPTH 128

typedef enum { SF_NULL, SF_BOOL, SF_NUMBER, SF_STRING, SF_ARRAY, SF_OBJECT } sf_type;

/* One parsed JSON value. Read the fields that belong to its type; all memory is owned by the tree. */
typedef struct sf_value {
    sf_type type;
    int boolean;             /* SF_BOOL: 0 or 1 */
    double number;           /* SF_NUMBER: the nearest double */
    char *string;            /* SF_STRING: UTF-8, NUL-terminated (a \u0000 inside ends it early: see len) */
    size_t len;              /* SF_STRING: bytes; SF_ARRAY / SF_OBJECT: number of elements */
    struct sf_value *items;  /* SF_ARRAY: the elements; SF_OBJECT: the values, in document order */
    char **keys;             /* SF_OBJECT: the keys, NUL-terminated, parallel to items */
} sf_value;

/* ---- reading ---- */

/* Reads all of stdin into a NUL-terminated malloc'd buffer; *len (if not NULL) gets its length.
 * Fails the plugin (exit 1) when out of memory. */
char *sandflow_read_stdin(size_t *len);

/* Parses `len` bytes of JSON text. On success returns the tree (free it with sf_free). On error returns
 * NULL and writes a message such as "invalid JSON at line 1 column 9: expected ':' after an object key"
 * into err (if not NULL; errlen bytes at most). Duplicate keys are kept; sf_get finds the first. */
sf_value *sf_parse(const char *text, size_t len, char *err, size_t errlen);

/* Frees a tree returned by sf_parse. */
void sf_free(sf_value *v);

/* Reads stdin and parses the task context. Exits 2 with an "error: ..." line when it is not JSON, not
 * an object, or its `abi` is missing or not 1 (the Rust SDK's convention). Never returns NULL. */
sf_value *sandflow_context(void);

/* ctx.params and ctx.inputs: the object, or an empty object when missing or null (never NULL).
 * Fails (exit 1) when the field is there but is not an object. */
const sf_value *sandflow_params(const sf_value *ctx);
const sf_value *sandflow_inputs(const sf_value *ctx);

/* The value of `key` in object v, or NULL (v NULL, not an object, or no such key). */
const sf_value *sf_get(const sf_value *v, const char *key);
/* Element i of array v, or NULL (v NULL, not an array, or out of range). */
const sf_value *sf_at(const sf_value *v, size_t i);

/* Type tests, NULL-safe (NULL is none of them, not even SF_NULL). */
int sf_is(const sf_value *v, sf_type t);
/* v's number, or dflt when v is NULL or JSON null; fails (exit 1) naming `what` when v is another type. */
double sf_number_or(const sf_value *v, double dflt, const char *what);
/* v's string, or dflt when v is NULL or JSON null; fails (exit 1) naming `what` when v is another type. */
const char *sf_string_or(const sf_value *v, const char *dflt, const char *what);
/* The name of a type, for messages: "null", "a boolean", "a number", "a string", "an array", "an object". */
const char *sf_type_name(const sf_value *v);

/* ---- writing ---- */

/* A streaming JSON writer. It puts the commas and colons; you call begin/end, key and the values.
 * Numbers: the shortest text that reads back as the same double ("3", "0.1", "1e+300"); NaN and
 * infinities (not JSON) are written as null. Use sf_write_int for integers beyond 2^53. */
typedef struct {
    FILE *out;
    int depth;
    unsigned char need_comma[SF_MAX_DEPTH + 1];
    int after_key;
} sf_writer;

/* A writer on `out` (stdout for the result). */
sf_writer sf_writer_new(FILE *out);
void sf_begin_object(sf_writer *w);
void sf_end_object(sf_writer *w);
void sf_begin_array(sf_writer *w);
void sf_end_array(sf_writer *w);
/* An object key; the next call writes its value. */
void sf_key(sf_writer *w, const char *key);
void sf_write_number(sf_writer *w, double x);
void sf_write_int(sf_writer *w, long long x);
void sf_write_string(sf_writer *w, const char *s);
void sf_write_string_len(sf_writer *w, const char *s, size_t len);
void sf_write_bool(sf_writer *w, int b);
void sf_write_null(sf_writer *w);
/* A whole parsed value (e.g. to pass something from the context through). */
void sf_write_value(sf_writer *w, const sf_value *v);
/* Writes a number as text into buf (at least 32 bytes): the writer's number format. */
void sf_format_number(char *buf, size_t size, double x);

/* ---- log and failure ---- */

/* printf-style line on the log (stderr); the newline is added. */
void sandflow_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Logs "error: <message>" on stderr and exits 1: the try fails with that message in its log. */
_Noreturn void sandflow_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
