// Package etcd gives the API server its storage: an embedded etcd member in
// the data directory (the default), or a check that an existing etcd cluster
// answers before the API server is pointed at it.
//
//	member, err := etcd.StartEmbedded(ctx, etcd.Options{Dir: dataDir + "/etcd", ClientPort: 2379, PeerPort: 2380, ...})
//	if err != nil { ... }
//	defer member.Close()
//	apiserverFlags["etcd-servers"] = member.ClientURL()
package etcd
