"""Where herald's objects come from: a directory of manifests, or (later) the Kubernetes API."""
