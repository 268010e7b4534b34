// Command embedded is a Go service with Countersign inside: the whole
// countersign command line (migrate, serve, run, user, token, …), console,
// API and workers, running this service's refund workflow.
package main

import "github.com/countersign/countersign"

func main() {
	reg := countersign.NewRegistry()
	countersign.Register(reg, "refund", Refund, countersign.Options{
		Description: "Refund an order once a reviewer approves it.",
		MaxSteps:    10,
		Example:     RefundInput{Order: "A-1001", Amount: 40, Reason: "arrived broken"},
	})
	countersign.Main(reg)
}
