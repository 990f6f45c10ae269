package gpu

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// ptxEntries parses the kernel entries of a PTX file: name → parameter
// types as declared (.u64, .u32, .f32, ...).
func ptxEntries(t *testing.T, src string) map[string][]string {
	t.Helper()
	entry := regexp.MustCompile(`(?s)\.visible\s+\.entry\s+(\w+)\s*\((.*?)\)`)
	param := regexp.MustCompile(`\.param\s+(\.\w+)\s+(?:\.align\s+\d+\s+)?\w+`)
	out := map[string][]string{}
	for _, m := range entry.FindAllStringSubmatch(src, -1) {
		var types []string
		for _, p := range param.FindAllStringSubmatch(m[2], -1) {
			types = append(types, p[1])
		}
		out[m[1]] = types
	}
	return out
}

func ptxType(k paramKind) []string {
	switch k {
	case pPtr:
		return []string{".u64", ".b64", ".s64"}
	case pI32:
		return []string{".u32", ".s32", ".b32"}
	case pF32:
		return []string{".f32"}
	case pF64:
		return []string{".f64"}
	}
	return nil
}

// TestKernelTableMatchesPTX checks, without a GPU, that every kernel the Go
// code launches is an entry of the committed PTX with the same parameters
// in number, type and size, and that every entry of the PTX is in the
// table (no kernel compiled and forgotten).
func TestKernelTableMatchesPTX(t *testing.T) {
	entries := map[string]map[string][]string{}
	for _, mod := range modules {
		src, err := os.ReadFile(filepath.Join("kernels", mod+".ptx"))
		if err != nil {
			t.Fatalf("module %s: %v (run go generate ./gpu)", mod, err)
		}
		if !strings.Contains(string(src), ".target sm_70") {
			t.Errorf("%s.ptx does not target sm_70 (compute_70)", mod)
		}
		entries[mod] = ptxEntries(t, string(src))
		if len(entries[mod]) == 0 {
			t.Errorf("%s.ptx has no entries", mod)
		}
	}
	seen := map[string]bool{}
	for id, sig := range kernelTable {
		if sig.name == "" {
			t.Errorf("kernelTable[%d] is empty", id)
			continue
		}
		seen[sig.module+"/"+sig.name] = true
		got, ok := entries[sig.module][sig.name]
		if !ok {
			t.Errorf("kernel %s is not an entry of %s.ptx", sig.name, sig.module)
			continue
		}
		if len(got) != len(sig.params) {
			t.Errorf("kernel %s: the PTX has %d parameters %v, the table %d %v", sig.name, len(got), got, len(sig.params), sig.params)
			continue
		}
		for i, k := range sig.params {
			want := ptxType(k)
			if !contains(want, got[i]) {
				t.Errorf("kernel %s parameter %d: PTX %s, table %v (%d bytes)", sig.name, i, got[i], k, k.bytes())
			}
		}
	}
	for mod, es := range entries {
		for name := range es {
			if !seen[mod+"/"+name] {
				t.Errorf("%s.ptx entry %s is not in kernelTable", mod, name)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestPTXAssembles runs ptxas (the CUDA toolkit's assembler, which the
// driver's JIT matches) on every module for Volta, Ampere and Hopper, so a
// PTX the driver would reject, or a kernel that spills registers, fails
// here without a GPU.
func TestPTXAssembles(t *testing.T) {
	spill := regexp.MustCompile(`(\d+) bytes spill stores, (\d+) bytes spill loads`)
	ptxas, err := exec.LookPath("ptxas")
	if err != nil {
		t.Skip("ptxas is not installed (Debian: nvidia-cuda-toolkit in non-free); not assembling the PTX")
	}
	for _, arch := range []string{"sm_70", "sm_80", "sm_90"} {
		for _, mod := range modules {
			cmd := exec.Command(ptxas, "-v", "-arch="+arch, "-o", os.DevNull, filepath.Join("kernels", mod+".ptx"))
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if errors.As(err, &ee) && strings.Contains(string(out), "not defined for option") {
				t.Logf("ptxas does not know %s: %s", arch, out)
				continue
			}
			if err != nil {
				t.Errorf("ptxas -arch=%s %s.ptx: %v\n%s", arch, mod, err, out)
				continue
			}
			// Register spills put the hot loops' state in local memory;
			// every kernel is written to fit in registers.
			for _, m := range spill.FindAllStringSubmatch(string(out), -1) {
				if m[1] != "0" || m[2] != "0" {
					t.Errorf("ptxas -arch=%s %s.ptx: a kernel spills registers (%s)", arch, mod, m[0])
				}
			}
		}
	}
}
