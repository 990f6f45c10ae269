package jobs

import (
	"fmt"
	"slices"
	"time"
)

// A job's life, in one place: every change of its status is one of the
// methods below, and each checks the change against transitions.
//
//	queued  → running    a worker starts it (start)
//	queued  → canceled   DELETE while queued, or a start finds the cancel (finish)
//	queued  → failed     a start finds its time or its crashes used up (finish)
//	running → running    a start after an attempt that crashed or went silent (start)
//	running → queued     its worker stops and hands it back (handBack)
//	running → succeeded, failed, canceled   its attempt ends (finish)
//
// Succeeded, failed and canceled are final: nothing leaves them.
var transitions = map[Status][]Status{
	StatusQueued:  {StatusRunning, StatusCanceled, StatusFailed},
	StatusRunning: {StatusRunning, StatusQueued, StatusSucceeded, StatusFailed, StatusCanceled},
}

// CanMove reports whether a job may go from status from to status to.
func CanMove(from, to Status) bool {
	return slices.Contains(transitions[from], to)
}

// move changes the job's status, or refuses (ErrConflict) a change the
// state machine does not allow.
func (j *Job) move(to Status) error {
	if !CanMove(j.Status, to) {
		return fmt.Errorf("job %s: %s → %s: %w", j.ID, j.Status, to, ErrConflict)
	}
	j.Status = to
	return nil
}

// start begins attempt j.Attempts+1 at now. A job still marked running was
// left by an attempt that never ended (its worker crashed or went silent
// past the ack wait).
func (j *Job) start(now time.Time) error {
	prev := j.Status
	if err := j.move(StatusRunning); err != nil {
		return err
	}
	switch {
	case prev == StatusRunning:
		j.Crashes++
		j.record(now, EventRetried, j.Attempts+1, fmt.Sprintf("attempt %d did not finish: its worker stopped or went silent for longer than the ack wait", j.Attempts))
	case j.Attempts > 0:
		j.record(now, EventRetried, j.Attempts+1, fmt.Sprintf("attempt %d was handed back", j.Attempts))
	}
	j.Stage = StageFetchingDataset
	j.StartedAt = &now
	j.Attempts++
	j.Error = nil
	j.HasAtlas = false
	progress := Progress{Iterations: j.Progress.Iterations}
	if j.Shards != nil && j.Shards.Embedder != "" && j.Shards.Complete() {
		// Handed off with its shards in: this attempt embeds them.
		progress.ImagesTotal, progress.ImagesLoaded, progress.ImagesFailed = j.Progress.ImagesTotal, j.Progress.ImagesLoaded, j.Progress.ImagesFailed
	} else {
		j.Shards = nil
	}
	j.Progress = progress
	j.record(now, EventStarted, j.Attempts, "")
	return nil
}

// handBack returns a running job to the queue: its worker is stopping, and
// another worker (or this one, restarted) runs it again from the start.
func (j *Job) handBack(now time.Time, detail string) error {
	if err := j.move(StatusQueued); err != nil {
		return err
	}
	if j.StartedAt != nil {
		j.SpentSeconds += now.Sub(*j.StartedAt).Seconds()
	}
	j.Stage = StageQueued
	j.StartedAt = nil
	j.record(now, EventHandedBack, j.Attempts, detail)
	return nil
}

// finish ends the job with a final status at now; detail, if any, follows
// the status in the history's "finished" entry.
func (j *Job) finish(now time.Time, status Status, jobErr *Error, detail string) error {
	if !status.Terminal() {
		return fmt.Errorf("job %s: %s is not a final status: %w", j.ID, status, ErrConflict)
	}
	if err := j.move(status); err != nil {
		return err
	}
	j.Stage = StageFinished
	j.FinishedAt = &now
	j.Error = jobErr
	if j.StartedAt != nil {
		j.Progress.ElapsedSeconds = now.Sub(*j.StartedAt).Seconds()
	}
	text := string(status)
	if detail != "" {
		text += ": " + detail
	}
	j.record(now, EventFinished, j.Attempts, text)
	return nil
}
