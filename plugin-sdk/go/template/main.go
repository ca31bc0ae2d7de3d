// {{name}}: a Sandflow operator in Go (ABI v1).
//
// Sums params.values (default []) times params.scale (default 1).
// Output {"count": n, "sum": s}; metrics {"count": n}.
package main

import (
	"fmt"
	"math"

	sandflow "{{name_ident}}/sdk"
)

type params struct {
	Values []float64 `json:"values"`
	Scale  float64   `json:"scale"`
}

func handle(ctx *sandflow.Context) (*sandflow.Result, error) {
	p := params{Values: []float64{}, Scale: 1}
	if err := ctx.DecodeParams(&p); err != nil {
		return nil, err
	}
	if math.IsInf(p.Scale, 0) || math.IsNaN(p.Scale) {
		return nil, fmt.Errorf("param `scale` must be finite")
	}
	sum := 0.0
	for _, x := range p.Values {
		sum += x * p.Scale
	}
	sandflow.Logf("{{name}}: summed %d values", len(p.Values))
	return &sandflow.Result{
		Output:  map[string]any{"count": len(p.Values), "sum": sum},
		Metrics: map[string]float64{"count": float64(len(p.Values))},
	}, nil
}

func main() {
	sandflow.Run(handle)
}
