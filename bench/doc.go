// Package bench holds Gatehouse's benchmark harnesses. Each is a small
// program run against the built binary; README.md records the latest figures
// and the command that produced them. Targets live here, never as timed
// assertions in tests.
package bench
