// Package testkit holds the helpers that tests of several packages share.
// It is imported only from _test.go files.
package testkit

import (
	"fmt"
	"testing"
	"time"
)

// pollEvery is how often Eventually re-checks its condition: often enough
// that a test waits little past the moment the condition holds, rarely
// enough that polling does not load the machine.
const pollEvery = 10 * time.Millisecond

// Eventually calls cond until it returns true or within has passed, and
// fails the test with what cond last said (and the message) if it never
// did. It is the one way tests here wait for something to happen: no
// fixed sleeps.
func Eventually(tb testing.TB, within time.Duration, cond func() (bool, string), msgAndArgs ...any) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			msg := ""
			if len(msgAndArgs) > 0 {
				msg = fmt.Sprintf(fmt.Sprint(msgAndArgs[0]), msgAndArgs[1:]...) + ": "
			}
			tb.Fatalf("%snot true within %v (last: %s)", msg, within, why)
		}
		time.Sleep(pollEvery)
	}
}
