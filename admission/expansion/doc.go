// Package expansion implements Gatekeeper's ExpansionTemplates
// (expansion.gatekeeper.sh): a workload (a Deployment, a Job, …) is
// expanded into the resources it would create (a mock Pod made from its
// spec.template), which are mutated by the Gatekeeper mutators that apply
// to generated resources and then reviewed by the constraints, so that a
// workload whose pods a constraint would refuse is refused at once, with
// Gatekeeper's "[Implied by <template>]" message.
//
// The pieces:
//   - Parse reads an ExpansionTemplate, refusing what Gatekeeper refuses
//     (no name, no templateSource, no generatedGVK) and naming the field.
//   - System holds the templates in force and implements
//     constraint.Expander: the constraint plugin and the audit call it.
//   - NewSyncer keeps a System in step with the cluster and installs the
//     CRD (a constraint.ObjectSyncer).
//   - Plugin-side validation lives in the constraint plugin's chain entry
//     (Validate here refuses a template that does not parse).
//
// Usage, as the control plane wires it:
//
//	sys := expansion.NewSystem(mutators)   // the mutation.System of GatekeeperMutation
//	engine.SetExpander(sys)                // constraint.Engine
//	syncer := expansion.NewSyncer(adminConfig, sys, logger)
//	_ = syncer.Start(ctx)                  // once the API server serves
package expansion
