"""Where herald's objects come from: a directory of manifests (files.py), or the Kubernetes API
(kube/)."""
