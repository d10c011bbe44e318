"""A Kubernetes API server test double, for tests and the lab only.

No kube-apiserver can be installed on the machines herald is built and tested on, so this
package serves Kubernetes' REST wire protocol itself, in process, for the resources herald
uses: discovery, CRD registration and custom resources, list and watch (bookmarks, 410
Expired), status subresources, merge/strategic-merge/JSON/apply patches, optimistic
concurrency, and the Table output `kubectl get` prints. The real `kubectl` and real client
libraries talk to it; its faithfulness is tested with them (tests/integration/kubeapi).

It is a TEST DOUBLE: nothing in herald's own runtime code imports it. It trusts the
bearer token to name the user, enforces RBAC only when asked (`authorize=True`), and has no
admission, validation against schemas, field ownership, or persistence. See
docs/kubeapi.md for what it implements and what it does not.
"""

from herald.lab.kubeapi.server import ApiRequest, KubeApiServer

__all__ = ["ApiRequest", "KubeApiServer"]
