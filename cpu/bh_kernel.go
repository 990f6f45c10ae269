package cpu

// The Barnes-Hut walk (van der Maaten 2014) is split in two: walkGroup2/3
// traverse the tree for a group of up to bhGroupSize points and list the
// sources that act on it (accepted cells as centre of mass and count,
// points of opened leaves with count 1); bhSources2/3 then evaluate every
// source against every point of the group, one float32 lane per point, so
// one AVX2 vector holds the whole group and each source costs one broadcast
// and one chain of vector operations.

const (
	// bhChunk is how many sources the kernels sum in float32 before adding
	// the partial sums into the float64 accumulators. A group sees hundreds
	// to thousands of sources; summing all of them in float32 would lose
	// up to ~n·2⁻²⁴ relatively, and the forces, sums of terms of both
	// signs, lose more after cancellation. 64 terms keep that under 4e-6
	// (worst case) while the float64 update costs a few instructions per
	// 64 sources.
	bhChunk = 64
	// bhSrcCap is how many sources a walk lists before it runs the kernel
	// on them, bounding the per-goroutine buffer (on the stack). Where the
	// list is cut, and so which sources share a float32 chunk, depends only
	// on the group and the tree: the sums are deterministic.
	bhSrcCap = 4 * bhChunk
)

// bhLanes is the width of the kernels: float32 lanes in an AVX2 vector.
const bhLanes = 8

// bhLaneXYZ holds up to bhLanes points of a group one lane per point (x, y,
// z rows); lanes past the group's size repeat a point and are discarded.
type bhLaneXYZ [3][bhLanes]float32

// bhAcc accumulates per lane Σ cnt·w (the points' share of Z) and the
// repulsive forces Σ cnt·w²·(y_i − c), rows z, f0, f1, f2.
type bhAcc [4][bhLanes]float64

// bhScratch is one goroutine's state for walking groups: the group's lanes
// in blocks of bhLanes, the source list (x, y, cnt triples in 2-D, x, y, z,
// cnt in 3-D) and the accumulators.
type bhScratch struct {
	lanes    [bhGroupSize / bhLanes]bhLaneXYZ
	acc      [bhGroupSize / bhLanes]bhAcc
	m        int  // points in the group
	n        int  // sources listed
	first    bool // the list starts with the group's own points
	portable bool
	src      [bhSrcCap * 4]float32
}

// start sets up the group of m points gy (dims coordinates each) and lists
// them as the first sources: the kernel masks lane k of a block for its
// k-th own point, which removes the self-interaction (w = 1, no force)
// exactly.
func (sc *bhScratch) start(gy []float32, dims, m int) {
	sc.m, sc.n, sc.first = m, 0, true
	for b := range (m + bhLanes - 1) / bhLanes {
		sc.acc[b] = bhAcc{}
		for a := range bhLanes {
			k := b*bhLanes + a
			if k >= m {
				k = b * bhLanes
			}
			for d := range dims {
				sc.lanes[b][d][a] = gy[dims*k+d]
			}
		}
	}
	for k := range m {
		if dims == 2 {
			sc.push2(gy[2*k], gy[2*k+1], 1)
		} else {
			sc.push3(gy[3*k], gy[3*k+1], gy[3*k+2], 1)
		}
	}
}

// z is the group's share of Z once the list is flushed.
func (sc *bhScratch) z() float64 {
	z := 0.0
	for a := range sc.m {
		z += sc.acc[a/bhLanes][0][a%bhLanes]
	}
	return z
}

// push2 lists a 2-D source of weight cnt.
func (sc *bhScratch) push2(x, y, cnt float32) {
	if sc.n == bhSrcCap {
		sc.flush2()
	}
	s := (*[3]float32)(sc.src[3*sc.n:])
	s[0], s[1], s[2] = x, y, cnt
	sc.n++
}

// flush2 runs the 2-D kernel on the listed sources for every block of the
// group and empties the list. In the first list, block b's own points are
// sources [b·bhLanes, b·bhLanes+mb): the kernel runs on the sources before
// them, then on the rest with those first mb masked.
func (sc *bhScratch) flush2() {
	src := sc.src[:3*sc.n]
	for b := range (sc.m + bhLanes - 1) / bhLanes {
		mb := min(bhLanes, sc.m-b*bhLanes)
		s0, nself := 0, 0
		if sc.first {
			s0, nself = 3*b*bhLanes, mb
			sc.sources2(b, mb, src[:s0], 0)
		}
		sc.sources2(b, mb, src[s0:], nself)
	}
	sc.n, sc.first = 0, false
}

