"""herald: LoadBalancer Services for bare-metal Kubernetes."""

__version__ = "0.1.0"
