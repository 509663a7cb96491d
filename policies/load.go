package policies

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Document is one object read from a policy directory.
type Document struct {
	File   string // path relative to the directory root, slash-separated
	Index  int    // 1-based position of the document in its file
	Line   int    // 1-based line where the document starts in its file
	Object *unstructured.Unstructured
}

// Mode says what the objects read are for.
type Mode int

const (
	// ForApply: objects are server-side applied, so each needs a name.
	ForApply Mode = iota
	// ForCreate: objects are created, so metadata.generateName will do.
	ForCreate
	// ForReview: objects are only looked at (test objects, an
	// AdmissionReview), so apiVersion and kind are all they need.
	ForReview
)

// ReadFile decodes the documents of one file (YAML or JSON) as Load does,
// for mode. name is how errors name the file.
func ReadFile(name string, data []byte, mode Mode) ([]Document, []*DocumentError) {
	return decodeFile(name, data, mode)
}

// DocumentError names the file and document at fault.
// Index 0 means the whole file, or the directory itself.
type DocumentError struct {
	File  string
	Index int
	Err   error
}

func (e *DocumentError) Error() string {
	if e.Index == 0 {
		return fmt.Sprintf("%s: %v", e.File, e.Err)
	}
	return fmt.Sprintf("%s: document %d: %v", e.File, e.Index, e.Err)
}

func (e *DocumentError) Unwrap() error { return e.Err }

var (
	crdKind       = schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}
	namespaceKind = schema.GroupKind{Kind: "Namespace"}
)

// Load reads every policy file in fsys: files ending in .yaml, .yml or .json,
// in lexical order, skipping hidden files and directories. Each YAML document
// becomes one Document, and a v1 List becomes one Document per item.
//
// A document that cannot be used is reported as a DocumentError and the rest
// still load. Index counts only documents that hold something: empty and
// comment-only documents are skipped and not counted. Line numbers in YAML
// syntax errors are lines of the file.
func Load(fsys fs.FS) ([]Document, []*DocumentError) {
	var docs []Document
	var errs []*DocumentError
	walkFiles(fsys, func(name string, data []byte, err error) {
		if err != nil {
			errs = append(errs, &DocumentError{File: name, Err: err})
			return
		}
		d, e := decodeFile(name, data, ForApply)
		docs = append(docs, d...)
		errs = append(errs, e...)
	})
	return docs, errs
}

// Order returns docs in the order they must be applied: CustomResourceDefinitions
// first, then Namespaces, then everything else, so that the kinds and namespaces
// objects rely on exist before them. The order within each group is kept.
func Order(docs []Document) []Document {
	rank := func(d Document) int {
		switch d.Object.GroupVersionKind().GroupKind() {
		case crdKind:
			return 0
		case namespaceKind:
			return 1
		}
		if isTemplate(d) {
			return 2
		}
		return 3
	}
	ordered := slices.Clone(docs)
	slices.SortStableFunc(ordered, func(a, b Document) int { return cmp.Compare(rank(a), rank(b)) })
	return ordered
}

// walkFiles calls visit, in lexical order, for every file of fsys that Load
// reads, with its contents or the error that kept them from being read. A
// directory that cannot be read is visited with its error.
func walkFiles(fsys fs.FS, visit func(name string, data []byte, err error)) {
	_ = fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			visit(name, nil, pathErr(err))
			return nil // report it and go on with the rest of the tree
		}
		if name != "." && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		switch path.Ext(name) {
		case ".yaml", ".yml", ".json":
			data, err := fs.ReadFile(fsys, name)
			if err != nil {
				err = pathErr(err)
			}
			visit(name, data, err)
		}
		return nil
	})
}

// pathErr drops the path from a *fs.PathError: DocumentError already names the file.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// decodeFile splits a file into its YAML documents (JSON is YAML too) and decodes each.
func decodeFile(name string, data []byte, mode Mode) ([]Document, []*DocumentError) {
	var docs []Document
	var errs []*DocumentError
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	index := 0
	// offset is where the reader is in data: each document it returns is
	// the next occurrence of its bytes, which gives its first line.
	offset := 0
	for {
		raw, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			// A malformed "---" line: the reader has dropped the document
			// before it and goes on after it.
			index++
			errs = append(errs, &DocumentError{File: name, Index: index, Err: err})
			if errors.As(err, new(utilyaml.YAMLSyntaxError)) {
				continue
			}
			break
		}
		line := 1
		if i := bytes.Index(data[offset:], raw); i >= 0 {
			line = bytes.Count(data[:offset+i], []byte("\n")) + 1
			offset += i + len(raw)
		}
		objs, objErrs := decodeDocument(raw, mode)
		if objs == nil && objErrs == nil {
			continue // empty or only comments
		}
		index++
		for _, obj := range objs {
			docs = append(docs, Document{File: name, Index: index, Line: line, Object: obj})
		}
		for _, err := range objErrs {
			errs = append(errs, &DocumentError{File: name, Index: index, Err: fileLines(err, line)})
		}
	}
	return docs, errs
}

