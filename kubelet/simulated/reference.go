package simulated

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Image references are normalised as the docker reference library
// (github.com/distribution/reference, ParseDockerRef) does, which is what
// containerd's CRI plugin uses: "busybox" is "docker.io/library/busybox:latest",
// "index.docker.io/x/y" is "docker.io/x/y:latest", a reference with both a tag
// and a digest keeps only the digest. The grammar below is that library's.

const (
	defaultDomain       = "docker.io"
	legacyDefaultDomain = "index.docker.io"
	officialRepoPrefix  = "library/"
	defaultTag          = "latest"
	maxNameLength       = 255
)

var (
	pathComponent = `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
	domainName    = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*`
	host          = `(?:` + domainName + `|\[(?:[a-fA-F0-9:]+)\])`
	domainAndPort = host + `(?::[0-9]+)?`
	namePattern   = `(?:` + domainAndPort + `/)?` + pathComponent + `(?:/` + pathComponent + `)*`
	tagPattern    = `[\w][\w.-]{0,127}`
	digestPattern = `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`

	referenceRE = regexp.MustCompile(`^(` + namePattern + `)(?::(` + tagPattern + `))?(?:@(` + digestPattern + `))?$`)
	imageIDRE   = regexp.MustCompile(`^[a-f0-9]{64}$`)
)

var digestHexLen = map[string]int{"sha256": 64, "sha384": 96, "sha512": 128}

var errInvalidReference = errors.New("invalid reference format")

// imageRef is a parsed, normalised image reference.
type imageRef struct {
	name   string // domain/path, e.g. docker.io/library/busybox
	tag    string // empty when digest is set
	digest string // algorithm:hex
}

func (r imageRef) String() string {
	if r.digest != "" {
		return r.name + "@" + r.digest
	}
	return r.name + ":" + r.tag
}

// normalizeReference parses s as ParseDockerRef does.
func normalizeReference(s string) (imageRef, error) {
	if s == "" {
		return imageRef{}, fmt.Errorf("%w: empty reference", errInvalidReference)
	}
	if imageIDRE.MatchString(s) {
		return imageRef{}, fmt.Errorf("invalid repository name (%s), cannot specify 64-byte hexadecimal strings", s)
	}
	domain, remainder := splitDockerDomain(s)
	remoteName := remainder
	if i := strings.IndexAny(remainder, ":@"); i > -1 {
		remoteName = remainder[:i]
	}
	if strings.ToLower(remoteName) != remoteName {
		return imageRef{}, fmt.Errorf("%w: repository name (%s) must be lowercase", errInvalidReference, remoteName)
	}
	m := referenceRE.FindStringSubmatch(domain + "/" + remainder)
	if m == nil {
		return imageRef{}, fmt.Errorf("%w: %q", errInvalidReference, s)
	}
	ref := imageRef{name: m[1], tag: m[2], digest: m[3]}
	if len(ref.name) > maxNameLength {
		return imageRef{}, fmt.Errorf("%w: repository name must not be more than %d characters", errInvalidReference, maxNameLength)
	}
	if ref.digest != "" {
		alg, hex, _ := strings.Cut(ref.digest, ":")
		want, ok := digestHexLen[alg]
		if !ok {
			return imageRef{}, fmt.Errorf("%w: unsupported digest algorithm %q", errInvalidReference, alg)
		}
		if len(hex) != want || strings.ToLower(hex) != hex {
			return imageRef{}, fmt.Errorf("%w: invalid %s digest %q", errInvalidReference, alg, hex)
		}
		ref.tag = "" // ParseDockerRef drops the tag of a tag+digest reference
	} else if ref.tag == "" {
		ref.tag = defaultTag
	}
	return ref, nil
}

// splitDockerDomain is the docker reference library's: the first path
// component is a registry only if it looks like a host name.
func splitDockerDomain(name string) (domain, remainder string) {
	i := strings.IndexRune(name, '/')
	if i == -1 || (!strings.ContainsAny(name[:i], ".:") && name[:i] != "localhost" && strings.ToLower(name[:i]) == name[:i]) {
		domain, remainder = defaultDomain, name
	} else {
		domain, remainder = name[:i], name[i+1:]
	}
	if domain == legacyDefaultDomain {
		domain = defaultDomain
	}
	if domain == defaultDomain && !strings.ContainsRune(remainder, '/') {
		remainder = officialRepoPrefix + remainder
	}
	return domain, remainder
}
