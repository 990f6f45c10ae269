package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tsnemap/tsnemap/internal/synth"
)

// TestBenchInput times a matrix file with labels through the real binary
// (each case runs in a child process of it) and checks the record, and
// that bad flags fail with the flag's name.
func TestBenchInput(t *testing.T) {
	bin := tsnemapBinary(t)
	dir := t.TempDir()
	const n, d = 600, 8
	x, labels := synth.Clusters(n, d, 4, 12, 3)
	var tsv, lab strings.Builder
	for i := range n {
		for c := range d {
			if c > 0 {
				tsv.WriteByte('\t')
			}
			fmt.Fprintf(&tsv, "%g", x[i*d+c])
		}
		tsv.WriteByte('\n')
		fmt.Fprintln(&lab, labels[i])
	}
	in, lp := filepath.Join(dir, "m.tsv"), filepath.Join(dir, "labels.txt")
	if err := os.WriteFile(in, []byte(tsv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lp, []byte(lab.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "bench", "--input", in, "--labels", lp, "--iterations", "300", "--json")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench: %v\n%s", err, errb.String())
	}
	var rec benchRecord
	if err := json.Unmarshal(out.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if rec.Case != "m.tsv" || rec.Accuracy == nil || *rec.Accuracy < 0.95 || rec.PeakRSS <= 0 || !(rec.KL > 0) {
		t.Errorf("record %+v (accuracy %v)", rec, rec.Accuracy)
	}
	if rec.Recall != nil {
		t.Errorf("recall %v reported for an exact search", *rec.Recall)
	}
	// An approximate search reports its recall on a sample.
	out.Reset()
	cmd = exec.Command(bin, "bench", "--input", in, "--neighbors", "approximate", "--iterations", "50", "--json")
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench: %v\n%s", err, errb.String())
	}
	rec = benchRecord{}
	if err := json.Unmarshal(out.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if rec.Recall == nil || *rec.Recall < 0.9 || rec.Accuracy != nil {
		t.Errorf("approximate: recall %v, accuracy %v (want a recall ≥ 0.9 and no accuracy without labels)", rec.Recall, rec.Accuracy)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--labels", lp}, "--labels needs --input"},
		{[]string{"--input", in, "--cases", "100x5"}, "--input and --cases"},
		{[]string{"--input", filepath.Join(dir, "missing.npy")}, "--input"},
		{[]string{"--input", in, "--labels", in}, "--labels"},
	} {
		out, err := exec.Command(bin, append([]string{"bench"}, c.args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("bench %v: err %v, output %q; want an error naming %q", c.args, err, out, c.want)
		}
	}
}

// A pixel case above --spool-above is made into a temporary file and read
// from it: the same figures as in memory, nothing left in --spool-dir, and
// an unusable --spool-dir is an error that names it.
func TestBenchSpooledPixels(t *testing.T) {
	bin := tsnemapBinary(t)
	dir := t.TempDir()
	run := func(args ...string) (benchRecord, error) {
		cmd := exec.Command(bin, append([]string{"bench", "--cases", "300x192u8", "--iterations", "100", "--perplexity", "10", "--json"}, args...)...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			return benchRecord{}, fmt.Errorf("%v: %s", err, errb.String())
		}
		var rec benchRecord
		err := json.Unmarshal(out.Bytes(), &rec)
		return rec, err
	}
	mem, err := run("--spool-above", "-1")
	if err != nil {
		t.Fatal(err)
	}
	spooled, err := run("--spool-above", "0", "--spool-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	if spooled.KL != mem.KL || *spooled.Accuracy != *mem.Accuracy {
		t.Errorf("spooled KL %v accuracy %v, in memory %v %v", spooled.KL, *spooled.Accuracy, mem.KL, *mem.Accuracy)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the spool directory holds %v after the run", left)
	}
	missing := filepath.Join(dir, "missing")
	if _, err := run("--spool-above", "0", "--spool-dir", missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing --spool-dir: %v, want an error naming %s", err, missing)
	}
}

// Cancelled while spooling, nothing is left behind.
func TestSpoolImagesCancelled(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := spoolImages(ctx, synth.NewImageSet(4, 4, 3, 1), 100, 48, dir); !errors.Is(err, context.Canceled) {
		t.Errorf("spoolImages: %v, want context.Canceled", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the spool directory holds %v", left)
	}
}
