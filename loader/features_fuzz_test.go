package loader

import (
	"context"
	"errors"
	"testing"

	"github.com/tsnemap/tsnemap/internal/featurefile"
)

// FuzzFeatures: no bytes make the features parsers panic or return
// features that break their own rules; a refusal is a plain error.
func FuzzFeatures(f *testing.F) {
	f.Add(featurefile.Text(fixIDs, fixVecs, '\t', "id"))
	f.Add(featurefile.Text(fixIDs, fixVecs, ',', "id"))
	f.Add([]byte("id\tv0\nx\tNaN\n"))
	if pq, err := featurefile.Parquet(fixIDs, fixVecs, "id", "clip", false); err == nil {
		f.Add(pq)
		f.Add(pq[:len(pq)/2])
	}
	if pq, err := featurefile.Parquet(fixIDs, fixVecs, "id", "clip", true); err == nil {
		f.Add(pq)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var feats *Features
		var err error
		if len(data) >= 4 && string(data[:4]) == "PAR1" {
			feats, err = parseFeaturesParquet(context.Background(), data, FeaturesOptions{IDColumn: "id"})
		} else {
			feats, err = parseFeaturesText(context.Background(), data, "/f.tsv", "id")
		}
		if err != nil {
			if errors.Is(err, context.Canceled) {
				t.Fatal(err)
			}
			return
		}
		if len(feats.Values) != len(feats.IDs)*feats.Dim {
			t.Fatalf("%d values for %d ids of %d", len(feats.Values), len(feats.IDs), feats.Dim)
		}
		_ = feats.check()
	})
}
