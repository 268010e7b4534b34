// Package countersign embeds Countersign, a human-in-the-loop approval
// console for AI workflows, in a Go program: the program registers its own
// workflows and gets the whole countersign command line (migrate, serve, run,
// user, token, policy, audit, …), the web console, the JSON API and the
// workers, all running those workflows.
//
// A workflow is a Go function from an input type to an output type whose
// risky parts are named steps: [Step] for computation, [Generate] for a model
// call, [Effect] for a side effect, exactly once, and [RequestApproval] for the
// human gate, which a policy answers at once (auto) or leaves to a reviewer in
// the console or over the API. Each step's result is recorded in PostgreSQL,
// so a retry, a crash or a resume after a human decision replays the function
// without repeating what was recorded.
//
//	func main() {
//		reg := countersign.NewRegistry()
//		countersign.Register(reg, "refund", Refund, countersign.Options{MaxSteps: 10})
//		countersign.Main(reg)
//	}
//
// Then `./myservice migrate`, `./myservice serve`, and start runs with
// `./myservice run start --workflow refund ...` or POST /api/v1/runs.
// docs/WORKFLOWS.md in the repository has the rules (determinism,
// idempotency keys, budgets, decisions).
package countersign
