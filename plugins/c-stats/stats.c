/*
 * stats: summary statistics of a list of numbers, in C on the Sandflow C SDK (plugin-sdk/c/sdk).
 *
 * The numbers are inputs[params.from].values when params.from names an upstream task (in the polyglot
 * DAG: "clean"), else params.values (the original behaviour). Output:
 *   {"count": n, "mean": m, "min": a, "max": b, "stddev": s (population), "sum": t}
 * with metrics {"count", "mean"}. An empty list gives count 0, sum 0 and null for the others.
 *
 * Build: plugins/c-stats/build.sh OUT.wasm (or plugins/build.sh, which builds every plugin).
 */
#include <math.h>
#include <stdlib.h>

#include "sandflow.h"

int main(void) {
    sf_value *ctx = sandflow_context();
    const sf_value *params = sandflow_params(ctx);
    const char *from = sf_string_or(sf_get(params, "from"), NULL, "params.from");

    const sf_value *values;
    char where[200];
    if (from) {
        const sf_value *upstream = sf_get(sandflow_inputs(ctx), from);
        if (!upstream) sandflow_fail("params.from is \"%s\" but inputs has no task of that name", from);
        values = sf_get(upstream, "values");
        snprintf(where, sizeof where, "inputs.%s.values", from);
    } else {
        values = sf_get(params, "values");
        snprintf(where, sizeof where, "params.values");
    }
    if (!values) sandflow_fail("%s must be an array of numbers (it is missing)", where);
    if (!sf_is(values, SF_ARRAY)) sandflow_fail("%s must be an array of numbers, not %s", where, sf_type_name(values));

    size_t count = values->len;
    double sum = 0, min = INFINITY, max = -INFINITY;
    for (size_t i = 0; i < count; i++) {
        const sf_value *v = sf_at(values, i);
        if (!sf_is(v, SF_NUMBER))
            sandflow_fail("%s must contain only numbers: element %zu is %s", where, i, sf_type_name(v));
        sum += v->number;
        if (v->number < min) min = v->number;
        if (v->number > max) max = v->number;
    }
    double mean = count ? sum / (double)count : NAN;
    double squares = 0; /* two passes: no cancellation as in E[x^2] - E[x]^2 */
    for (size_t i = 0; i < count; i++) squares += (values->items[i].number - mean) * (values->items[i].number - mean);
    double stddev = count ? sqrt(squares / (double)count) : NAN;
    sandflow_log("stats over %zu values%s%s", count, from ? " from " : "", from ? from : "");

    /* Non-finite numbers (the empty list's mean...) are written as null. */
    sf_writer w = sf_writer_new(stdout);
    sf_begin_object(&w);
    sf_key(&w, "output");
    sf_begin_object(&w);
    sf_key(&w, "count"), sf_write_int(&w, (long long)count);
    sf_key(&w, "mean"), sf_write_number(&w, mean);
    sf_key(&w, "min"), sf_write_number(&w, min);
    sf_key(&w, "max"), sf_write_number(&w, max);
    sf_key(&w, "stddev"), sf_write_number(&w, stddev);
    sf_key(&w, "sum"), sf_write_number(&w, sum);
    sf_end_object(&w);
    sf_key(&w, "metrics");
    sf_begin_object(&w);
    sf_key(&w, "count"), sf_write_int(&w, (long long)count);
    if (count) sf_key(&w, "mean"), sf_write_number(&w, mean);
    sf_end_object(&w);
    sf_end_object(&w);
    return 0;
}
