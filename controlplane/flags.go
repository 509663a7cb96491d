package controlplane

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"

	"github.com/gatehouse-dev/gatehouse/config"
)

// flagMap holds one upstream component's flags, name without dashes.
type flagMap map[string]string

// args renders defaults then the user's passthrough arguments. A key the
// user sets replaces Gatehouse's default instead of being appended to it, so
// list-valued flags are not silently merged.
func (m flagMap) args(passthrough []string) ([]string, error) {
	user := map[string]bool{}
	var userArgs []string
	for _, a := range passthrough {
		k, v, err := config.SplitArg(a)
		if err != nil {
			return nil, err
		}
		user[k] = true
		userArgs = append(userArgs, "--"+k+"="+v)
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !user[k] {
			out = append(out, "--"+k+"="+m[k])
		}
	}
	return append(out, userArgs...), nil
}

// parseInto parses args into an upstream component's named flag sets. The
// error names the passthrough flag (for example --kube-apiserver-arg) so the
// user knows which of their arguments is wrong.
func parseInto(component, userFlag string, nfs cliflag.NamedFlagSets, args []string) error {
	fs := pflag.NewFlagSet(component, pflag.ContinueOnError)
	fs.SetOutput(discard{})
	for _, name := range nfs.Order {
		fs.AddFlagSet(nfs.FlagSets[name])
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s: %w (check %s)", component, err, userFlag)
	}
	if rest := fs.Args(); len(rest) > 0 {
		return fmt.Errorf("%s: unexpected arguments %s (check %s)", component, strings.Join(rest, " "), userFlag)
	}
	return nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
