package countersign

import "github.com/countersign/countersign/internal/workflow"

// Package countersigntest takes the *Registry authors build; it reaches the
// engine's registry through this hook rather than through an exported field.
func init() {
	workflow.PublicRegistry = func(reg any) (*workflow.Registry, bool) {
		r, ok := reg.(*Registry)
		if !ok || r == nil || r.r == nil {
			return nil, false
		}
		return r.r, true
	}
}
