/*
 * {{name}}: a Sandflow operator in C (ABI v1). Sums params.values (default: no numbers) and multiplies
 * the sum by params.scale (default 1). Output: {"count": n, "sum": s}; metric "count".
 *
 * Build: ./build.sh  ->  {{name}}.wasm
 * Test:  sandflow plugin test tests --plugin {{name}}.wasm
 */
#include "sandflow.h"

int main(void) {
    sf_value *ctx = sandflow_context();          /* exits 2 unless stdin is an ABI v1 context */
    const sf_value *params = sandflow_params(ctx); /* {} when the context has none */

    const sf_value *values = sf_get(params, "values");
    if (values && !sf_is(values, SF_ARRAY))
        sandflow_fail("params.values must be an array of numbers, not %s", sf_type_name(values));
    double scale = sf_number_or(sf_get(params, "scale"), 1, "params.scale");

    size_t count = values ? values->len : 0;
    double sum = 0;
    for (size_t i = 0; i < count; i++) {
        const sf_value *v = sf_at(values, i);
        if (!sf_is(v, SF_NUMBER)) sandflow_fail("params.values[%zu] must be a number, not %s", i, sf_type_name(v));
        sum += v->number;
    }
    sandflow_log("{{name}}: %zu values", count); /* the log: stderr */

    sf_writer w = sf_writer_new(stdout);           /* the result: stdout, nothing else */
    sf_begin_object(&w);
    sf_key(&w, "output");
    sf_begin_object(&w);
    sf_key(&w, "count"), sf_write_int(&w, (long long)count);
    sf_key(&w, "sum"), sf_write_number(&w, sum * scale);
    sf_end_object(&w);
    sf_key(&w, "metrics");
    sf_begin_object(&w);
    sf_key(&w, "count"), sf_write_int(&w, (long long)count);
    sf_end_object(&w);
    sf_end_object(&w);
    return 0;
}
