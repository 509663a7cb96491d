// Package junit writes JUnit XML reports, the format CI systems read test
// results in; gatehouse check and gatehouse test both write it.
package junit

import (
	"encoding/xml"
	"io"
)

// Report is a JUnit document: suites of cases.
type Report struct {
	XMLName xml.Name `xml:"testsuites"`
	Suites  []Suite  `xml:"testsuite"`
}

// Suite is one testsuite; Tests, Failures, Errors and Skipped are counted
// by Write from its cases.
type Suite struct {
	Name     string `xml:"name,attr"`
	Tests    int    `xml:"tests,attr"`
	Failures int    `xml:"failures,attr"`
	Errors   int    `xml:"errors,attr"`
	Skipped  int    `xml:"skipped,attr"`
	Time     string `xml:"time,attr"`
	Cases    []Case `xml:"testcase"`
}

// Case is one testcase: passed, or with a failure, an error or skipped.
type Case struct {
	Name      string    `xml:"name,attr"`
	Classname string    `xml:"classname,attr"`
	Time      string    `xml:"time,attr"`
	Failure   *Message  `xml:"failure,omitempty"`
	Error     *Message  `xml:"error,omitempty"`
	Skipped   *struct{} `xml:"skipped,omitempty"`
	SystemOut *Text     `xml:"system-out,omitempty"`
}

// Message is a failure or error: a one-line message and the details.
type Message struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",cdata"`
}

// Text is free text, kept as written (CDATA).
type Text struct {
	Text string `xml:",cdata"`
}

// Write counts each suite's cases and writes the report.
func Write(w io.Writer, r Report) error {
	for i := range r.Suites {
		s := &r.Suites[i]
		s.Tests, s.Failures, s.Errors, s.Skipped = len(s.Cases), 0, 0, 0
		for _, c := range s.Cases {
			switch {
			case c.Failure != nil:
				s.Failures++
			case c.Error != nil:
				s.Errors++
			case c.Skipped != nil:
				s.Skipped++
			}
		}
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(r); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
