package testkit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// OpenFilesIn counts the files under dir this process holds open, deleted
// ones included (a spool file is unlinked as soon as it is created, so
// only its descriptor shows whether it is gone). It skips the test where
// /proc/self/fd cannot be read (not Linux).
func OpenFilesIn(tb testing.TB, dir string) int {
	tb.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Skipf("cannot list open files: %v", err)
	}
	n := 0
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(link, filepath.Clean(dir)+string(filepath.Separator)) {
			n++
		}
	}
	return n
}
