// Package jobs is the job model and its state machine, kept on NATS
// JetStream: a work-queue stream carries one message per job to the workers,
// a key-value bucket holds each Job (updated by compare-and-set, so two nodes
// never overwrite each other), and an object store holds the results.
package jobs

import (
	"crypto/rand"
	"fmt"
	"strconv"
	"time"
)

// Status is where a job is in its life: queued → running → succeeded,
// failed or canceled. A running job handed back by a stopping worker goes
// back to queued.
type Status string

const (
	StatusQueued    Status = "queued"
	StatusRunning   Status = "running"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusCanceled  Status = "canceled"
)

// Terminal reports whether a job in this status will never change again.
func (s Status) Terminal() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusCanceled
}

// Valid reports whether s is one of the five statuses.
func (s Status) Valid() bool {
	return s == StatusQueued || s == StatusRunning || s.Terminal()
}

// Stage is what a running job is doing.
type Stage string

const (
	StageQueued              Stage = "queued"
	StageFetchingDataset     Stage = "fetching_dataset"
	StageLoadingImages       Stage = "loading_images"
	StageReducing            Stage = "reducing"
	StageComputingAffinities Stage = "computing_affinities"
	StageOptimizing          Stage = "optimizing"
	StageWritingResult       Stage = "writing_result"
	StageFinished            Stage = "finished"
)

// Request is a job's normalized request: every default filled in. Its JSON
// form is the contract's JobRequest.
type Request struct {
	DatasetURL       string `json:"dataset_url"`
	ImageURLTemplate string `json:"image_url_template,omitempty"`
	ImageURLColumn   string `json:"image_url_column,omitempty"`
	IDColumn         string `json:"id_column"`
	FeaturesURL      string `json:"features_url,omitempty"`
	FeaturesColumn   string `json:"features_column,omitempty"`
	// BaseJobID makes the job an addition to that finished job's map.
	BaseJobID string `json:"base_job_id,omitempty"`
	// FollowIntervalSeconds > 0: once succeeded, the job re-reads its
	// table at this interval and adds new rows to its map.
	FollowIntervalSeconds  int       `json:"follow_interval_seconds,omitempty"`
	Metric                 string    `json:"metric,omitempty"` // "" (a job stored before metrics) is euclidean
	Limit                  int       `json:"limit,omitempty"`
	ImageSize              ImageSize `json:"image_size"`
	Method                 string    `json:"method"`
	Dimensions             int       `json:"dimensions"`
	Perplexity             float64   `json:"perplexity"`
	Iterations             int       `json:"iterations"`
	EarlyExaggeration      float64   `json:"early_exaggeration"`
	ExaggerationIterations int       `json:"exaggeration_iterations"`
	LearningRate           Rate      `json:"learning_rate"`
	Init                   string    `json:"init"`
	Seed                   int64     `json:"seed"`
	Backend                string    `json:"backend"`
	TimeoutSeconds         int       `json:"timeout_seconds"`
	// Grid asks for a grid layout of the finished map (2-D only).
	Grid bool `json:"grid,omitempty"`
	// ShardSize forces the images to load in shards of this many rows
	// across the cluster (0: the worker's threshold decides).
	ShardSize int `json:"shard_size,omitempty"`

	// Owner is who submits the job (see Job.Owner); Submit moves it to the
	// job record and it is not part of the stored request.
	Owner string `json:"-"`
}

// ImageSize is the size every image is resized to.
type ImageSize struct {
	Width  int `json:"width"`
	Height int `json:"height"`
}

// Rate is a learning rate: 0 means "auto", written as the string "auto".
type Rate float64

func (r Rate) MarshalJSON() ([]byte, error) {
	if r == 0 {
		return []byte(`"auto"`), nil
	}
	return strconv.AppendFloat(nil, float64(r), 'g', -1, 64), nil
}

func (r *Rate) UnmarshalJSON(b []byte) error {
	if string(b) == `"auto"` {
		*r = 0
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("learning_rate: want a number or \"auto\": %w", err)
	}
	*r = Rate(f)
	return nil
}

