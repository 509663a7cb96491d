// Package constraint enforces Gatekeeper policies inside the API server:
// ConstraintTemplates (templates.gatekeeper.sh) and their constraints
// (constraints.gatekeeper.sh), unmodified, with Gatekeeper's semantics.
//
// The pieces:
//   - Engine compiles templates with OPA (as a library) the way Gatekeeper's
//     Rego driver does, and evaluates an admission review against every
//     constraint whose spec.match selects it. The review is converted to a
//     Rego value once per request and each constraint's parameters once per
//     change; each template has one prepared query.
//   - Review builds input.review with the API server's own webhook request
//     code, plus Gatekeeper's additions, so policies see what Gatekeeper's
//     webhook would have given them.
//   - Match implements spec.match as Gatekeeper's matcher does.
//   - Plugin is the admission plugin (GatekeeperConstraints), placed after
//     ValidatingAdmissionPolicy; it denies with the message Gatekeeper's
//     webhook produces, turns warn into kubectl warnings and logs dryrun.
//   - Syncer keeps an Engine filled from the cluster, as Gatekeeper's
//     controllers do: CRDs, template compilation and status, constraints,
//     data.inventory and the Config's namespace exclusions.
//   - Exclusions are the Config's spec.match per process (webhook,
//     mutation-webhook, audit, sync), with the exempt namespace and the
//     admission.gatekeeper.sh/ignore label of Gatekeeper's webhook
//     configurations (WebhookSkips, IgnoreLabelRefusal).
//
// Usage, as the control plane wires it:
//
//	engine := constraint.NewEngine(0)
//	syncer, _ := constraint.NewSyncer(adminConfig, engine, logger)
//	constraint.Register(plugins, engine, syncer.Namespace, logger) // before the API server starts
//	_ = syncer.Start(ctx)                                           // once it serves
package constraint