func (sc *bhScratch) sources2(b, mb int, src []float32, nself int) {
	if sc.portable {
		bhSources2Go(&sc.lanes[b], mb, src, nself, &sc.acc[b])
	} else {
		bhSources2(&sc.lanes[b], mb, src, nself, &sc.acc[b])
	}
}

// push3 lists a 3-D source of weight cnt.
func (sc *bhScratch) push3(x, y, z, cnt float32) {
	if sc.n == bhSrcCap {
		sc.flush3()
	}
	s := (*[4]float32)(sc.src[4*sc.n:])
	s[0], s[1], s[2], s[3] = x, y, z, cnt
	sc.n++
}

// flush3 is flush2 in 3-D.
func (sc *bhScratch) flush3() {
	src := sc.src[:4*sc.n]
	for b := range (sc.m + bhLanes - 1) / bhLanes {
		mb := min(bhLanes, sc.m-b*bhLanes)
		s0, nself := 0, 0
		if sc.first {
			s0, nself = 4*b*bhLanes, mb
			sc.sources3(b, mb, src[:s0], 0)
		}
		sc.sources3(b, mb, src[s0:], nself)
	}
	sc.n, sc.first = 0, false
}

func (sc *bhScratch) sources3(b, mb int, src []float32, nself int) {
	if sc.portable {
		bhSources3Go(&sc.lanes[b], mb, src, nself, &sc.acc[b])
	} else {
		bhSources3(&sc.lanes[b], mb, src, nself, &sc.acc[b])
	}
}

// bhSources2Go is the portable 2-D source kernel: for each source (x, y,
// cnt) in src and each lane a < m, with e = (g_a − (x, y)) and
// w = 1/(1 + |e|²), it adds cnt·w to acc[0][a] and cnt·w²·e to acc[1:3][a],
// except that source s < nself skips lane s. Sums run in float32 over chunks
// of bhChunk sources, then go into acc.
func bhSources2Go(g *bhLaneXYZ, m int, src []float32, nself int, acc *bhAcc) {
	n := len(src) / 3
	for c0 := 0; c0 < n; c0 += bhChunk {
		var z, fx, fy [bhLanes]float32
		for s := c0; s < min(c0+bhChunk, n); s++ {
			p := (*[3]float32)(src[3*s:])
			x, y, cnt := p[0], p[1], p[2]
			for a := range m {
				if s < nself && a == s {
					continue
				}
				ex, ey := g[0][a]-x, g[1][a]-y
				w := 1 / (1 + ex*ex + ey*ey)
				cw := cnt * w
				z[a] += cw
				q := cw * w
				fx[a] += q * ex
				fy[a] += q * ey
			}
		}
		for a := range m {
			acc[0][a] += float64(z[a])
			acc[1][a] += float64(fx[a])
			acc[2][a] += float64(fy[a])
		}
	}
}

// bhSources3Go is bhSources2Go in 3-D, sources (x, y, z, cnt).
func bhSources3Go(g *bhLaneXYZ, m int, src []float32, nself int, acc *bhAcc) {
	n := len(src) / 4
	for c0 := 0; c0 < n; c0 += bhChunk {
		var z, f0, f1, f2 [bhLanes]float32
		for s := c0; s < min(c0+bhChunk, n); s++ {
			p := (*[4]float32)(src[4*s:])
			x, y, zz, cnt := p[0], p[1], p[2], p[3]
			for a := range m {
				if s < nself && a == s {
					continue
				}
				e0, e1, e2 := g[0][a]-x, g[1][a]-y, g[2][a]-zz
				w := 1 / (1 + e0*e0 + e1*e1 + e2*e2)
				cw := cnt * w
				z[a] += cw
				q := cw * w
				f0[a] += q * e0
				f1[a] += q * e1
				f2[a] += q * e2
			}
		}
		for a := range m {
			acc[0][a] += float64(z[a])
			acc[1][a] += float64(f0[a])
			acc[2][a] += float64(f1[a])
			acc[3][a] += float64(f2[a])
		}
	}
}
