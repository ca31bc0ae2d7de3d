// Sandflow example operator "zscores" in Go (ABI v1).
//
// Values: inputs[params.from].values (params.from defaults to "clean"), else params.values.
// Mean and standard deviation: inputs.stats.mean / inputs.stats.stddev, else params.mean /
// params.stddev, else computed from the values (population standard deviation).
// Output: {"z": [(x-mean)/stddev rounded to 4 decimals, in input order], "max_abs_z": max |z|};
// a standard deviation of 0 makes every z 0. Metrics: {"count": n, "max_abs_z": m}.
//
// The SDK is the package in ../../plugin-sdk/go/sdk: build.sh copies it into the build directory
// as zscores/sdk (Go modules cannot import outside their root).
package main

import (
	"fmt"
	"math"

	sandflow "zscores/sdk"
)

type valuesOutput struct {
	Values *[]float64 `json:"values"`
}

type statsOutput struct {
	Mean   *float64 `json:"mean"`
	Stddev *float64 `json:"stddev"`
}

type params struct {
	From   string    `json:"from"`
	Values []float64 `json:"values"`
	Mean   *float64  `json:"mean"`
	Stddev *float64  `json:"stddev"`
	Stats  string    `json:"stats"`
}

func round4(x float64) float64 {
	r := math.Round(x*1e4) / 1e4
	if r == 0 {
		return 0 // no "-0" in the output
	}
	return r
}

func zscores(ctx *sandflow.Context) (*sandflow.Result, error) {
	p := params{From: "clean", Stats: "stats"}
	if err := ctx.DecodeParams(&p); err != nil {
		return nil, err
	}

	values := p.Values
	var up valuesOutput
	found, err := ctx.Input(p.From, &up)
	if err != nil {
		return nil, err
	}
	if found {
		if up.Values == nil {
			return nil, fmt.Errorf("inputs.%s has no `values`", p.From)
		}
		values = *up.Values
	}

	mean, stddev := p.Mean, p.Stddev
	var st statsOutput
	if found, err := ctx.Input(p.Stats, &st); err != nil {
		return nil, err
	} else if found {
		if st.Mean == nil || st.Stddev == nil {
			if len(values) > 0 {
				return nil, fmt.Errorf("inputs.%s needs numbers `mean` and `stddev`", p.Stats)
			}
		}
		mean, stddev = st.Mean, st.Stddev
	}
	if mean == nil || stddev == nil {
		m, s := meanStddev(values)
		mean, stddev = &m, &s
	}

	z := make([]float64, len(values))
	maxAbs := 0.0
	for i, x := range values {
		if *stddev != 0 {
			z[i] = round4((x - *mean) / *stddev)
		}
		if a := math.Abs(z[i]); a > maxAbs {
			maxAbs = a
		}
	}
	if math.IsNaN(maxAbs) || math.IsInf(maxAbs, 0) {
		return nil, fmt.Errorf("z-scores are not finite (mean %v, stddev %v)", *mean, *stddev)
	}
	sandflow.Logf("zscores: %d values, mean %v, stddev %v, max |z| %v", len(values), *mean, *stddev, maxAbs)
	return &sandflow.Result{
		Output:  map[string]any{"z": z, "max_abs_z": maxAbs},
		Metrics: map[string]float64{"count": float64(len(values)), "max_abs_z": maxAbs},
	}, nil
}

// meanStddev is the mean and the population standard deviation (0, 0 for no values).
func meanStddev(xs []float64) (float64, float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	mean := sum / float64(len(xs))
	ss := 0.0
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss / float64(len(xs)))
}

func main() {
	sandflow.Run(zscores)
}
