// Package loader fetches a table of image URLs and every image it names.
package loader
