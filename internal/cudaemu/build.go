// Package cudaemu builds the emulated CUDA driver (gpu/testdata/cudaemu)
// for the tests of the cuda build: the gpu package's, and the end-to-end
// tests of cmd/tsnemap. The library is compiled once per content of its
// sources and kept in the user's cache directory.
package cudaemu

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
)

// sourceDir is gpu/testdata/cudaemu of the checkout this file is in.
func sourceDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cudaemu: cannot locate the sources")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "gpu", "testdata", "cudaemu"), nil
}

// Build compiles libcudaemu.so (with $CXX, else g++; C++20, x86-64) unless
// the cache has it for the same sources, and returns its path. Pass the
// path in gpu.LibraryEnv to use it.
func Build() (string, error) {
	src, err := sourceDir()
	if err != nil {
		return "", err
	}
	files, sum, err := sources(src)
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "tsnemap", "cudaemu-"+sum[:16])
	lib := filepath.Join(dir, "libcudaemu.so")
	if _, err := os.Stat(lib); err == nil {
		return lib, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	cxx := os.Getenv("CXX")
	if cxx == "" {
		cxx = "g++"
	}
	if _, err := exec.LookPath(cxx); err != nil {
		return "", fmt.Errorf("cudaemu: no C++ compiler (%s) to build the emulated CUDA driver: %w", cxx, err)
	}
	tmp, err := os.MkdirTemp(dir, "build")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	// One object per translation unit, compiled in parallel, then linked.
	flags := []string{"-std=c++20", "-O2", "-fPIC", "-pthread", "-fvisibility=hidden", "-U_FORTIFY_SOURCE",
		"-Wall", "-Wno-unknown-pragmas"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	var objs []string
	sem := make(chan struct{}, max(1, runtime.NumCPU()))
	for _, f := range files {
		if !strings.HasSuffix(f, ".cpp") {
			continue
		}
		obj := filepath.Join(tmp, strings.TrimSuffix(filepath.Base(f), ".cpp")+".o")
		objs = append(objs, obj)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out, err := exec.Command(cxx, append(flags, "-c", "-o", obj, f)...).CombinedOutput()
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("cudaemu: compiling %s: %v\n%s", filepath.Base(f), err, out))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	out := filepath.Join(tmp, "libcudaemu.so")
	args := append(append([]string{"-shared", "-pthread", "-o", out}, objs...), "-ldl")
	if b, err := exec.Command(cxx, args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("cudaemu: linking: %v\n%s", err, b)
	}
	if err := os.Rename(out, lib); err != nil {
		return "", err
	}
	return lib, nil
}

// sources lists the emulator's sources (and the kernels they include) and
// hashes their contents.
func sources(src string) ([]string, string, error) {
	var files []string
	for _, dir := range []string{src, filepath.Join(src, "..", "..", "kernels")} {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			switch filepath.Ext(p) {
			case ".cpp", ".h", ".cu", ".cuh":
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return nil, "", err
		}
	}
	slices.Sort(files)
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, "", err
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(b))
		h.Write(b)
	}
	return files, hex.EncodeToString(h.Sum(nil)), nil
}
