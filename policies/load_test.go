package policies

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func file(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }

func configMap(name string) string {
	return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n"
}

// summary renders documents as "file#index Kind/name" for comparison.
func summary(docs []Document) []string {
	var out []string
	for _, d := range docs {
		out = append(out, fmt.Sprintf("%s#%d %s/%s", d.File, d.Index, d.Object.GetKind(), d.Object.GetName()))
	}
	return out
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name     string
		fsys     fstest.MapFS
		wantDocs []string
		// wantErrs holds "file#index: text", where the error must contain text.
		wantErrs []string
	}{{
		name: "multi-document file with separators, comments and empty documents",
		fsys: fstest.MapFS{"a.yaml": file(
			"# leading comment only\n" +
				"---\n" + configMap("one") +
				"--- # separator with a comment\n" + configMap("two") +
				"---\n# only a comment\n\n" +
				"---\n---\n" +
				"---\n" + configMap("three") +
				"---\n")},
		wantDocs: []string{"a.yaml#1 ConfigMap/one", "a.yaml#2 ConfigMap/two", "a.yaml#3 ConfigMap/three"},
	}, {
		name: "files in lexical order, nested, relative slash paths",
		fsys: fstest.MapFS{
			"b.yaml":     file(configMap("b")),
			"a/z.yaml":   file(configMap("z")),
			"a.yml":      file(configMap("a")),
			"c/d/e.json": file(`{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "e"}}`),
		},
		wantDocs: []string{"a/z.yaml#1 ConfigMap/z", "a.yml#1 ConfigMap/a", "b.yaml#1 ConfigMap/b", "c/d/e.json#1 ConfigMap/e"},
	}, {
		name:     "JSON indented with tabs",
		fsys:     fstest.MapFS{"p.json": file("{\n\t\"apiVersion\": \"v1\",\n\t\"kind\": \"Namespace\",\n\t\"metadata\": {\n\t\t\"name\": \"team\"\n\t}\n}\n")},
		wantDocs: []string{"p.json#1 Namespace/team"},
	}, {
		name: "hidden files and directories skipped, other extensions ignored",
		fsys: fstest.MapFS{
			".hidden.yaml":      file(configMap("hidden")),
			".git/config.yaml":  file(configMap("git")),
			"d/.swap.yaml":      file(configMap("swap")),
			"..data/real.yaml":  file(configMap("data")),
			"notes.txt":         file(configMap("txt")),
			"README.md":         file("# not a policy"),
			"d/policy.yaml.bak": file(configMap("bak")),
			"d/kept.yaml":       file(configMap("kept")),
		},
		wantDocs: []string{"d/kept.yaml#1 ConfigMap/kept"},
	}, {
		name: "List expands into its items, all with the List's index",
		fsys: fstest.MapFS{"l.yaml": file(
			"apiVersion: v1\nkind: List\nitems:\n" +
				"- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: first\n" +
				"- apiVersion: v1\n  kind: Secret\n  metadata:\n    name: second\n" +
				"---\n" + configMap("after"))},
		wantDocs: []string{"l.yaml#1 ConfigMap/first", "l.yaml#1 Secret/second", "l.yaml#2 ConfigMap/after"},
	}, {
		name: "List item errors name the item and the good items load",
		fsys: fstest.MapFS{"l.yaml": file(
			"apiVersion: v1\nkind: List\nitems:\n" +
				"- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: good\n" +
				"- apiVersion: v1\n  kind: ConfigMap\n  metadata: {}\n" +
				"- 42\n")},
		wantDocs: []string{"l.yaml#1 ConfigMap/good"},
		wantErrs: []string{"l.yaml#1: item 2: metadata.name is missing", "l.yaml#1: item 3: not an object"},
	}, {
		name: "each bad document is reported and the others in the file still load",
		fsys: fstest.MapFS{"bad.yaml": file(
			configMap("first") +
				"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x: y\n" +
				"---\nkind: ConfigMap\nmetadata:\n  name: no-version\n" +
				"---\napiVersion: v1\nmetadata:\n  name: no-kind\n" +
				"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {a: b}\n" +
				"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: gen-\n" +
				"---\n- just\n- a list\n" +
				"---\napiVersion: a/b/c\nkind: Thing\nmetadata:\n  name: bad-version\n" +
				"---\n" + configMap("last"))},
		wantDocs: []string{"bad.yaml#1 ConfigMap/first", "bad.yaml#9 ConfigMap/last"},
		wantErrs: []string{
			"bad.yaml#2: yaml: line 9: mapping values are not allowed",
			"bad.yaml#3: apiVersion is missing",
			"bad.yaml#4: kind is missing",
			"bad.yaml#5: metadata.name is missing",
			"bad.yaml#6: metadata.generateName is not supported: server-side apply needs metadata.name",
			"bad.yaml#7: not an object",
			"bad.yaml#8: apiVersion: unexpected GroupVersion string: a/b/c",
		},
	}, {
		name:     "malformed separator is reported and reading goes on after it",
		fsys:     fstest.MapFS{"sep.yaml": file(configMap("one") + "--- not-a-comment\n" + configMap("two"))},
		wantDocs: []string{"sep.yaml#2 ConfigMap/two"},
		wantErrs: []string{"sep.yaml#1: invalid Yaml document separator: not-a-comment"},
	}, {
		name: "unreadable file is a whole-file error and other files load",
		fsys: fstest.MapFS{
			"a.yaml":    file(configMap("a")),
			"link.yaml": &fstest.MapFile{Data: []byte("nowhere.yaml"), Mode: fs.ModeSymlink},
		},
		wantDocs: []string{"a.yaml#1 ConfigMap/a"},
		wantErrs: []string{"link.yaml#0: file does not exist"},
	}, {
		name: "empty directory",
		fsys: fstest.MapFS{},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, errs := Load(tt.fsys)
			if got := summary(docs); !slices.Equal(got, tt.wantDocs) {
				t.Errorf("documents:\n got %q\nwant %q", got, tt.wantDocs)
			}
			if len(errs) != len(tt.wantErrs) {
				t.Fatalf("got %d errors %v, want %d %q", len(errs), errs, len(tt.wantErrs), tt.wantErrs)
			}
			for i, e := range errs {
				where, text, _ := strings.Cut(tt.wantErrs[i], ": ")
				if got := fmt.Sprintf("%s#%d", e.File, e.Index); got != where || !strings.Contains(e.Err.Error(), text) {
					t.Errorf("error %d = %s#%d: %v, want %s", i, e.File, e.Index, e.Err, tt.wantErrs[i])
				}
			}
		})
	}
}

