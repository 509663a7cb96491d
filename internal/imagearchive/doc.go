// Package imagearchive writes single-layer container images, built from
// files held in memory, as the two archive formats that image tools
// exchange: an OCI image layout in a tar (what `docker buildx --output
// type=oci` or `skopeo copy oci-archive:` make) and a docker-archive (what
// `docker save` made before Docker 25).
//
// Gatehouse builds its pod sandbox (pause) image this way, and the tests
// build a busybox image from the host's /bin/busybox, because no registry
// can be reached from our machines. The output is reproducible: every
// timestamp is the Unix epoch, so the same files give the same digests.
//
//	var buf bytes.Buffer
//	_, err := imagearchive.WriteOCI(&buf, imagearchive.Image{
//		Name:         "gatehouse.dev/pause:1",
//		Architecture: "amd64",
//		Files:        []imagearchive.File{{Path: "pause", Mode: 0o755, Data: elf}},
//		Entrypoint:   []string{"/pause"},
//	})
package imagearchive
