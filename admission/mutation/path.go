package mutation

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Path is a parsed spec.location (or pathTests subPath): Gatekeeper's path
// language (pkg/mutation/path/parser), e.g.
//
//	spec.containers[name: foo].image
//	spec.containers[name: *].securityContext
//	metadata.labels."example.com/team"
//	spec.ports[port: 80].protocol
//
// A path is a sequence of field names separated by "."; a field may be
// followed by one list selector [key: value] that picks the elements of the
// list held in that field whose key field equals value (a string, or an
// integer when unquoted digits), or every element with the glob "*". Field
// names, keys and values made of letters, digits, "_" and "-" (not starting
// with a digit) may be written bare; anything else is quoted with " or ',
// where a backslash makes the next character literal. Spaces between tokens
// are ignored.
type Path []Node

// Node is one step of a Path: an object field, or a list selector (which
// always follows the field that holds the list).
type Node struct {
	// Field is the key of an object node.
	Field string
	// List marks a list selector; KeyField, KeyValue and Glob describe it.
	List     bool
	KeyField string
	// KeyValue is a string or an int64; nil when Glob is set.
	KeyValue any
	Glob     bool
}

// ParsePath parses a location. Errors give the 0-based byte position of the
// fault, e.g. `invalid path "spec.containers[name]": position 20: expected
// ":" after list key field "name", found "]"`.
func ParsePath(s string) (Path, error) {
	p, err := parsePath(s)
	if err != nil {
		return nil, fmt.Errorf("invalid path %q: %w", s, err)
	}
	return p, nil
}

func parsePath(s string) (Path, error) {
	toks, err := lex(s)
	if err != nil {
		return nil, err
	}
	if toks[0].kind == tokEOF {
		return nil, fmt.Errorf("empty path")
	}
	var p Path
	i := 0
	for {
		t := toks[i]
		if t.kind != tokIdent {
			return nil, t.unexpected("a field name")
		}
		p = append(p, Node{Field: t.text})
		i++
		if toks[i].kind == tokLBracket {
			n, next, err := parseList(toks, i+1)
			if err != nil {
				return nil, err
			}
			p = append(p, n)
			i = next
		}
		switch t := toks[i]; t.kind {
		case tokEOF:
			return p, nil
		case tokDot:
			if toks[i+1].kind == tokEOF {
				return nil, fmt.Errorf("position %d: trailing %q", t.pos, ".")
			}
			i++
		default:
			return nil, t.unexpected(`"." or the end of the path`)
		}
	}
}

// parseList parses `key: value]` (the "[" is consumed) and returns the index
// of the token after "]".
func parseList(toks []token, i int) (Node, int, error) {
	n := Node{List: true}
	if toks[i].kind != tokIdent {
		return n, 0, toks[i].unexpected(`a list key field after "["`)
	}
	n.KeyField = toks[i].text
	i++
	if toks[i].kind != tokColon {
		return n, 0, toks[i].unexpected(fmt.Sprintf("%q after list key field %q", ":", n.KeyField))
	}
	i++
	switch v := toks[i]; v.kind {
	case tokGlob:
		n.Glob = true
	case tokIdent:
		n.KeyValue = v.text
	case tokInt:
		// Decimal only: Gatekeeper's parser does not read signs, octal or hex.
		iv, err := strconv.ParseInt(v.text, 10, 64)
		if err != nil {
			return n, 0, fmt.Errorf("position %d: invalid integer %s for list key %q: out of range", v.pos, v.text, n.KeyField)
		}
		n.KeyValue = iv
	default:
		return n, 0, v.unexpected(fmt.Sprintf(`a value or "*" after "%s:"`, n.KeyField))
	}
	i++
	if toks[i].kind != tokRBracket {
		return n, 0, toks[i].unexpected(`"]" after the list key value`)
	}
	return n, i + 1, nil
}

type tokKind int

const (
	tokEOF tokKind = iota
	tokIdent
	tokInt
	tokDot
	tokLBracket
	tokRBracket
	tokGlob
	tokColon
)