func TestLoadMissingDirectory(t *testing.T) {
	docs, errs := Load(os.DirFS(filepath.Join(t.TempDir(), "missing")))
	if len(docs) != 0 || len(errs) != 1 {
		t.Fatalf("got %d documents and errors %v, want one error", len(docs), errs)
	}
	if errs[0].File != "." || errs[0].Index != 0 || !errors.Is(errs[0], fs.ErrNotExist) {
		t.Errorf("error = %#v, want a not-exist error for the root", errs[0])
	}
}

func TestDocumentError(t *testing.T) {
	cause := errors.New("boom")
	for _, tt := range []struct {
		err  *DocumentError
		want string
	}{
		{&DocumentError{File: "a/b.yaml", Index: 3, Err: cause}, "a/b.yaml: document 3: boom"},
		{&DocumentError{File: "a/b.yaml", Err: cause}, "a/b.yaml: boom"},
	} {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		if !errors.Is(tt.err, cause) {
			t.Errorf("errors.Is(%v, cause) = false, want true", tt.err)
		}
	}
}

func TestOrder(t *testing.T) {
	doc := func(apiVersion, kind, name string) Document {
		obj := &unstructured.Unstructured{}
		obj.SetAPIVersion(apiVersion)
		obj.SetKind(kind)
		obj.SetName(name)
		return Document{File: name + ".yaml", Index: 1, Object: obj}
	}
	in := []Document{
		doc("v1", "ConfigMap", "cm"),
		doc("v1", "Namespace", "ns1"),
		doc("apiextensions.k8s.io/v1", "CustomResourceDefinition", "crd1"),
		doc("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy", "vap"),
		doc("example.com/v1", "Namespace", "not-a-namespace"),
		doc("v1", "Namespace", "ns2"),
		doc("example.com/v1", "CustomResourceDefinition", "not-a-crd"),
		doc("apiextensions.k8s.io/v1", "CustomResourceDefinition", "crd2"),
	}
	orig := slices.Clone(in)

	var got []string
	for _, d := range Order(in) {
		got = append(got, d.Object.GetName())
	}
	want := []string{"crd1", "crd2", "ns1", "ns2", "cm", "vap", "not-a-namespace", "not-a-crd"}
	if !slices.Equal(got, want) {
		t.Errorf("Order = %q, want %q", got, want)
	}
	if !slices.Equal(in, orig) {
		t.Errorf("Order changed its argument")
	}

	// Enough documents that an unstable sort would show.
	in, want = nil, nil
	kinds := []struct{ apiVersion, kind string }{{"v1", "Secret"}, {"v1", "Namespace"}, {"apiextensions.k8s.io/v1", "CustomResourceDefinition"}}
	for group := 2; group >= 0; group-- {
		for i := range 50 {
			if i%3 == group {
				want = append(want, fmt.Sprint(i))
			}
		}
	}
	for i := range 50 {
		in = append(in, doc(kinds[i%3].apiVersion, kinds[i%3].kind, fmt.Sprint(i)))
	}
	got = nil
	for _, d := range Order(in) {
		got = append(got, d.Object.GetName())
	}
	if !slices.Equal(got, want) {
		t.Errorf("Order of 50 documents = %q, want %q", got, want)
	}
}

