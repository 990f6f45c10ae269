package testkit

import (
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
