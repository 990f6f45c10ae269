package testkit

import (
	"context"
	"sync/atomic"
)

// WatchedContext is a context that counts how often the code it is given
// to asks whether it is done (Err or Done): a test can cancel a call once
// the call is under way, an event, instead of after a fixed sleep.
type WatchedContext struct {
	context.Context
	polls atomic.Int64
}

// WatchContext wraps parent.
func WatchContext(parent context.Context) *WatchedContext {
	return &WatchedContext{Context: parent}
}

func (w *WatchedContext) Err() error {
	w.polls.Add(1)
	return w.Context.Err()
}

func (w *WatchedContext) Done() <-chan struct{} {
	w.polls.Add(1)
	return w.Context.Done()
}

// Polls is how many times Err or Done was called.
func (w *WatchedContext) Polls() int64 { return w.polls.Load() }
