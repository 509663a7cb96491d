// Package policies keeps an API server in step with a directory of Kubernetes
// objects: the policy directory given to `gatehouse up --policies DIR`.
//
// Every YAML or JSON document under the directory is applied with server-side
// apply under the field manager "gatehouse": CustomResourceDefinitions first
// (and waited for until they are established), then Namespaces, then the rest,
// so that objects find the kinds and namespaces they need. A bad document is
// reported with its file and position in that file, and the others are still
// applied. Nothing already stored is ever deleted.
//
// Load and Order need no server, so a directory can be checked on its own:
//
//	docs, errs := policies.Load(os.DirFS("policies"))
//	for _, err := range errs {
//		fmt.Println(err) // e.g. "vap.yaml: document 2: metadata.name is missing"
//	}
//
// To apply the directory, and again whenever its files change:
//
//	a, err := policies.NewApplier(restConfig, "policies", logger)
//	if err != nil {
//		return err
//	}
//	go a.Run(ctx, 2*time.Second)
package policies
