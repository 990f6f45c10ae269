package testkit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestStringConsts(t *testing.T) {
	dir := t.TempDir()
	src := `package p

type Kind string

const (
	KindA Kind = "a"
	KindB Kind = "b"
	CodeX      = "x"
	n          = 3
)

const raw = ` + "`r`" + `
`
	if err := os.WriteFile(filepath.Join(dir, "p.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "p_test.go"), []byte("package p\n\nconst KindT Kind = \"t\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := StringConsts(t, dir)
	want := []Const{{"KindA", "Kind", "a"}, {"KindB", "Kind", "b"}, {"CodeX", "", "x"}, {"raw", "", "r"}}
	if !slices.Equal(got, want) {
		t.Errorf("StringConsts = %+v, want %+v (no test files, no numbers)", got, want)
	}
}

func TestWatchContextCountsChecks(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	ctx := WatchContext(parent)
	if ctx.Err() != nil || ctx.Polls() != 1 {
		t.Fatalf("before cancel: err %v, %d polls", ctx.Err(), ctx.Polls())
	}
	cancel()
	<-ctx.Done()
	if !errors.Is(ctx.Err(), context.Canceled) || ctx.Polls() != 3 {
		t.Fatalf("after cancel: err %v, %d polls, want Canceled and 3", ctx.Err(), ctx.Polls())
	}
}
