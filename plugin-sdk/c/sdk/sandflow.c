/* sandflow.c: the C SDK for Sandflow operators. See sandflow.h for the API. */
#include "sandflow.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- log and failure ---- */

void sandflow_log(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

static _Noreturn void vfail(int code, const char *fmt, va_list ap) {
    fputs("error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    fflush(stderr);
    exit(code);
}

_Noreturn void sandflow_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(1, fmt, ap);
}

static _Noreturn void fail_code(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(code, fmt, ap);
}

/* ---- reading stdin ---- */

char *sandflow_read_stdin(size_t *out_len) {
    size_t cap = 1 << 16, len = 0, n;
    char *text = malloc(cap);
    if (!text) sandflow_fail("out of memory reading the task context");
    while ((n = fread(text + len, 1, cap - len - 1, stdin)) > 0) {
        len += n;
        if (len + 1 == cap) {
            char *bigger = realloc(text, cap *= 2);
            if (!bigger) sandflow_fail("out of memory reading the task context");
            text = bigger;
        }
    }
    text[len] = '\0';
    if (out_len) *out_len = len;
    return text;
}

/* ---- parser ---- */

typedef struct {
    const char *text, *p, *end;
    char *err;
    size_t errlen;
    int failed;
} parser;

static int perr(parser *ps, const char *what) {
    if (ps->failed) return 0;
    ps->failed = 1;
    if (ps->err && ps->errlen) {
        size_t line = 1, col = 1;
        for (const char *q = ps->text; q < ps->p && q < ps->end; q++) {
            if (*q == '\n') { line++; col = 1; } else col++;
        }
        snprintf(ps->err, ps->errlen, "invalid JSON at line %zu column %zu: %s%s", line, col, what,
                 ps->p >= ps->end ? " (the input ended)" : "");
    }
    return 0;
}

static void skip_ws(parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static int parse_value(parser *ps, sf_value *out, int depth);

static int hex4(parser *ps, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        if (ps->p >= ps->end) return perr(ps, "unfinished \\u escape");
        char c = *ps->p++;
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else { ps->p--; return perr(ps, "expected 4 hex digits after \\u"); }
    }
    *out = v;
    return 1;
}

static size_t put_utf8(char *d, unsigned cp) {
    if (cp < 0x80) { d[0] = (char)cp; return 1; }
    if (cp < 0x800) { d[0] = (char)(0xC0 | cp >> 6); d[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        d[0] = (char)(0xE0 | cp >> 12); d[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); d[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    d[0] = (char)(0xF0 | cp >> 18); d[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    d[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); d[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* At the opening quote; decodes into a malloc'd NUL-terminated buffer. */
static int parse_string(parser *ps, char **out, size_t *out_len) {
    ps->p++; /* the quote */
    const char *start = ps->p;
    /* Escapes only shrink the text (\uXXXX is 6 bytes for at most 3; a pair 12 for 4), so the raw
       length bounds the decoded one. Find the closing quote first. */
    const char *q = start;
    while (q < ps->end && *q != '"') q += (*q == '\\' && q + 1 < ps->end) ? 2 : 1;
    if (q >= ps->end) return perr(ps, "unterminated string");
    char *buf = malloc((size_t)(q - start) + 1);
    if (!buf) return perr(ps, "out of memory");
    size_t n = 0;
    while (*ps->p != '"') {
        unsigned char c = (unsigned char)*ps->p;
        if (c < 0x20) { free(buf); return perr(ps, "control character in a string (escape it)"); }
        if (c != '\\') { buf[n++] = (char)c; ps->p++; continue; }
        ps->p++;
        char e = *ps->p++;
        switch (e) {
        case '"': buf[n++] = '"'; break;
        case '\\': buf[n++] = '\\'; break;
        case '/': buf[n++] = '/'; break;
        case 'b': buf[n++] = '\b'; break;
        case 'f': buf[n++] = '\f'; break;
        case 'n': buf[n++] = '\n'; break;
        case 'r': buf[n++] = '\r'; break;
        case 't': buf[n++] = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (!hex4(ps, &cp)) { free(buf); return 0; }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (ps->end - ps->p >= 6 && ps->p[0] == '\\' && ps->p[1] == 'u') {
                    ps->p += 2;
                    if (!hex4(ps, &lo)) { free(buf); return 0; }
                    if (lo >= 0xDC00 && lo <= 0xDFFF) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    else { n += put_utf8(buf + n, 0xFFFD); cp = lo; } /* lone high surrogate */
                } else cp = 0xFFFD;
            }
            if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD; /* lone surrogate: replacement character */
            n += put_utf8(buf + n, cp);
            break;
        }
        default: ps->p--; free(buf); return perr(ps, "invalid escape in a string");
        }
    }
    ps->p++; /* the closing quote */
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return 1;
}

static int parse_number(parser *ps, sf_value *out) {
    const char *s = ps->p, *p = s;
    if (p < ps->end && *p == '-') p++;
    if (p < ps->end && *p == '0') p++;
    else if (p < ps->end && *p >= '1' && *p <= '9') while (p < ps->end && *p >= '0' && *p <= '9') p++;
    else return perr(ps, "expected a value");
    if (p < ps->end && *p == '.') {
        p++;
        if (p >= ps->end || *p < '0' || *p > '9') { ps->p = p; return perr(ps, "expected a digit after '.'"); }
        while (p < ps->end && *p >= '0' && *p <= '9') p++;
    }
    if (p < ps->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < ps->end && (*p == '+' || *p == '-')) p++;
        if (p >= ps->end || *p < '0' || *p > '9') { ps->p = p; return perr(ps, "expected a digit in the exponent"); }
        while (p < ps->end && *p >= '0' && *p <= '9') p++;
    }
    char small[64], *tmp = small;
    size_t n = (size_t)(p - s);
    if (n >= sizeof small && !(tmp = malloc(n + 1))) return perr(ps, "out of memory");
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    out->type = SF_NUMBER;
    out->number = strtod(tmp, NULL);
    if (tmp != small) free(tmp);
    ps->p = p;
    return 1;
}

static int literal(parser *ps, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) return perr(ps, "expected a value");
    ps->p += n;
    return 1;
}

static int parse_container(parser *ps, sf_value *out, int depth) {
    int is_obj = *ps->p == '{';
    char close = is_obj ? '}' : ']';
    if (depth >= SF_MAX_DEPTH) return perr(ps, "nested too deeply");
    ps->p++;
    out->type = is_obj ? SF_OBJECT : SF_ARRAY;
    size_t cap = 0;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) { ps->p++; return 1; }
    for (;;) {
        if (out->len == cap) {
            cap = cap ? cap * 2 : 4;
            sf_value *items = realloc(out->items, cap * sizeof *items);
            if (!items) return perr(ps, "out of memory");
            out->items = items;
            if (is_obj) {
                char **keys = realloc(out->keys, cap * sizeof *keys);
                if (!keys) return perr(ps, "out of memory");
                out->keys = keys;
            }
        }
        sf_value *item = &out->items[out->len];
        memset(item, 0, sizeof *item);
        skip_ws(ps);
        if (is_obj) {
            size_t klen;
            if (ps->p >= ps->end || *ps->p != '"') return perr(ps, "expected a string key");
            if (!parse_string(ps, &out->keys[out->len], &klen)) return 0;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                free(out->keys[out->len]);
                return perr(ps, "expected ':' after an object key");
            }
            ps->p++;
        }
        out->len++; /* counted now so that sf_free frees a half-parsed item too */
        if (!parse_value(ps, item, depth + 1)) return 0;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
        if (ps->p < ps->end && *ps->p == close) { ps->p++; return 1; }
        return perr(ps, is_obj ? "expected ',' or '}' in an object" : "expected ',' or ']' in an array");
    }
}

static int parse_value(parser *ps, sf_value *out, int depth) {
    skip_ws(ps);
    if (ps->p >= ps->end) return perr(ps, "expected a value");
    switch (*ps->p) {
    case '{': case '[': return parse_container(ps, out, depth);
    case '"': out->type = SF_STRING; return parse_string(ps, &out->string, &out->len);
    case 't': out->type = SF_BOOL; out->boolean = 1; return literal(ps, "true");
    case 'f': out->type = SF_BOOL; out->boolean = 0; return literal(ps, "false");
    case 'n': out->type = SF_NULL; return literal(ps, "null");
    default: return parse_number(ps, out);
    }
}

static void free_inner(sf_value *v) {
    if (v->type == SF_STRING) free(v->string);
    if (v->type == SF_ARRAY || v->type == SF_OBJECT) {
        for (size_t i = 0; i < v->len; i++) {
            free_inner(&v->items[i]);
            if (v->type == SF_OBJECT) free(v->keys[i]);
        }
        free(v->items);
        free(v->keys);
    }
}

void sf_free(sf_value *v) {
    if (!v) return;
    free_inner(v);
    free(v);
}

sf_value *sf_parse(const char *text, size_t len, char *err, size_t errlen) {
    parser ps = {text, text, text + len, err, errlen, 0};
    sf_value *root = calloc(1, sizeof *root);
    if (!root) { perr(&ps, "out of memory"); return NULL; }
    if (parse_value(&ps, root, 0)) {
        skip_ws(&ps);
        if (ps.p == ps.end) return root;
        perr(&ps, "trailing characters after the JSON value");
    }
    sf_free(root);
    return NULL;
}

/* ---- look-ups ---- */

const sf_value *sf_get(const sf_value *v, const char *key) {
    if (!v || v->type != SF_OBJECT) return NULL;
    for (size_t i = 0; i < v->len; i++)
        if (strcmp(v->keys[i], key) == 0) return &v->items[i];
    return NULL;
}

const sf_value *sf_at(const sf_value *v, size_t i) {
    if (!v || v->type != SF_ARRAY || i >= v->len) return NULL;
    return &v->items[i];
}

int sf_is(const sf_value *v, sf_type t) { return v && v->type == t; }

const char *sf_type_name(const sf_value *v) {
    if (!v) return "missing";
    static const char *names[] = {"null", "a boolean", "a number", "a string", "an array", "an object"};
    return names[v->type];
}

double sf_number_or(const sf_value *v, double dflt, const char *what) {
    if (!v || v->type == SF_NULL) return dflt;
    if (v->type != SF_NUMBER) sandflow_fail("%s must be a number, not %s", what, sf_type_name(v));
    return v->number;
}

const char *sf_string_or(const sf_value *v, const char *dflt, const char *what) {
    if (!v || v->type == SF_NULL) return dflt;
    if (v->type != SF_STRING) sandflow_fail("%s must be a string, not %s", what, sf_type_name(v));
    return v->string;
}

/* ---- the context ---- */

sf_value *sandflow_context(void) {
    size_t len;
    char *text = sandflow_read_stdin(&len);
    char err[160];
    sf_value *ctx = sf_parse(text, len, err, sizeof err);
    free(text);
    if (!ctx) fail_code(2, "the task context is not valid JSON: %s", err);
    if (ctx->type != SF_OBJECT) fail_code(2, "the task context must be a JSON object, not %s", sf_type_name(ctx));
    const sf_value *abi = sf_get(ctx, "abi");
    if (!abi) fail_code(2, "the task context has no `abi` field");
    if (abi->type != SF_NUMBER || abi->number != 1)
        fail_code(2, "unsupported ABI version in the task context: this plugin speaks ABI 1");
    return ctx;
}

static const sf_value empty_object = {SF_OBJECT, 0, 0, NULL, 0, NULL, NULL};

static const sf_value *object_field(const sf_value *ctx, const char *name) {
    const sf_value *v = sf_get(ctx, name);
    if (!v || v->type == SF_NULL) return &empty_object;
    if (v->type != SF_OBJECT) sandflow_fail("the task context's %s must be an object, not %s", name, sf_type_name(v));
    return v;
}

const sf_value *sandflow_params(const sf_value *ctx) { return object_field(ctx, "params"); }
const sf_value *sandflow_inputs(const sf_value *ctx) { return object_field(ctx, "inputs"); }

/* ---- writer ---- */

sf_writer sf_writer_new(FILE *out) {
    sf_writer w;
    memset(&w, 0, sizeof w);
    w.out = out;
    return w;
}

/* Before any value: a comma between elements, none right after a key. */
static void before_value(sf_writer *w) {
    if (w->after_key) { w->after_key = 0; return; }
    if (w->need_comma[w->depth]) fputc(',', w->out);
    w->need_comma[w->depth] = 1;
}

static void begin(sf_writer *w, char c) {
    before_value(w);
    fputc(c, w->out);
    if (w->depth >= SF_MAX_DEPTH) sandflow_fail("sf_writer: nested deeper than %d", SF_MAX_DEPTH);
    w->need_comma[++w->depth] = 0;
}

static void end(sf_writer *w, char c) {
    if (w->depth == 0) sandflow_fail("sf_writer: '%c' without a matching begin", c);
    w->depth--;
    fputc(c, w->out);
}

void sf_begin_object(sf_writer *w) { begin(w, '{'); }
void sf_end_object(sf_writer *w) { end(w, '}'); }
void sf_begin_array(sf_writer *w) { begin(w, '['); }
void sf_end_array(sf_writer *w) { end(w, ']'); }

static void put_string(FILE *out, const char *s, size_t len) {
    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        case '\b': fputs("\\b", out); break;
        case '\f': fputs("\\f", out); break;
        default:
            if (c < 0x20) fprintf(out, "\\u%04x", c);
            else fputc(c, out);
        }
    }
    fputc('"', out);
}

