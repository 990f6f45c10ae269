package testkit

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Const is a string constant declared in a package's source.
type Const struct {
	Name, Type, Value string // Type is "" for an untyped constant
}

// StringConsts reads the string constants that the non-test Go files in
// dir declare, so a test can check every value of an enum (against the
// API's spec, say) without a list that could fall behind the code.
func StringConsts(tb testing.TB, dir string) []Const {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatalf("read %s: %v", dir, err)
	}
	fset := token.NewFileSet()
	var out []Const
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			tb.Fatalf("parse %s: %v", name, err)
		}
		out = append(out, fileConsts(f)...)
	}
	return out
}

func fileConsts(f *ast.File) []Const {
	var out []Const
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			typ := ""
			if id, ok := vs.Type.(*ast.Ident); ok {
				typ = id.Name
			}
			for i, name := range vs.Names {
				if i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				if v, err := strconv.Unquote(lit.Value); err == nil {
					out = append(out, Const{Name: name.Name, Type: typ, Value: v})
				}
			}
		}
	}
	return out
}
