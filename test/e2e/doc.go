// Package e2e holds the end-to-end tests of Gatehouse: each test starts the
// real gatehouse binary (`gatehouse up --node=false` on random loopback
// ports and a temporary data directory) and talks to it the way a user
// would, with client-go and with kubectl.
//
// The binary is taken from $GATEHOUSE_BIN, or else built once from
// ./cmd/gatehouse before the tests run. kubectl must be on $PATH.
//
//	GATEHOUSE_BIN=$PWD/bin/gatehouse go test ./test/e2e/ -count=1 -v -timeout 20m
//
// The package has no non-test code besides this comment.
package e2e
