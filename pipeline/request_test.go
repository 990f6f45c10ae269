package pipeline

import (
	"slices"
	"testing"

	"github.com/tsnemap/tsnemap/embed"
	"github.com/tsnemap/tsnemap/internal/testkit"
	"github.com/tsnemap/tsnemap/jobs"
)

// TestOptionsOfDefaultRequest: a request of nothing but defaults runs the
// engine with its own defaults (jobs.DefaultRequest is built from them).
func TestOptionsOfDefaultRequest(t *testing.T) {
	if got, want := Options(jobs.DefaultRequest()), embed.DefaultOptions(); got != want {
		t.Errorf("Options(DefaultRequest()) = %+v, want embed.DefaultOptions() %+v", got, want)
	}
}

// TestJobStageOfEveryEngineStage: every stage the engine declares maps to
// a job stage of its own, among those a job passes through while it runs
// the engine.
func TestJobStageOfEveryEngineStage(t *testing.T) {
	engine := []jobs.Stage{jobs.StageReducing, jobs.StageComputingAffinities, jobs.StageOptimizing}
	var seen []jobs.Stage
	for _, c := range testkit.StringConsts(t, "../embed") {
		if c.Type != "Stage" {
			continue
		}
		s, ok := jobStage(embed.Stage(c.Value))
		switch {
		case !ok:
			t.Errorf("embed.%s (%q) has no job stage", c.Name, c.Value)
		case !slices.Contains(engine, s):
			t.Errorf("embed.%s maps to job stage %q, not one of the engine's %v", c.Name, s, engine)
		case slices.Contains(seen, s):
			t.Errorf("embed.%s maps to job stage %q, as another engine stage does", c.Name, s)
		}
		seen = append(seen, s)
	}
	if len(seen) != len(engine) {
		t.Errorf("the engine's stages map to %v, want each of %v", seen, engine)
	}
	if _, ok := jobStage("sharding"); ok {
		t.Error("an engine stage unknown to the API maps to a job stage")
	}
}
