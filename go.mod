module github.com/tsnemap/tsnemap

go 1.26.0

require (
	github.com/disintegration/imaging v1.6.2
	golang.org/x/image v0.47.0
	golang.org/x/sys v0.50.0
	gonum.org/v1/gonum v0.17.0
)
