"""`herald lab up` / `down`: the seed topology in network namespaces, and its processes.

The network outlives the command that builds it, so what must be removed later (namespace
prefix, process ids, FRR's directories) is written to LAB_DIR/state.json as it is made.
`down` ends those processes by pid, deletes every namespace with the lab's prefix (which
also ends anything left inside them) and removes the directories: it works after a crash
of anything, including of `up` itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from herald.agent.status import DEFAULT_STATUS_DIR
from herald.cli.source_option import DEFAULT_MANIFESTS
from herald.l2.key import ENV_KEY, ENV_KEY_FILE, create_key_file
from herald.lab.netns import Lab, LabError, alive, delete_namespace, end_process, namespaces, run
from herald.lab.routers import (
    Bird,
    Frr,
    Neighbor,
    RouterSpec,
    bfd_peer_states,
    bird_bfd_states,
    wait_for,
)
from herald.lab.topology import (
    CLIENT_GATEWAY,
    LOCAL_ASN,
    ROUTER_ADDRESS,
    SEGMENT6_PREFIX,
    Mode,
    RouterKind,
    Topology,
    client_lan6,
    node_manifests,
    seed_topology,
    segment6,
)

PREFIX = "hl-"
LAB_DIR = Path("/run/herald/lab")
STATE = LAB_DIR / "state.json"
LOGS = LAB_DIR / "logs"
# The agents' L2 heartbeat key: new and random for every lab, readable by its owner only.
L2_KEY = LAB_DIR / "l2.key"
GENERATED = "_lab"  # the lab's own manifests (Nodes, EndpointSlices) inside the directory
# --source kube: the Kubernetes API test double (herald.lab.kubeapi) runs on k8s-master1, as
# a real API server would; the admin's kubeconfig (kubectl, the lab kubelet) and one per
# service account of deploy/rbac.yaml (controller, agents), enforced by the server.
KUBE_DIR = LAB_DIR / "kube"
KUBECONFIG = KUBE_DIR / "admin.kubeconfig"
API_LISTEN = "192.0.2.10:6443"
DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
API_START_TIMEOUT = 20.0


def lab() -> Lab:
    return Lab(prefix=PREFIX, stable_names=True)


def herald_argv(*args: str) -> list[str]:
    """The herald command of this installation (beside the running interpreter)."""
    return [str(Path(sys.executable).with_name("herald")), *args]


def up(
    router: RouterKind = "frr",
    workers: int = 5,
    manifests: Path = DEFAULT_MANIFESTS,
    mode: Mode = "bgp",
    topology: Topology | None = None,
    source: str = "files",
) -> Topology:
    """Builds the lab: `topology` if given (--topology FILE), else the seed's; herald reads
    the manifests directory, or (`source` "kube") a Kubernetes API on k8s-master1."""
    down()
    topology = topology or seed_topology(router, workers, mode)
    network = lab()
    state: dict[str, Any] = {
        "topology": topology.to_json(),
        "source": source,
        "manifests": str(manifests),
        "pids": [],
        "dirs": [],
        "agents": {},
    }
    try:
        _build_network(network, topology)
        _prepare_manifests(manifests, topology)
        if topology.mode == "bgp":
            _start_router(network, topology, state)
        _record(network, state)
        if source == "kube":
            _start_api(network, topology)
            _record(network, state)
        _start_herald(network, topology, manifests, state)
        _record(network, state)
    except Exception:
        _record(network, state)
        down()
        raise
    return topology


def down() -> list[str]:
    """Remove everything a lab made; returns the namespaces removed."""
    state = read_state()
    for pid in state.get("pids", []):
        end_process(int(pid), grace=1.0)
    removed = [name for name in namespaces() if name.startswith(PREFIX)]
    for name in removed:
        delete_namespace(name)
    for directory in state.get("dirs", []):
        shutil.rmtree(directory, ignore_errors=True)
    manifests = state.get("manifests")
    if manifests:
        shutil.rmtree(Path(manifests), ignore_errors=True)
    shutil.rmtree(DEFAULT_STATUS_DIR, ignore_errors=True)
    shutil.rmtree(LAB_DIR, ignore_errors=True)
    return removed


def leftovers(state: dict[str, Any]) -> list[str]:
    """What a lab described by `state` left behind after `down()`: namespaces with the lab's
    prefix and live processes (zombies are not: they hold nothing)."""
    left = [f"namespace {n}" for n in namespaces() if n.startswith(PREFIX)]
    pids = {*state.get("pids", []), *state.get("agents", {}).values()}
    return left + [f"process {pid}" for pid in sorted(pids) if alive(int(pid))]


def read_state() -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(STATE.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data


def exec_in(host: str, argv: list[str]) -> int:
    """Runs `argv` in lab host `host` with the terminal attached; returns its exit code."""
    name = PREFIX + host
    if name not in namespaces():
        hosts = sorted(n.removeprefix(PREFIX) for n in namespaces() if n.startswith(PREFIX))
        raise LabError(f"no lab host {host!r}; hosts: {', '.join(hosts) or 'none (herald lab up)'}")
    return subprocess.call(["ip", "netns", "exec", name, *argv])


# -- building ------------------------------------------------------------------------------


def _build_network(network: Lab, topology: Topology) -> None:
    network.host("sw")
    network.host("router", forwarding=True)
    network.bridge("sw", "br0")
    if topology.mode == "l2":
        # The clients share the node segment: they and the router find a VIP by ARP (NDP).
        for client, address in topology.clients.items():
            network.host(client)
            _attach(network, topology, client, address)
            network.route(client, "default", "via", ROUTER_ADDRESS)
    else:
        network.bridge("router", "lan0")
        network.address("router", "lan0", f"{CLIENT_GATEWAY}/24")
        network.address("router", "lan0", f"{client_lan6(CLIENT_GATEWAY)}/64")
        for client, address in topology.clients.items():
            network.host(client)
            network.link("router", client, client, "eth0")
            network.ip("router", "link", "set", client, "master", "lan0")
            network.address(client, "eth0", f"{address}/24")
            network.route(client, "default", "via", CLIENT_GATEWAY)
            network.address(client, "eth0", f"{client_lan6(address)}/64")
            network.route(client, "default", "via", client_lan6(CLIENT_GATEWAY))
        # Spread flows over the next hops by their ports too, not only by addresses.
        network.sysctl("router", "net.ipv4.fib_multipath_hash_policy", "1")
        network.sysctl("router", "net.ipv6.fib_multipath_hash_policy", "1")
    _attach(network, topology, "router", ROUTER_ADDRESS)
    for node in topology.nodes:
        network.host(node.name, forwarding=True)
        _attach(network, topology, node.name, node.address)
        network.bridge(node.name, "cni0")
        network.address(node.name, "cni0", f"{node.pod_gateway}/24")
        network.route(node.name, "default", "via", ROUTER_ADDRESS)
        if topology.dual_stack:
            network.address(node.name, "cni0", f"{node.pod_gateway6}/64")
            network.route(node.name, "default", "via", segment6(ROUTER_ADDRESS))
        for other in topology.nodes:
            if other is not node:
                network.route(node.name, other.pod_cidr, "via", other.address)
                if topology.dual_stack:
                    network.route(node.name, other.pod_cidr6, "via", other.address6)


def _attach(network: Lab, topology: Topology, host: str, address: str) -> None:
    network.link("sw", host, host, "eth0")
    network.ip("sw", "link", "set", host, "master", "br0")
    network.address(host, "eth0", f"{address}/24")
    if topology.dual_stack:
        # Every segment host is on-link with the VIPs of the pool's IPv6 range: no route.
        network.address(host, "eth0", f"{segment6(address)}/{SEGMENT6_PREFIX}")


def _prepare_manifests(manifests: Path, topology: Topology) -> None:
    generated = manifests / GENERATED
    generated.mkdir(parents=True, exist_ok=True)
    (generated / "nodes.yaml").write_text(node_manifests(topology))
    LOGS.mkdir(parents=True, exist_ok=True)


# The lab router's BFD interval (x3), as the seed's BFDProfile: 900 ms detection both ways.
BFD_MS = 300


def _start_router(network: Lab, topology: Topology, state: dict[str, Any]) -> None:
    spec = RouterSpec(
        asn=LOCAL_ASN,
        router_id=ROUTER_ADDRESS,
        neighbors=tuple(
            # BFD offered to every node: a node whose BGPPeerConfig names no BFDProfile just
            # never answers, and its session is unaffected.
            Neighbor(node.address, LOCAL_ASN, passive=True, ipv6=True, bfd_interval=BFD_MS)
            for node in topology.nodes
        ),
        hold_time=9,
        connect_retry=1,
        graceful_restart=True,
        restart_time=120,
    )
    backend = Frr if topology.router == "frr" else Bird
    daemon = backend(network, "router", spec, LAB_DIR / "router")
    if isinstance(daemon, Frr):
        state["dirs"] += [str(daemon.etc), str(daemon.run_dir)]
    daemon.start()


# Prometheus metrics on each node's loopback (Cilium's ports): scrape them from inside the
# node, e.g. `herald lab exec k8s-worker1 curl -s 127.0.0.1:9962/metrics`.
AGENT_METRICS = "127.0.0.1:9962"
CONTROLLER_METRICS = "127.0.0.1:9963"


def _start_api(network: Lab, topology: Topology) -> None:
    """The API server on k8s-master1, then what `kubectl apply -k deploy/` would create
    but the workloads (the lab runs herald itself): namespace, CRDs, RBAC."""
    master = topology.nodes[0].name
    accounts = [
        f"herald-system/herald-{who}={KUBE_DIR / f'{who}.kubeconfig'}"
        for who in ("controller", "agent")
    ]
    process = network.spawn(
        master,
        [sys.executable, "-m", "herald.lab.kubeapi", "--listen", API_LISTEN, "--authorize",
         *(a for account in accounts for a in ("--service-account", account)),
         "--kubeconfig", str(KUBECONFIG)],
        log=LOGS / "kubeapi.log",
    )  # fmt: skip
    wait_for(
        lambda: KUBECONFIG.exists() or process.poll() is not None,
        API_START_TIMEOUT,
        "the Kubernetes API test double to listen",
        interval=0.1,
    )
    if process.poll() is not None:
        raise LabError(f"the Kubernetes API test double exited; see {LOGS / 'kubeapi.log'}")
    for manifest in (DEPLOY / "namespace.yaml", DEPLOY / "crds", DEPLOY / "rbac.yaml"):
        run(kubectl_argv("apply", "-f", str(manifest)), check=True)


def kubectl_argv(*args: str) -> list[str]:
    """The real kubectl, as the lab's admin on k8s-master1 (where the API server is)."""
    return ["ip", "netns", "exec", PREFIX + "k8s-master1", "kubectl", "--kubeconfig",
            str(KUBECONFIG), *args]  # fmt: skip