func TestHashDir(t *testing.T) {
	base := func() fstest.MapFS {
		return fstest.MapFS{
			"a.yaml":   file(configMap("a")),
			"d/b.json": file(`{"apiVersion": "v1"}`),
		}
	}
	want := hashDir(base())
	if got := hashDir(base()); got != want {
		t.Fatalf("hash of the same files differs: %s != %s", got, want)
	}

	unchanged := map[string]func(fstest.MapFS){
		"text file added":   func(m fstest.MapFS) { m["notes.txt"] = file("x") },
		"hidden file added": func(m fstest.MapFS) { m[".a.yaml.swp"] = file("x") },
		"hidden dir added":  func(m fstest.MapFS) { m[".git/x.yaml"] = file("x") },
		"empty dir added":   func(m fstest.MapFS) { m["empty"] = &fstest.MapFile{Mode: fs.ModeDir} },
	}
	for name, change := range unchanged {
		m := base()
		change(m)
		if got := hashDir(m); got != want {
			t.Errorf("%s: hash changed", name)
		}
	}

	changed := map[string]func(fstest.MapFS){
		"bytes changed": func(m fstest.MapFS) { m["a.yaml"] = file(configMap("b")) },
		"file added":    func(m fstest.MapFS) { m["c.yml"] = file("") },
		"file removed":  func(m fstest.MapFS) { delete(m, "d/b.json") },
		"file renamed":  func(m fstest.MapFS) { m["a2.yaml"] = m["a.yaml"]; delete(m, "a.yaml") },
		"bytes moved": func(m fstest.MapFS) {
			m["a.yaml"] = file(configMap("a") + `{"apiVersion": `)
			m["d/b.json"] = file(`"v1"}`)
		},
		"became broken":  func(m fstest.MapFS) { m["a.yaml"] = &fstest.MapFile{Data: []byte("gone"), Mode: fs.ModeSymlink} },
		"file truncated": func(m fstest.MapFS) { m["d/b.json"] = file("") },
	}
	for name, change := range changed {
		m := base()
		change(m)
		if got := hashDir(m); got == want {
			t.Errorf("%s: hash did not change", name)
		}
	}
}

func TestHashDirSeesDirectoryAppear(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "policies")
	missing := hashDir(os.DirFS(dir))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if hashDir(os.DirFS(dir)) == missing {
		t.Error("hash of a missing directory equals that of an empty one")
	}
}