void sf_key(sf_writer *w, const char *key) {
    before_value(w);
    put_string(w->out, key, strlen(key));
    fputc(':', w->out);
    w->after_key = 1;
}

void sf_format_number(char *buf, size_t size, double x) {
    if (!isfinite(x)) { snprintf(buf, size, "null"); return; }
    /* 15 digits first: DBL_DIG is 15, so a number that reads back with 15 or fewer digits prints
       shortest here (%g drops trailing zeros). printf and strtod are slow on wasm (long double is
       software-emulated), so fewer tries matter. */
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) return;
    }
}

void sf_write_number(sf_writer *w, double x) {
    char buf[40];
    before_value(w);
    sf_format_number(buf, sizeof buf, x);
    fputs(buf, w->out);
}

void sf_write_int(sf_writer *w, long long x) { before_value(w); fprintf(w->out, "%lld", x); }
void sf_write_string_len(sf_writer *w, const char *s, size_t len) { before_value(w); put_string(w->out, s, len); }
void sf_write_string(sf_writer *w, const char *s) { sf_write_string_len(w, s, strlen(s)); }
void sf_write_bool(sf_writer *w, int b) { before_value(w); fputs(b ? "true" : "false", w->out); }
void sf_write_null(sf_writer *w) { before_value(w); fputs("null", w->out); }

void sf_write_value(sf_writer *w, const sf_value *v) {
    if (!v) { sf_write_null(w); return; }
    switch (v->type) {
    case SF_NULL: sf_write_null(w); break;
    case SF_BOOL: sf_write_bool(w, v->boolean); break;
    case SF_NUMBER: sf_write_number(w, v->number); break;
    case SF_STRING: sf_write_string_len(w, v->string, v->len); break;
    case SF_ARRAY:
        sf_begin_array(w);
        for (size_t i = 0; i < v->len; i++) sf_write_value(w, &v->items[i]);
        sf_end_array(w);
        break;
    case SF_OBJECT:
        sf_begin_object(w);
        for (size_t i = 0; i < v->len; i++) {
            sf_key(w, v->keys[i]);
            sf_write_value(w, &v->items[i]);
        }
        sf_end_object(w);
        break;
    }
}
