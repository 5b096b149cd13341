//go:build tools

// Package controlplane pins the programs of the test and demo control plane: kube-apiserver and
// kubectl at one Kubernetes release, and the etcd server that release requires. Nothing here is
// compiled into the product; scripts/build_control_plane.py builds these mains from this module.
package controlplane

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
