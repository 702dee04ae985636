"""The Kubernetes gateway: the only package of Tenter that imports `kubernetes`.

- `client`: `Kube`, the calls made with one user's kubeconfig, in its namespace;
- `errors`: the `KubeError` classes every failure leaves the gateway as, and the translation;
- `egress`: the egress policy, which addresses the workers may connect to (pure, no `kubernetes`;
  the web process checks uploads with it);
- `transport`: the urllib3 pool manager the client gets, vetting every connection by that policy;
- `cache`: `get_kube(user_id, text)`, one client per user per process (bounded LRU, fork-safe);
- `kubeconfig`: parsing an uploaded kubeconfig (pure YAML, no client; the web process uses it to
  validate uploads without loading `kubernetes`, which is why nothing is re-exported here).

Import from the submodules: `from reconcile.kube.client import Kube`.
"""
