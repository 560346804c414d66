package model

import (
	"errors"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"
)

// ParseSpec decodes a spec from JSON or YAML (JSON is read as YAML, into the
// same fields) and validates it. Decoding is strict: an unknown or duplicated
// field is an error, so a misspelt option is never silently ignored.
func ParseSpec(data []byte) (Spec, error) {
	var s Spec
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return Spec{}, fmt.Errorf("model: spec: %s", decodeErrorText(err))
	}
	if err := s.Validate(); err != nil {
		return Spec{}, err
	}
	return s, nil
}

// decodeErrorText is the message of the innermost error of the YAML
// decoder ("json: unknown field \"colour\"", "yaml: line 3: ..."), without
// the layers of context the decoder wraps it in, on one line.
func decodeErrorText(err error) string {
	for errors.Unwrap(err) != nil {
		err = errors.Unwrap(err)
	}
	msg := strings.ReplaceAll(err.Error(), ":\n", ": ")
	return strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", "; ")), " ")
}
