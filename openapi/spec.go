// Package openapi holds the HTTP contract of tsnemap: openapi.yaml (the source
// of truth, embedded in the binary) and the types, Echo server interface and
// client generated from it.
package openapi

//go:generate go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@v2.8.2 -config oapi-codegen.yaml openapi.yaml

import (
	_ "embed"
	"encoding/json"
	"fmt"

	"github.com/getkin/kin-openapi/openapi3"
)

// YAML is openapi.yaml as written.
//
//go:embed openapi.yaml
var YAML []byte

// Load parses and validates the embedded spec. Each call returns a fresh
// document, so callers may hold it without sharing mutable state.
func Load() (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(YAML)
	if err != nil {
		return nil, fmt.Errorf("parse openapi.yaml: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("validate openapi.yaml: %w", err)
	}
	return doc, nil
}

// JSON renders the spec as JSON (for /openapi.json).
func JSON() ([]byte, error) {
	doc, err := Load()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode openapi.json: %w", err)
	}
	return b, nil
}
