module github.com/gatehouse-dev/gatehouse/examples/external-data-provider

go 1.26.0