def _source_args(state: dict[str, Any], who: str) -> list[str]:
    """How component `who` (controller, agent) reads cluster state in this lab."""
    if state.get("source") == "kube":
        return ["--source", "kube", "--kubeconfig", str(KUBE_DIR / f"{who}.kubeconfig")]
    return ["--manifests", state["manifests"]]


def _start_herald(network: Lab, topology: Topology, manifests: Path, state: dict[str, Any]) -> None:
    common = ["--manifests", str(manifests)]
    create_key_file(L2_KEY)
    master = topology.nodes[0].name
    network.spawn(
        master,
        herald_argv(
            "controller", *_source_args(state, "controller"),
            "--metrics-address", CONTROLLER_METRICS,
        ),
        log=LOGS / "controller.log",
    )  # fmt: skip
    for node in topology.nodes:
        _spawn_agent(network, node.name, manifests, state)
    kubelet = herald_argv("lab", "kubelet", *common)
    if state.get("source") == "kube":
        # It makes pod namespaces, so it keeps the root namespace's mounts (no `ip netns
        # exec`), but it reaches the API server on k8s-master1 from that host's network.
        net = f"--net=/run/netns/{PREFIX}{master}"
        kubelet = ["nsenter", net, *kubelet, "--kubeconfig", str(KUBECONFIG)]
    # The lab's kubelet makes pod namespaces, so it runs in the root namespace.
    log = (LOGS / "kubelet.log").open("ab")
    process = subprocess.Popen(
        kubelet,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    network.processes.append(process)


def _spawn_agent(network: Lab, node: str, manifests: Path, state: dict[str, Any]) -> None:
    process = network.spawn(
        node,
        herald_argv(
            "agent",
            "--node",
            node,
            *_source_args(state, "agent"),
            "--status-dir",
            str(DEFAULT_STATUS_DIR),
            "--metrics-address",
            AGENT_METRICS,
            # Every node's uplink: DSR forwards out of it.
            "--interface",
            "eth0",
        ),
        log=LOGS / f"agent-{node}.log",
        env=_agent_environment(),
    )
    # By node, so a failover test or the demo can end one node's agent by its pid.
    state.setdefault("agents", {})[node] = process.pid


def _agent_environment() -> dict[str, str]:
    """The lab's key file, through the environment: a key in argv is visible to every user
    of the machine (`ps`). A HERALD_L2_KEY of the shell running `lab up` is left out: with
    both, the agent would refuse to start."""
    environment = {name: value for name, value in os.environ.items() if name != ENV_KEY}
    environment[ENV_KEY_FILE] = str(L2_KEY)
    return environment


def start_agent(node: str) -> int:
    """Starts `node`'s agent again (after a test or the demo ended it); returns its pid."""
    state = read_state()
    network = lab()
    network.hosts[node] = PREFIX + node
    _spawn_agent(network, node, Path(state["manifests"]), state)
    _record(network, state)
    pid: int = state["agents"][node]
    return pid


def _record(network: Lab, state: dict[str, Any]) -> None:
    state["pids"] = sorted({*state["pids"], *(p.pid for p in network.processes)})
    LAB_DIR.mkdir(parents=True, exist_ok=True)
    STATE.write_text(json.dumps(state, indent=1))


def wait_until(check: Any, timeout: float, what: str) -> Any:
    return wait_for(check, timeout, what, interval=0.1)


def run_in(host: str, *argv: str, check: bool = False) -> str:
    return run(["ip", "netns", "exec", PREFIX + host, *argv], check=check).stdout


def silence(host: str) -> None:
    """Drops every packet to or from `host` itself (not what it forwards): to its peers it
    falls silent without a TCP reset or a link going down."""
    run_in(host, "nft", "add table inet silence", check=True)
    for hook in ("input", "output"):
        chain = f"{{ type filter hook {hook} priority -300 ; policy drop ; }}"
        run_in(host, "nft", f"add chain inet silence {hook} {chain}", check=True)


def unsilence(host: str) -> None:
    run_in(host, "nft", "delete table inet silence")


def router_bfd_states() -> dict[str, str]:
    """BFD peer address -> state ("up", "down", ...) at the lab's router, FRR or BIRD."""
    if read_state().get("topology", {}).get("router") == "bird":
        ctl = str(LAB_DIR / "router" / "bird.ctl")
        return bird_bfd_states(run_in("router", "birdc", "-s", ctl, "show bfd sessions"))
    out = run_in("router", "vtysh", "-N", PREFIX + "router", "-c", "show bfd peers json")
    return bfd_peer_states(json.loads(out or "[]"))


def router_bfd_up() -> set[str]:
    """The addresses the lab's router has an Up BFD session with."""
    return {peer for peer, status in router_bfd_states().items() if status == "up"}
