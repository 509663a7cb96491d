package mutation

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// imageParts are an AssignImage's parameters: the parts of an image
// reference it sets, "" for the ones it keeps. In
// "my.registry.io:2000/repo/app:latest" the domain is "my.registry.io:2000",
// the path "repo/app" and the tag ":latest" (a digest "@sha256:…" is a tag).
type imageParts struct {
	domain, path, tag string
}

// The component rules of pkg/mutation/mutators/assignimage. They keep a
// component from holding the separators ("/", ":", "@") that would make it
// spill into its neighbour the next time the image is split, which would
// keep the mutation from converging.
var (
	imageDomainRe = regexp.MustCompile(`(^\w[\w\-_]*\.[\w\-_\.]*[\w](:\d+)?$)|(^localhost(:\d+)?$)`)
	imagePathRe   = regexp.MustCompile(`^[a-z0-9]+(?:(?:(?:[._/]|__|[-]*)[a-z0-9]+)+)?`)
	imageTagRe    = regexp.MustCompile(`(^:[\w][\w.-]{0,127}$)|(^@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9A-Fa-f]{32,}$)`)
)

func (p imageParts) validate() error {
	if p.domain == "" && p.path == "" && p.tag == "" {
		return errors.New("spec.parameters: at least one of assignDomain, assignPath or assignTag must be set")
	}
	if p.domain != "" {
		if !imageDomainRe.MatchString(p.domain) {
			return fmt.Errorf("spec.parameters.assignDomain: %q must be a fully-qualified domain name or localhost, with an optional port", p.domain)
		}
		if d, rest := splitImageDomain(p.domain + "/"); d != p.domain || rest != "" {
			return fmt.Errorf("spec.parameters.assignDomain: %q could not be recognized as a domain", p.domain)
		}
	}
	// The path regexp is matched against the whole path.
	if p.path != "" && imagePathRe.FindString(p.path) != p.path {
		return fmt.Errorf("spec.parameters.assignPath: %q must be a valid image path (lower-case alphanumeric components separated by /, ., _, __ or dashes)", p.path)
	}
	if p.tag != "" {
		if !imageTagRe.MatchString(p.tag) {
			return fmt.Errorf("spec.parameters.assignTag: %q must be a tag starting with ':' or a digest starting with '@'", p.tag)
		}
		if path, tag := splitImageTag(p.tag); tag != p.tag || path != "" {
			return fmt.Errorf("spec.parameters.assignTag: %q could not be recognized as a tag or digest", p.tag)
		}
	}
	// A path whose first component looks like a domain would become the
	// domain on the next pass ("gcr.io/repo" → "gcr.io/gcr.io/repo" …).
	if p.domain == "" {
		if d, _ := splitImageDomain(p.path); d != "" {
			return fmt.Errorf("spec.parameters.assignDomain: Required value: assignPath %q starts with what would be read as a domain (%q), so assignDomain must be set too", p.path, d)
		}
	}
	return nil
}

// apply returns ref with the set parts replaced.
func (p imageParts) apply(ref string) string {
	domain, rest := splitImageDomain(ref)
	path, tag := splitImageTag(rest)
	if p.domain != "" {
		domain = p.domain
	}
	if p.path != "" {
		path = p.path
	}
	if p.tag != "" {
		tag = p.tag
	}
	if domain != "" {
		domain += "/"
	}
	return domain + path + tag
}

// splitImageDomain splits off the domain: the part before the first "/"
// when it holds a "." or ":" or is "localhost" (docker's rule).
func splitImageDomain(ref string) (domain, rest string) {
	i := strings.IndexByte(ref, '/')
	if i < 0 || (!strings.ContainsAny(ref[:i], ".:") && ref[:i] != "localhost") {
		return "", ref
	}
	return ref[:i], ref[i+1:]
}

// splitImageTag splits the path from the tag or digest, which starts at the
// first ":" or "@".
func splitImageTag(rest string) (path, tag string) {
	if i := strings.IndexAny(rest, ":@"); i >= 0 {
		return rest[:i], rest[i:]
	}
	return rest, ""
}
