package jobs

import (
	"context"
	"errors"
	"testing"

	"github.com/tsnemap/tsnemap/internal/testkit"
)

func TestAtlasStoredReplacedAndDeleted(t *testing.T) {
	ctx := context.Background()
	n := startNATS(t, t.TempDir(), Config{})
	st := n.store
	job, err := st.Submit(ctx, req())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AtlasIndex(ctx, job.ID); !errors.Is(err, ErrConflict) {
		t.Fatalf("atlas before loading: %v, want ErrConflict", err)
	}
	if err := st.PutAtlas(ctx, job.ID, testkit.AtlasOfSheets(3)); err != nil {
		t.Fatal(err)
	}
	if j, _ := st.Get(ctx, job.ID); !j.HasAtlas {
		t.Error("the job does not say it has thumbnails")
	}
	idx, err := st.AtlasIndex(ctx, job.ID)
	if err != nil || len(idx.Sheets) != 3 {
		t.Fatalf("index %+v, %v", idx, err)
	}
	if b, err := st.AtlasSheet(ctx, job.ID, 2); err != nil || b[2] != 2 {
		t.Fatalf("sheet 2: %v %v", b, err)
	}
	// Run again with fewer sheets: the third goes.
	if err := st.PutAtlas(ctx, job.ID, testkit.AtlasOfSheets(2)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AtlasSheet(ctx, job.ID, 2); !errors.Is(err, ErrNotFound) {
		t.Errorf("sheet 2 after a rerun with two: %v, want ErrNotFound", err)
	}
	if err := st.Delete(ctx, job.ID); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{atlasIndexName(job.ID), atlasSheetName(job.ID, 0), atlasSheetName(job.ID, 1)} {
		if _, err := st.results.GetInfo(ctx, name); err == nil {
			t.Errorf("%s outlived its job", name)
		}
	}
}
