//go:build !cuda

package gpu

const cudaBuild = false
