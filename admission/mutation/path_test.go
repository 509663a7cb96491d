package mutation

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func obj(f string) Node          { return Node{Field: f} }
func keyed(k string, v any) Node { return Node{List: true, KeyField: k, KeyValue: v} }
func glob(k string) Node         { return Node{List: true, KeyField: k, Glob: true} }
func path(nodes ...Node) Path    { return Path(nodes) }
func mustPath(t *testing.T, s string) Path {
	t.Helper()
	p, err := ParsePath(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParsePath(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Path
		// str is the canonical rendering, when it differs from in.
		str string
	}{
		{in: "spec", want: path(obj("spec"))},
		{in: "spec.containers[name: foo].image", want: path(obj("spec"), obj("containers"), keyed("name", "foo"), obj("image"))},
		{in: "spec.containers[name:foo].image", want: path(obj("spec"), obj("containers"), keyed("name", "foo"), obj("image")), str: "spec.containers[name: foo].image"},
		{in: "spec.containers[name: *].securityContext", want: path(obj("spec"), obj("containers"), glob("name"), obj("securityContext"))},
		{in: "spec.containers[name:*].imagePullPolicy", want: path(obj("spec"), obj("containers"), glob("name"), obj("imagePullPolicy")), str: "spec.containers[name: *].imagePullPolicy"},
		{in: "spec.ports[port: 80].protocol", want: path(obj("spec"), obj("ports"), keyed("port", int64(80)), obj("protocol"))},
		// Quoted, a number is a string and "*" a literal name.
		{in: `spec.ports[port: "80"]`, want: path(obj("spec"), obj("ports"), keyed("port", "80"))},
		{in: `spec.list[name: "*"]`, want: path(obj("spec"), obj("list"), keyed("name", "*"))},
		{in: `metadata.labels."foo.bar"`, want: path(obj("metadata"), obj("labels"), obj("foo.bar"))},
		{in: `metadata.annotations.'example.com/team'`, want: path(obj("metadata"), obj("annotations"), obj("example.com/team")), str: `metadata.annotations."example.com/team"`},
		{in: `a."b\"c".'d\'e'."f\\g"`, want: path(obj("a"), obj(`b"c`), obj("d'e"), obj(`f\g`)), str: `a."b\"c"."d'e"."f\\g"`},
		{in: `a."1b"`, want: path(obj("a"), obj("1b"))},
		{in: `a.""`, want: path(obj("a"), obj(""))},
		{in: `"spec"."containers"["name": "foo"]`, want: path(obj("spec"), obj("containers"), keyed("name", "foo")), str: "spec.containers[name: foo]"},
		{in: "  spec . containers [ name : foo ] . image  ", want: path(obj("spec"), obj("containers"), keyed("name", "foo"), obj("image")), str: "spec.containers[name: foo].image"},
		{in: "x-y_z.a-1[k-1: -5]", want: path(obj("x-y_z"), obj("a-1"), keyed("k-1", "-5"))},
		{in: "a[n: 9223372036854775807]", want: path(obj("a"), keyed("n", int64(9223372036854775807)))},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePath(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("ParsePath(%q) (-want +got):\n%s", tc.in, diff)
			}
			str := tc.str
			if str == "" {
				str = tc.in
			}
			if got.String() != str {
				t.Errorf("String() = %q, want %q", got.String(), str)
			}
			again, err := ParsePath(got.String())
			if err != nil || !cmp.Equal(again, got) {
				t.Errorf("ParsePath(String()) = %v, %v; want %v", again, err, got)
			}
		})
	}
}

func TestParsePathErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", `invalid path "": empty path`},
		{"   ", `invalid path "   ": empty path`},
		{"spec.", `invalid path "spec.": position 4: trailing "."`},
		{"spec..containers", `invalid path "spec..containers": position 5: expected a field name, found "."`},
		{".spec", `invalid path ".spec": position 0: expected a field name, found "."`},
		{"[name: foo]", `invalid path "[name: foo]": position 0: expected a field name, found "["`},
		{"spec.0", `invalid path "spec.0": position 5: expected a field name, found integer 0`},
		{"spec.1abc", `invalid path "spec.1abc": position 5: expected a field name, found integer 1`},
		{"spec.*", `invalid path "spec.*": position 5: expected a field name, found "*"`},
		{"spec containers", `invalid path "spec containers": position 5: expected "." or the end of the path, found "containers"`},
		{"spec.containers[name]", `invalid path "spec.containers[name]": position 20: expected ":" after list key field "name", found "]"`},
		{"spec.containers[name: ]", `invalid path "spec.containers[name: ]": position 22: expected a value or "*" after "name:", found "]"`},
		{"spec.containers[: foo]", `invalid path "spec.containers[: foo]": position 16: expected a list key field after "[", found ":"`},
		{"spec.containers[name: foo", `invalid path "spec.containers[name: foo": position 25: expected "]" after the list key value, found the end of the path`},
		{"spec.containers[name: 1abc]", `invalid path "spec.containers[name: 1abc]": position 23: expected "]" after the list key value, found "abc"`},
		{"spec.containers[name: foo][image: bar]", `invalid path "spec.containers[name: foo][image: bar]": position 26: expected "." or the end of the path, found "["`},
		{"spec.containers[name: foo]image", `invalid path "spec.containers[name: foo]image": position 26: expected "." or the end of the path, found "image"`},
		{`metadata.labels."foo`, `invalid path "metadata.labels.\"foo": position 16: unterminated quoted string`},
		{`metadata.labels."foo\`, `invalid path "metadata.labels.\"foo\\": position 16: unterminated quoted string`},
		{"metadata.labels.foo/bar", `invalid path "metadata.labels.foo/bar": position 19: invalid character '/' (quote names that hold it)`},
		{"spec.é", `invalid path "spec.é": position 5: invalid character 'é' (quote names that hold it)`},
		{"a[n: 9223372036854775808]", `invalid path "a[n: 9223372036854775808]": position 5: invalid integer 9223372036854775808 for list key "n": out of range`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			p, err := ParsePath(tc.in)
			if err == nil {
				t.Fatalf("ParsePath(%q) = %v, want error %q", tc.in, p, tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("ParsePath(%q) error\n got: %s\nwant: %s", tc.in, err, tc.want)
			}
		})
	}
}
