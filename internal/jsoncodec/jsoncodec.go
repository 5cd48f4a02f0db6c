// Package jsoncodec is the JSON of requests' arguments and handlers' results
// by default: github.com/goccy/go-json's encoder, pure Go and several times
// faster than encoding/json, held to encoding/json's output byte for byte by
// a differential fuzz test (FuzzAgainstStd), and encoding/json's decoder.
// goccy/go-json's decoder failed that test: it takes numbers in ",string"
// fields as strconv does ("+1", ".5", "Inf", "NaN"), which encoding/json
// refuses.
package jsoncodec

import (
	"encoding/json"

	gojson "github.com/goccy/go-json"
)

// Fast encodes with github.com/goccy/go-json and decodes with encoding/json.
type Fast struct{}

// Marshal returns the JSON of v, as encoding/json.Marshal does.
func (Fast) Marshal(v any) ([]byte, error) { return gojson.Marshal(v) }

// Unmarshal decodes data into v with encoding/json.Unmarshal.
func (Fast) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
