// Package config defines gatehouse.yaml, the versioned configuration file of
// `gatehouse up`, and the command-line flags that mirror it.
//
// Settings come from three layers, later ones winning: built-in defaults
// (Default), the optional config file (Load), and flags the user actually set
// on the command line (Resolve). Parsing is strict: unknown or duplicate
// fields are errors naming their full path, so a typo such as
// "etcd.clientPrt" fails loudly instead of being silently ignored.
//
// A minimal file:
//
//	apiVersion: gatehouse.dev/v1alpha1
//	kind: Config
//	apiPort: 7443
//	etcd:
//	  servers: ["https://10.0.0.1:2379"]
//
// Typical use in a command:
//
//	fs := pflag.NewFlagSet("up", pflag.ContinueOnError)
//	configPath := fs.String("config", "", "Path to a gatehouse.yaml file.")
//	flagValues := &config.Config{}
//	config.AddFlags(fs, flagValues)
//	if err := fs.Parse(os.Args[1:]); err != nil {
//		return err
//	}
//	cfg, err := config.Resolve(fs, flagValues, *configPath)
//	if err != nil {
//		return err
//	}
//	if err := cfg.Validate(); err != nil {
//		return err
//	}
package config
