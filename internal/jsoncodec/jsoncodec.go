// Package jsoncodec is the JSON of requests' arguments and handlers' results
// by default: github.com/goccy/go-json, pure Go and several times faster
// than encoding/json, held to encoding/json's results by a differential fuzz
// test (FuzzAgainstStd) on the JSON a server hands it.
package jsoncodec

import gojson "github.com/goccy/go-json"

// Fast is github.com/goccy/go-json with encoding/json's API and defaults.
type Fast struct{}

// Marshal returns the JSON of v, as encoding/json.Marshal does.
func (Fast) Marshal(v any) ([]byte, error) { return gojson.Marshal(v) }

// Unmarshal decodes data into v, as encoding/json.Unmarshal does.
func (Fast) Unmarshal(data []byte, v any) error { return gojson.Unmarshal(data, v) }
