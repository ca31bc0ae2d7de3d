/*
 * stats: summary statistics of `params.values` (an array of numbers), in C against wasi-libc.
 *
 * Shows that any language that targets WASI can be a Sandflow operator: read the task context (JSON)
 * on stdin, write the result (JSON) on stdout, log on stderr, exit 0 on success. C has no JSON
 * library, so this file carries a small scanner that skips any JSON value correctly (strings with
 * escapes, nesting) and reads the one array it needs.
 *
 * Build: plugins/build.sh (clang --target=wasm32-wasi -Os).
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *skip_ws(const char *p) {
    while (*p && isspace((unsigned char)*p)) p++;
    return p;
}

/* Skips one JSON value starting at p; returns the position after it, or NULL if malformed. */
static const char *skip_value(const char *p, int depth) {
    if (depth > 64) return NULL;
    p = skip_ws(p);
    if (*p == '"') {
        for (p++; *p && *p != '"'; p++)
            if (*p == '\\' && !*++p) return NULL;
        return *p == '"' ? p + 1 : NULL;
    }
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = skip_ws(p + 1);
        if (*p == close) return p + 1;
        for (;;) {
            if (close == '}') {
                p = skip_value(p, depth + 1); /* key */
                if (!p) return NULL;
                p = skip_ws(p);
                if (*p++ != ':') return NULL;
            }
            p = skip_value(p, depth + 1);
            if (!p) return NULL;
            p = skip_ws(p);
            if (*p == ',') { p++; continue; }
            return *p == close ? p + 1 : NULL;
        }
    }
    if (!*p) return NULL;
    while (*p && !strchr(",}] \t\r\n", *p)) p++; /* number, true, false, null */
    return p;
}

/* In the object at p, finds the value of `key`; returns a pointer to it, or NULL. */
static const char *find_key(const char *p, const char *key) {
    p = skip_ws(p);
    if (*p != '{') return NULL;
    p = skip_ws(p + 1);
    size_t len = strlen(key);
    while (*p == '"') {
        const char *name = p + 1;
        const char *after = skip_value(p, 0);
        if (!after) return NULL;
        int match = (size_t)(after - 1 - name) == len && strncmp(name, key, len) == 0;
        p = skip_ws(after);
        if (*p++ != ':') return NULL;
        p = skip_ws(p);
        if (match) return p;
        p = skip_value(p, 0);
        if (!p) return NULL;
        p = skip_ws(p);
        if (*p == ',') p = skip_ws(p + 1);
    }
    return NULL;
}

static int fail(const char *why) {
    fprintf(stderr, "error: %s\n", why);
    return 1;
}

int main(void) {
    size_t cap = 1 << 16, len = 0, n;
    char *text = malloc(cap);
    if (!text) return fail("out of memory");
    while ((n = fread(text + len, 1, cap - len - 1, stdin)) > 0) {
        len += n;
        if (len + 1 == cap) {
            char *bigger = realloc(text, cap *= 2);
            if (!bigger) return fail("out of memory");
            text = bigger;
        }
    }
    text[len] = '\0';

    const char *params = find_key(text, "params");
    if (!params) return fail("the task context has no params object");
    const char *p = find_key(params, "values");
    if (!p || *p != '[') return fail("params.values must be an array of numbers");

    double sum = 0, sumsq = 0, min = INFINITY, max = -INFINITY;
    long count = 0;
    p = skip_ws(p + 1);
    while (*p && *p != ']') {
        char *end;
        double v = strtod(p, &end);
        if (end == p) return fail("params.values must contain only numbers");
        sum += v;
        sumsq += v * v;
        if (v < min) min = v;
        if (v > max) max = v;
        count++;
        p = skip_ws(end);
        if (*p == ',') p = skip_ws(p + 1);
    }
    if (*p != ']') return fail("params.values is not a closed array");
    if (count == 0) return fail("params.values is empty");

    double mean = sum / count;
    double var = sumsq / count - mean * mean;
    double stddev = sqrt(var > 0 ? var : 0);
    fprintf(stderr, "stats over %ld values\n", count);
    printf("{\"output\":{\"count\":%ld,\"mean\":%.17g,\"min\":%.17g,\"max\":%.17g,\"stddev\":%.17g},"
           "\"metrics\":{\"count\":%ld,\"mean\":%.17g}}",
           count, mean, min, max, stddev, count, mean);
    return 0;
}