// decodeDocument decodes one YAML document into the objects it holds: none if
// it is empty, the items of a List, or else the document itself.
func decodeDocument(raw []byte, mode Mode) ([]*unstructured.Unstructured, []error) {
	j, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, []error{err}
	}
	var v any
	if err := utiljson.Unmarshal(j, &v); err != nil { // keeps integers as int64
		return nil, []error{err}
	}
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, []error{errors.New("not an object: want a mapping with apiVersion, kind and metadata")}
	}
	obj := &unstructured.Unstructured{Object: m}
	if err := validate(obj, mode); err != nil {
		return nil, []error{err}
	}
	if obj.GetKind() != "List" {
		return []*unstructured.Unstructured{obj}, nil
	}

	items, ok := m["items"].([]any)
	if !ok && m["items"] != nil {
		return nil, []error{errors.New("items of List is not a list")}
	}
	var objs []*unstructured.Unstructured
	var errs []error
	for i, item := range items {
		im, ok := item.(map[string]any)
		if !ok {
			errs = append(errs, fmt.Errorf("item %d: not an object", i+1))
			continue
		}
		obj := &unstructured.Unstructured{Object: im}
		if err := validate(obj, mode); err != nil {
			errs = append(errs, fmt.Errorf("item %d: %w", i+1, err))
			continue
		}
		objs = append(objs, obj)
	}
	if objs == nil && errs == nil {
		objs = []*unstructured.Unstructured{} // an empty List is still a document
	}
	return objs, errs
}

// validate checks what server-side apply needs to place an object.
func validate(obj *unstructured.Unstructured, mode Mode) error {
	apiVersion := obj.GetAPIVersion()
	if apiVersion == "" {
		return errors.New("apiVersion is missing")
	}
	if _, err := schema.ParseGroupVersion(apiVersion); err != nil {
		return fmt.Errorf("apiVersion: %w", err)
	}
	if obj.GetKind() == "" {
		return errors.New("kind is missing")
	}
	if obj.GetKind() == "List" || mode == ForReview {
		return nil // a List has no name; its items are checked one by one
	}
	if obj.GetName() == "" {
		if obj.GetGenerateName() != "" && mode == ForCreate {
			return nil
		}
		if obj.GetGenerateName() != "" {
			return errors.New("metadata.generateName is not supported: server-side apply needs metadata.name")
		}
		return errors.New("metadata.name is missing")
	}
	return nil
}

// hashDir returns a digest of the names and contents of the files Load would
// read from fsys. Read errors are part of the digest, so a directory that
// appears or becomes readable counts as a change.
func hashDir(fsys fs.FS) string {
	h := sha256.New()
	walkFiles(fsys, func(name string, data []byte, err error) {
		if err != nil {
			data = []byte(err.Error())
		}
		// The length keeps the boundary between entries unambiguous.
		fmt.Fprintf(h, "%q %t %d\n", name, err != nil, len(data))
		h.Write(data)
	})
	return hex.EncodeToString(h.Sum(nil))
}

// yamlLine matches the line a YAML syntax error names, counted from the
// start of its document.
var yamlLine = regexp.MustCompile(`\bline (\d+)\b`)

// fileLines rewrites the line numbers of a YAML syntax error in a document
// that starts at line start into lines of the file.
func fileLines(err error, start int) error {
	msg := err.Error()
	if start <= 1 || !strings.HasPrefix(msg, "yaml: ") && !strings.Contains(msg, "converting YAML to JSON") {
		return err
	}
	return errors.New(yamlLine.ReplaceAllStringFunc(msg, func(m string) string {
		n, _ := strconv.Atoi(m[len("line "):])
		return fmt.Sprintf("line %d", n+start-1)
	}))
}
