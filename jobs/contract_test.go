package jobs_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/tsnemap/tsnemap/internal/testkit"
	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/openapi"
)

func loadSpec(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi.Load()
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// asJSON brings v to the shapes encoding/json decodes into (float64 for
// every number), so values from YAML and from Go compare.
func asJSON(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDefaultRequestMatchesSpec: every default the spec documents for a
// JobRequest field is the one DefaultRequest fills in, a field without a
// documented default has none, and DefaultRequest has no field the spec
// does not name.
func TestDefaultRequestMatchesSpec(t *testing.T) {
	schema := loadSpec(t).Components.Schemas["JobRequest"].Value
	got := asJSON(t, jobs.DefaultRequest()).(map[string]any)
	for name, prop := range schema.Properties {
		v, set := got[name]
		switch def := prop.Value.Default; {
		case def != nil && !set && reflect.ValueOf(def).IsZero():
			// A zero default (false, 0, "") is the field left out (omitempty).
		case def != nil && !reflect.DeepEqual(v, asJSON(t, def)):
			t.Errorf("%s: DefaultRequest has %v, the spec's default is %v", name, v, def)
		case def == nil && set && v != nil && !reflect.ValueOf(v).IsZero():
			t.Errorf("%s: DefaultRequest has %v, the spec documents no default", name, v)
		}
	}
	for name := range got {
		if schema.Properties[name] == nil {
			t.Errorf("DefaultRequest has %s, which JobRequest does not have", name)
		}
	}
}

// TestEnumsMatchSpec: the statuses, stages and error codes declared in
// package jobs are exactly the values the spec allows.
func TestEnumsMatchSpec(t *testing.T) {
	schemas := loadSpec(t).Components.Schemas
	consts := testkit.StringConsts(t, ".")
	cases := []struct {
		name string
		spec *openapi3.Schema
		is   func(c testkit.Const) bool
	}{
		{"status", schemas["JobStatus"].Value, func(c testkit.Const) bool { return c.Type == "Status" }},
		{"stage", schemas["JobStage"].Value, func(c testkit.Const) bool { return c.Type == "Stage" }},
		{"error code", schemas["JobError"].Value.Properties["code"].Value,
			func(c testkit.Const) bool { return c.Type == "" && strings.HasPrefix(c.Name, "Code") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var ours, spec []string
			for _, c := range consts {
				if tc.is(c) {
					ours = append(ours, c.Value)
				}
			}
			for _, v := range tc.spec.Enum {
				spec = append(spec, v.(string))
			}
			for _, v := range ours {
				if !slices.Contains(spec, v) {
					t.Errorf("jobs has %s %q; the spec allows only %v", tc.name, v, spec)
				}
			}
			for _, v := range spec {
				if !slices.Contains(ours, v) {
					t.Errorf("the spec allows %s %q, which jobs never sets (jobs has %v)", tc.name, v, ours)
				}
			}
			if len(ours) == 0 {
				t.Fatalf("found no %s constants in package jobs", tc.name)
			}
		})
	}
}
