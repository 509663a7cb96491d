// Command busybox-image writes a small busybox image archive built from the
// host's /bin/busybox (Debian's busybox-static), for trying out `gatehouse
// images load` and a registry on loopback without any registry access:
//
//	go run ./hack/busybox-image -o busybox.tar gatehouse.test/busybox:1
//	go run ./hack/busybox-image -format docker -o busybox-docker.tar busybox:1
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/gatehouse-dev/gatehouse/internal/imagearchive"
	"github.com/gatehouse-dev/gatehouse/internal/testimage"
)

func main() {
	out := flag.String("o", "busybox.tar", "archive to write")
	format := flag.String("format", "oci", "oci (OCI image layout tar) or docker (docker-archive)")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: busybox-image [-o FILE] [-format oci|docker] NAME")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	var write func(io.Writer, string) (*imagearchive.Blobs, error)
	switch *format {
	case "oci":
		write = testimage.WriteOCI
	case "docker":
		write = testimage.WriteDocker
	default:
		fmt.Fprintf(os.Stderr, "-format %q: want oci or docker\n", *format)
		os.Exit(2)
	}
	if err := run(*out, flag.Arg(0), write); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(path, name string, write func(io.Writer, string) (*imagearchive.Blobs, error)) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	blobs, err := write(f, name)
	if err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// The image ID: the manifest digest differs between the formats.
	fmt.Printf("wrote %s: %s, image ID %s\n", path, name, blobs.ConfigDigest)
	return nil
}