// Progress counts a job's work so far.
type Progress struct {
	ImagesTotal    int      `json:"images_total"`
	ImagesLoaded   int      `json:"images_loaded"`
	ImagesFailed   int      `json:"images_failed"`
	RowsDropped    int      `json:"rows_dropped"`
	Iteration      int      `json:"iteration"`
	Iterations     int      `json:"iterations"`
	KLDivergence   *float64 `json:"kl_divergence"`
	ElapsedSeconds float64  `json:"elapsed_seconds"`
	// VectorsMatched and VectorsIgnored count, for a job with features, the
	// rows with a vector and the vectors whose id is not in the table.
	VectorsMatched int `json:"vectors_matched,omitempty"`
	VectorsIgnored int `json:"vectors_ignored,omitempty"`
}

// Job is the record kept for each job. Its JSON form is the contract's Job
// less links (which depend on where the API is mounted) plus bookkeeping
// fields the API does not show.
type Job struct {
	ID         string     `json:"id"`
	Status     Status     `json:"status"`
	Stage      Stage      `json:"stage"`
	Progress   Progress   `json:"progress"`
	Backend    string     `json:"backend"`
	Request    Request    `json:"request"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Error      *Error     `json:"error"`

	// CancelRequested is set by DELETE on a running job; the worker running
	// it watches the record and cancels the job's context.
	CancelRequested bool `json:"cancel_requested,omitempty"`
	// Attempts counts the deliveries that started running the job.
	Attempts int `json:"attempts,omitempty"`
	// Crashes counts the attempts that started and never ended: their
	// worker died or went silent past the ack wait. A hand-back is not a
	// crash, nor is a delivery that could not start the job (its record
	// unwritable: a full store, a leader election). The worker fails the
	// job once Crashes reaches Config.MaxDeliveries.
	Crashes int `json:"crashes,omitempty"`
	// Token is chosen afresh by each delivery that starts an attempt, so a
	// worker whose start write had an unknown outcome (an error after the
	// server may have stored it) recognises its own start on reading the
	// record again, instead of taking it for a crashed attempt.
	Token string `json:"token,omitempty"`
	// SpentSeconds is how long the job's earlier attempts ran: its time
	// limit (timeout_seconds) bounds their sum with the current attempt's.
	// Each worker measures its own attempt on its own clock; no two
	// machines' clocks are compared.
	SpentSeconds float64 `json:"spent_seconds,omitempty"`
	// HasResult: a result object was written for this job.
	HasResult bool `json:"has_result,omitempty"`
	// HasAtlas: the thumbnails of this attempt's loaded images are stored
	// (written once loading ends, before the embedding).
	HasAtlas bool `json:"has_atlas,omitempty"`
	// HasState: what an addition to this job's map needs (its PCA basis,
	// scores and coordinates) is stored for the latest attempt.
	HasState bool `json:"has_state,omitempty"`
	// Owner names who submitted the job (an API key's name, never the key
	// itself); "" when the server has no keys. Only its owner sees the job.
	Owner string `json:"owner,omitempty"`
	// History records the job's life: queued, each start (a start after
	// the first is a retry), hand-backs and the end. At most maxHistory
	// entries are kept (the first and the newest).
	History []Event `json:"history,omitempty"`
	// Shards is the state of a sharded attempt: its images are loaded in
	// shards by every worker (see shards.go); nil for a job loaded whole.
	Shards *Sharding `json:"shards,omitempty"`
}

// Event is one entry of a job's history.
type Event struct {
	At      time.Time `json:"at"`
	Event   string    `json:"event"`
	Attempt int       `json:"attempt,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

// Events of a job's history.
const (
	EventQueued     = "queued"
	EventStarted    = "started"
	EventRetried    = "retried" // a start after the first: the earlier attempt's worker stopped or went silent
	EventHandedBack = "handed_back"
	EventFinished   = "finished" // Detail names the status
)

// maxHistory bounds a job's history, so a job redelivered many times keeps
// a small record.
const maxHistory = 32

func (j *Job) record(at time.Time, event string, attempt int, detail string) {
	j.History = append(j.History, Event{At: at, Event: event, Attempt: attempt, Detail: detail})
	if n := len(j.History); n > maxHistory {
		j.History = append(j.History[:1], j.History[n-maxHistory+1:]...)
	}
}

// Error codes of the contract.
const (
	CodeDatasetUnreachable = "dataset_unreachable"
	CodeDatasetInvalid     = "dataset_invalid"
	CodeNoImages           = "no_images"
	CodePerplexityTooLarge = "perplexity_too_large"
	CodeTimeout            = "timeout"
	CodeBackendUnavailable = "backend_unavailable"
	CodeInternal           = "internal"
)

// Error is why a job failed: a code of the contract and a human message. A
// Runner returns one (possibly wrapped) to choose the code; any other error
// fails the job as "internal".
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// crockford is the ULID alphabet: no I, L, O or U, so ids read aloud well.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewID returns a ULID-shaped id: 48 bits of milliseconds then 80 random
// bits, 26 characters. Ids sort by creation time (the list is newest first
// by sorting ids) and cannot be guessed.
func NewID(now time.Time) string {
	var b [16]byte
	ms := uint64(now.UnixMilli())
	for i := 0; i < 6; i++ {
		b[i] = byte(ms >> (40 - 8*i))
	}
	_, _ = rand.Read(b[6:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	// 128 bits as 26 base-32 digits; the first digit carries the top 3 bits.
	var out [26]byte
	var acc uint64
	var bits uint
	pos := 0
	// Prepend two zero bits so 130 bits split evenly into 26 groups of 5.
	acc, bits = 0, 2
	for _, x := range b {
		acc = acc<<8 | uint64(x)
		bits += 8
		for bits >= 5 {
			bits -= 5
			out[pos] = crockford[(acc>>bits)&31]
			pos++
		}
	}
	return string(out[:])
}

// ValidID reports whether s could be an id (so it is safe as a KV key).
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Result is what a succeeded job produced: the kept rows of the table, each
// with its coordinates (nil where its image failed), and the failures.
type Result struct {
	Columns    []string    `json:"columns"`
	Dimensions int         `json:"dimensions"`
	Rows       []ResultRow `json:"rows"`
	Failures   []Failure   `json:"failures"`
	// Clustered: the hotspots of the 2-D map were computed, so each row
	// has its Cluster and the table a cluster column (package explore).
	Clustered bool      `json:"clustered,omitempty"`
	Hotspots  []Hotspot `json:"hotspots,omitempty"`
	// Gridded: each row with coordinates has its Grid cell.
	Gridded bool `json:"gridded,omitempty"`
	// Followed: the job follows its table, and a row gone from it since
	// is marked Removed (not deleted).
	Followed bool `json:"followed,omitempty"`
}

// Hotspot is one cluster of a finished 2-D map.
type Hotspot struct {
	ID     int     `json:"id"`
	Size   int     `json:"size"`
	X      float64 `json:"x"`
	Y      float64 `json:"y"`
	Radius float64 `json:"radius"`
	// Rows are the kept rows nearest the centre, nearest first.
	Rows []int `json:"rows"`
}

// ResultRow is one kept row of the table.
type ResultRow struct {
	ID     string    `json:"id"`
	Values []string  `json:"values"`
	Coords []float32 `json:"coords,omitempty"`
	// Cluster is the row's hotspot ID, 0 for none.
	Cluster int `json:"cluster,omitempty"`
	// Grid is the row's cell [x, y] in the grid layout, when asked for.
	Grid []int `json:"grid,omitempty"`
	// Removed: the row has gone from a followed table (see Result.Followed).
	Removed bool `json:"removed,omitempty"`
}

// Failure is one image that could not be loaded; Row is its position among
// the kept rows.
type Failure struct {
	Row   int    `json:"row"`
	ID    string `json:"id"`
	URL   string `json:"url"`
	Error string `json:"error"`
}

// Embedding is a snapshot of the coordinates during optimisation.
type Embedding struct {
	Iteration   int       `json:"iteration"`
	Dimensions  int       `json:"dimensions"`
	Rows        []int     `json:"rows"`
	Coordinates []float32 `json:"coordinates"`
}
