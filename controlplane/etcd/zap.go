package etcd

import "go.uber.org/zap"

// nopZap keeps the etcd client's retry chatter out of the user's terminal;
// WaitReachable reports failures itself.
func nopZap() *zap.Logger { return zap.NewNop() }
