package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// NFT runs the nft binary. kube-proxy does the same (through knftables):
// nft's text syntax is its stable interface, and `nft -f` applies a whole
// script as one kernel transaction.
type NFT struct {
	// Binary is the nft executable; empty means "nft" on $PATH.
	Binary string
}

func (n NFT) binary() string {
	if n.Binary != "" {
		return n.Binary
	}
	return "nft"
}

// Available reports why nft cannot be used, or nil.
func (n NFT) Available() error {
	if _, err := exec.LookPath(n.binary()); err != nil {
		return fmt.Errorf("nft: %w (the nftables package has it)", err)
	}
	return nil
}

// Replace applies a script from Render: one transaction, all or nothing.
func (n NFT) Replace(ctx context.Context, script string) error {
	return n.run(ctx, script, "-f", "-")
}

// Check parses and validates script without applying it.
func (n NFT) Check(ctx context.Context, script string) error {
	return n.run(ctx, script, "--check", "-f", "-")
}

// Exists reports whether the table is there.
func (n NFT) Exists(ctx context.Context) (bool, error) {
	err := n.run(ctx, "", "list", "table", "ip", Table)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, errNotFound) {
		return false, nil
	}
	return false, err
}

// Delete removes the table; a missing table is no error.
func (n NFT) Delete(ctx context.Context) error {
	if err := n.run(ctx, "", "delete", "table", "ip", Table); err != nil && !errors.Is(err, errNotFound) {
		return err
	}
	return nil
}

// List is the table as nft prints it.
func (n NFT) List(ctx context.Context) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, n.binary(), "list", "table", "ip", Table)
	cmd.Stdout = &out
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("nft list table ip %s: %w: %s", Table, err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
}

var errNotFound = errors.New("no such table")

func (n NFT) run(ctx context.Context, stdin string, args ...string) error {
	cmd := exec.CommandContext(ctx, n.binary(), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "No such file or directory") && len(args) > 0 && args[0] != "-f" && args[0] != "--check" {
			return fmt.Errorf("nft %s: %w", strings.Join(args, " "), errNotFound)
		}
		return fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return nil
}