type token struct {
	kind tokKind
	text string // identifier (unquoted) or integer digits
	pos  int    // byte offset in the input
}

func (t token) unexpected(want string) error {
	return fmt.Errorf("position %d: expected %s, found %s", t.pos, want, t.describe())
}

func (t token) describe() string {
	switch t.kind {
	case tokEOF:
		return "the end of the path"
	case tokIdent:
		return strconv.Quote(t.text)
	case tokInt:
		return "integer " + t.text
	default:
		return strconv.Quote(t.text)
	}
}

// lex splits a path into tokens as Gatekeeper's scanner does: an unquoted
// word starting with a digit is an integer (so an unquoted field name
// cannot start with one), other words are identifiers, quoted strings are
// identifiers whatever they hold.
func lex(s string) ([]token, error) {
	var toks []token
	i := 0
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n') {
			i++
		}
		if i >= len(s) {
			return append(toks, token{kind: tokEOF, pos: len(s)}), nil
		}
		start, c := i, s[i]
		switch {
		case isDigit(c):
			for i < len(s) && isDigit(s[i]) {
				i++
			}
			toks = append(toks, token{kind: tokInt, text: s[start:i], pos: start})
		case isWordChar(c):
			for i < len(s) && isWordChar(s[i]) {
				i++
			}
			toks = append(toks, token{kind: tokIdent, text: s[start:i], pos: start})
		case c == '"' || c == '\'':
			var b strings.Builder
			i++
			for {
				if i >= len(s) {
					return nil, fmt.Errorf("position %d: unterminated quoted string", start)
				}
				r, w := utf8.DecodeRuneInString(s[i:])
				i += w
				if r == rune(c) {
					break
				}
				if r == '\\' {
					if i >= len(s) {
						return nil, fmt.Errorf("position %d: unterminated quoted string", start)
					}
					r, w = utf8.DecodeRuneInString(s[i:])
					i += w
				}
				b.WriteRune(r)
			}
			toks = append(toks, token{kind: tokIdent, text: b.String(), pos: start})
		default:
			kinds := map[byte]tokKind{'.': tokDot, '[': tokLBracket, ']': tokRBracket, '*': tokGlob, ':': tokColon}
			k, ok := kinds[c]
			if !ok {
				r, _ := utf8.DecodeRuneInString(s[i:])
				return nil, fmt.Errorf("position %d: invalid character %q (quote names that hold it)", i, r)
			}
			toks = append(toks, token{kind: k, text: string(c), pos: start})
			i++
		}
	}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isWordChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || isDigit(c) || c == '_' || c == '-'
}

// String renders the path so that ParsePath gives it back, quoting names
// that need it.
func (p Path) String() string {
	var b strings.Builder
	for i, n := range p {
		if n.List {
			b.WriteString("[" + quoteName(n.KeyField) + ": ")
			switch v := n.KeyValue.(type) {
			case int64:
				b.WriteString(strconv.FormatInt(v, 10))
			case string:
				b.WriteString(quoteName(v))
			default:
				if n.Glob {
					b.WriteString("*")
				}
			}
			b.WriteString("]")
			continue
		}
		if i > 0 {
			b.WriteString(".")
		}
		b.WriteString(quoteName(n.Field))
	}
	return b.String()
}

// quoteName quotes s unless it lexes back as one bare identifier.
func quoteName(s string) string {
	bare := s != "" && !isDigit(s[0])
	for i := 0; bare && i < len(s); i++ {
		bare = isWordChar(s[i])
	}
	if bare {
		return s
	}
	s = strings.ReplaceAll(s, `\`, `\\`)
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

// isPrefix reports whether short is a prefix of long, node by node.
func (p Path) isPrefix(long Path) bool {
	if len(p) > len(long) {
		return false
	}
	for i := range p {
		if p[i] != long[i] {
			return false
		}
	}
	return true
}
