package policy

import _ "embed"

// Example is policy/example.yaml: the demo's policy, covering every tier.
//
//go:embed example.yaml
var Example []byte
