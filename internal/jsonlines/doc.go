// Package jsonlines writes values as JSON lines to a file that is rotated
// by size, from its own goroutine so that callers never wait on the disk.
// The admission trace (--trace-file) and the webhook kit's exchange log
// (--webhook-log-file) share it.
package jsonlines
