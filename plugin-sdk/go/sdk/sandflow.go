// Package sandflow is the Sandflow plugin SDK for Go (ABI v1, the WASI command ABI).
//
// A plugin reads one JSON task context on stdin, writes one JSON task result on stdout, logs on
// stderr and exits 0 for success (see plugin-sdk/ABI.md). Build it for WASI preview1:
//
//	GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags="-s -w" -o plugin.wasm .
//
// Typical use:
//
//	func main() {
//		sandflow.Run(func(ctx *sandflow.Context) (*sandflow.Result, error) {
//			var p struct{ Values []float64 `json:"values"` }
//			if err := ctx.DecodeParams(&p); err != nil {
//				return nil, err
//			}
//			return &sandflow.Result{Output: map[string]any{"count": len(p.Values)}}, nil
//		})
//	}
//
// Exit codes follow the Rust SDK: 1 the handler returned an error, 2 stdin was not a valid ABI v1
// context, 3 the result could not be written. The reason is logged first as "error: ...".
package sandflow

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
)

// Context is the task context (ABI v1 §3). Missing fields take their zero values; MapIndex is nil
// for a task that is not mapped. Params, Inputs and Conf keep the raw JSON of each member, to be
// decoded into the caller's own types.
type Context struct {
	ABI          int                        `json:"abi"`
	DagID        string                     `json:"dag_id"`
	DagVersion   string                     `json:"dag_version"`
	RunID        string                     `json:"run_id"`
	TaskID       string                     `json:"task_id"`
	MapIndex     *int                       `json:"map_index"`
	MapItem      json.RawMessage            `json:"map_item,omitempty"`
	TryNumber    int                        `json:"try_number"`
	LogicalDate  *string                    `json:"logical_date"`
	DataInterval *DataInterval              `json:"data_interval"`
	Conf         map[string]json.RawMessage `json:"conf"`
	Params       map[string]json.RawMessage `json:"params"`
	Inputs       map[string]json.RawMessage `json:"inputs"`
	// Raw is the whole context as it arrived (for fields this type does not name, e.g. dag_runs).
	Raw json.RawMessage `json:"-"`
}

// DataInterval is the half-open interval [Start, End) of data a scheduled run covers (RFC 3339).
type DataInterval struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// Result is the task result (ABI v1 §4). Nil / empty fields are left out of the JSON.
type Result struct {
	// Output is handed to downstream tasks as inputs["<this task id>"]; any JSON-encodable value.
	Output any `json:"output,omitempty"`
	// Metrics are named finite numbers, charted in the UI.
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// Branch, for branch tasks: the direct downstream tasks to follow.
	Branch []string `json:"branch,omitempty"`
	// Sensor, for sensor tasks: Done ends the wait.
	Sensor *Sensor `json:"sensor,omitempty"`
	// Trigger starts runs of other DAGs.
	Trigger []Trigger `json:"trigger,omitempty"`
}

// Sensor is a sensor task's answer.
type Sensor struct {
	Done bool `json:"done"`
}

// Trigger asks for a run of DAG DagID with configuration Conf (nil = {}).
type Trigger struct {
	DagID string         `json:"dag_id"`
	Conf  map[string]any `json:"conf,omitempty"`
}

// Param decodes params[name] into out. It returns (false, nil) when the param is missing or null, so
// that out keeps the default the caller put there.
func (c *Context) Param(name string, out any) (bool, error) {
	return decodeMember(c.Params, "param", name, out)
}

// Input decodes inputs[taskID], the output of upstream task taskID, into out. It returns
// (false, nil) when there is no such input (or it is null).
func (c *Context) Input(taskID string, out any) (bool, error) {
	return decodeMember(c.Inputs, "input", taskID, out)
}

// DecodeParams decodes the whole params object into out (a pointer to a struct or map). Fields
// missing from params keep their values in out, so set defaults first.
func (c *Context) DecodeParams(out any) error {
	if len(c.Params) == 0 {
		return nil
	}
	raw, err := json.Marshal(c.Params)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("invalid params: %w", err)
	}
	return nil
}

func decodeMember(m map[string]json.RawMessage, what, name string, out any) (bool, error) {
	raw, ok := m[name]
	if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return false, nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return true, fmt.Errorf("invalid %s %q: %w", what, name, err)
	}
	return true, nil
}

// Logf writes one line on stderr, the task's log (the host prefixes each line with the time).
func Logf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if len(msg) == 0 || msg[len(msg)-1] != '\n' {
		msg += "\n"
	}
	os.Stderr.WriteString(msg)
}

// Fail logs "error: <message>" and exits with code.
func Fail(code int, format string, args ...any) {
	Logf("error: "+format, args...)
	os.Exit(code)
}

// ParseContext parses a task context and checks its ABI version.
func ParseContext(data []byte) (*Context, error) {
	var head struct {
		ABI *int `json:"abi"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("invalid task context JSON: %w", err)
	}
	if head.ABI == nil {
		return nil, fmt.Errorf("invalid task context: missing `abi`")
	}
	if *head.ABI != 1 {
		return nil, fmt.Errorf("unsupported ABI version %d (this SDK speaks 1)", *head.ABI)
	}
	ctx := &Context{TryNumber: 1}
	if err := json.Unmarshal(data, ctx); err != nil {
		return nil, fmt.Errorf("invalid task context: %w", err)
	}
	ctx.Raw = json.RawMessage(data)
	if ctx.Params == nil {
		ctx.Params = map[string]json.RawMessage{}
	}
	if ctx.Inputs == nil {
		ctx.Inputs = map[string]json.RawMessage{}
	}
	if ctx.Conf == nil {
		ctx.Conf = map[string]json.RawMessage{}
	}
	return ctx, nil
}

// ReadContext reads stdin to end of file and parses it as the task context.
func ReadContext() (*Context, error) {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		return nil, fmt.Errorf("reading stdin: %w", err)
	}
	return ParseContext(data)
}

// MarshalResult encodes a result as one line of JSON; it refuses non-finite metrics (JSON has no
// NaN or infinity). A nil result is {}.
func MarshalResult(r *Result) ([]byte, error) {
	if r == nil {
		r = &Result{}
	}
	for name, v := range r.Metrics {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("metric `%s` is %v: JSON carries only finite numbers", name, v)
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("encoding the result: %w", err)
	}
	return buf.Bytes(), nil
}

// Run is the whole plugin: it reads the context from stdin, calls handler, and writes its result on
// stdout. When the handler returns an error it logs it and exits 1 (stdout stays empty). Call it
// from main; it returns only on success.
func Run(handler func(ctx *Context) (*Result, error)) {
	ctx, err := ReadContext()
	if err != nil {
		Fail(2, "%v", err)
	}
	result, err := handler(ctx)
	if err != nil {
		Fail(1, "%v", err)
	}
	out, err := MarshalResult(result)
	if err != nil {
		Fail(3, "%v", err)
	}
	if _, err := os.Stdout.Write(out); err != nil {
		Fail(3, "writing the result on stdout: %v", err)
	}
}
