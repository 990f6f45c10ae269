package testkit

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestEventuallyReturnsOnceTrue(t *testing.T) {
	var calls atomic.Int32
	Eventually(t, time.Second, func() (bool, string) {
		n := calls.Add(1)
		return n >= 3, "fewer than 3 calls"
	})
	if got := calls.Load(); got != 3 {
		t.Fatalf("cond called %d times, want 3", got)
	}
}

// fakeTB records a failure instead of ending the test, so the failing
// path of Eventually can be checked.
type fakeTB struct {
	testing.TB
	failed string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = format
	panic(f)
}

func TestEventuallyFailsAfterDeadline(t *testing.T) {
	f := &fakeTB{TB: t}
	func() {
		defer func() {
			if r := recover(); r != f {
				t.Fatalf("Eventually did not fail the test (recovered %v)", r)
			}
		}()
		Eventually(f, 30*time.Millisecond, func() (bool, string) { return false, "never" }, "job %d", 7)
	}()
	if f.failed == "" {
		t.Fatal("no failure recorded")
	}
}
