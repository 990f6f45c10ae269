package embed

import "math"

// ExactGradient is the reference t-SNE gradient in float64, O(N²):
//
//	∂C/∂y_i = 4 Σ_j (e·p_ij − q_ij) w_ij (y_i − y_j),  w_ij = 1/(1+‖y_i−y_j‖²),
//	q_ij = w_ij / Z,  Z = Σ_{k≠l} w_kl
//
// (van der Maaten & Hinton 2008, eq. 5). It also returns KL(P‖Q) for the
// unexaggerated P. Backends are tested against it; it is too slow for use.
func ExactGradient(p *CSR, y []float64, dims int, exaggeration float64) (grad []float64, kl float64) {
	n := p.N
	grad = make([]float64, n*dims)
	z := 0.0
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			if i != j {
				z += 1 / (1 + sqDist(y, i, j, dims))
			}
		}
	}
	// repulsion: −4 Σ_j q_ij w_ij (y_i − y_j)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			if i == j {
				continue
			}
			w := 1 / (1 + sqDist(y, i, j, dims))
			for c := 0; c < dims; c++ {
				grad[i*dims+c] -= 4 * w * w / z * (y[i*dims+c] - y[j*dims+c])
			}
		}
	}
	for i := 0; i < n; i++ {
		for e := p.RowPtr[i]; e < p.RowPtr[i+1]; e++ {
			j := int(p.Col[e])
			pij := float64(p.Val[e])
			w := 1 / (1 + sqDist(y, i, j, dims))
			for c := 0; c < dims; c++ {
				grad[i*dims+c] += 4 * exaggeration * pij * w * (y[i*dims+c] - y[j*dims+c])
			}
			if pij > 0 {
				kl += pij * math.Log(pij/(w/z))
			}
		}
	}
	return grad, kl
}

// ExactKL is KL(P‖Q) in float64, O(N²); see ExactGradient.
func ExactKL(p *CSR, y []float64, dims int) float64 {
	_, kl := ExactGradient(p, y, dims, 1)
	return kl
}

func sqDist(y []float64, i, j, dims int) float64 {
	s := 0.0
	for c := 0; c < dims; c++ {
		d := y[i*dims+c] - y[j*dims+c]
		s += d * d
	}
	return s
}
