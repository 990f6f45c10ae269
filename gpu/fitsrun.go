package gpu

import "github.com/tsnemap/tsnemap/embed"

// ProblemOf is the Problem of running opts on n rows of d values (u8:
// pixels, else float32 features), as embed.Run will size it. With the
// cosine metric pixels reach the backend as float32 rows of unit length.
func ProblemOf(n, d int, u8 bool, opts embed.Options) Problem {
	u8 = u8 && opts.Metric != embed.MetricCosine
	p := Problem{N: n, D: d, U8: u8, Dims: opts.Dimensions,
		Components: max(1, min(opts.PCAComponents, d, n-1))}
	if opts.Method != embed.MethodPCA {
		p.K = opts.NeighborCount(n)
		p.Repulsion = opts.Repulsion
	}
	return p
}

// FitsRun is Fits for a run of opts on n×d input; the job pipeline checks
// it (through an interface of its own) before a job starts on the GPU.
func (b *Backend) FitsRun(n, d int, u8 bool, opts embed.Options) error {
	return b.Fits(ProblemOf(n, d, u8, opts))
}

// ReserveRun is Reserve for a run of opts on n×d input: the job pipeline
// takes it (through an interface of its own) when a job is admitted to the
// GPU and releases it when the run ends.
func (b *Backend) ReserveRun(n, d int, u8 bool, opts embed.Options) (release func(), err error) {
	return b.Reserve(ProblemOf(n, d, u8, opts))
}
