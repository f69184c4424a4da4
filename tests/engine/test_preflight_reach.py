"""`python -m infra.ops preflight` checks the stack's Kubernetes API before anything else.

Against the local API server (toolchain/cluster.sh): while it runs, the check passes and the rest
of preflight follows (GO); once it is stopped, the same stack gets exactly one NO-GO line naming
the endpoint and the kubeconfig and stack file it came from, exit 1, within seconds, and nothing
else runs. Also a closed port, a server that accepts connections but never answers, a missing
kubeconfig and HTTP proxies. Each test on its own copy of the project and backend
(tests/engine/engine.py)."""
from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from infra.ops import checks, reach
from infra.ops.stack_config import ConfigEntry
from tests.engine.conftest import running_cluster
from tests.engine.engine import ROOT, Project

STACK = "local"
KUBECONFIG = ".state/cluster/kubeconfig"  # relative, as the README sets it: resolved against the project
ORIGIN = "clipper:existing.kubeconfig in Pulumi.local.yaml"


@pytest.fixture
def project(bin_dir, tmp_path) -> Project:
    project = Project.copy_of(ROOT, tmp_path / "base", bin_dir, with_policies=False)
    project.init(STACK)
    project.set(STACK, "existing", {"mode": "cluster", "kubeconfig": KUBECONFIG})
    (project.dir / KUBECONFIG).parent.mkdir(parents=True)
    return project


def _server(kubeconfig: Path) -> str:
    return yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]


def _timed_preflight(project: Project):
    start = time.perf_counter()
    result = project.ops("preflight", "--stack", STACK)
    return result, time.perf_counter() - start


def _no_go_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if "NO-GO" in line]


def _assert_one_clear_no_go(result, server: str, reason: str) -> str:
    assert result.returncode == 1, result.output
    lines = _no_go_lines(result)
    assert len(lines) == 1, result.output
    line = lines[0]
    assert line.startswith(f"{STACK}: NO-GO: Kubernetes API {server} unreachable: ")
    assert reason in line
    assert f"({ORIGIN})" in line and "context " in line
    assert "==> preview" not in result.stdout and "==> toolchain" not in result.stdout  # nothing else ran
    return line


def test_preflight_goes_on_while_the_api_answers_and_stops_with_one_no_go_when_it_is_down(project, tmp_path):
    # An absolute path here: the config check runs the repo's program under mocks, which resolves
    # relative paths against the repo, not against this copy (the tests below use a relative one).
    kubeconfig = tmp_path / "kubeconfig"
    project.set(STACK, "existing", {"mode": "cluster", "kubeconfig": str(kubeconfig)})
    with running_cluster(tmp_path / "cluster") as live:
        shutil.copy(live, kubeconfig)  # `cluster.sh down` deletes its own copy
        server = _server(kubeconfig)
        up, up_seconds = _timed_preflight(project)
        assert up.returncode == 0, up.output
        assert f"{STACK}: GO" in up.stdout and not _no_go_lines(up)
        [row] = [line for line in up.stdout.splitlines() if line.startswith("Kubernetes API ")]
        assert " GO " in row and f"{server} answers: /readyz ok in " in row
        assert str(kubeconfig) in row and ORIGIN in row
        assert "==> preview of" in up.stdout  # the rest of preflight ran
        # Through an HTTP proxy, as kubectl would go with the cluster's proxy-url.
        with connect_proxy() as proxy:
            document = yaml.safe_load(kubeconfig.read_text())
            document["clusters"][0]["cluster"]["proxy-url"] = proxy
            proxied = tmp_path / "proxied-kubeconfig"
            proxied.write_text(yaml.safe_dump(document))
            through = reach.probe(reach.read_kubeconfig(proxied, None, "test"))
        assert through.reachable and through.detail == f"/readyz ok through proxy {proxy.removeprefix('http://')}"
    down, down_seconds = _timed_preflight(project)
    line = _assert_one_clear_no_go(down, server, "TCP connect to 127.0.0.1:")
    assert "connection refused" in line and str(kubeconfig) in line
    assert down_seconds < up_seconds and down_seconds < 30
    print(f"\nreachable: exit 0 in {up_seconds:.1f}s; stopped: exit 1 in {down_seconds:.1f}s\n{line}")


@contextmanager
def connect_proxy():
    """A minimal HTTP CONNECT proxy on loopback; yields its URL. 502 when the target refuses."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            source.close()
            sink.close()

    def handle(client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                return client.close()
            head += chunk
        host, port = head.split()[1].decode().rsplit(":", 1)
        try:
            upstream = socket.create_connection((host, int(port)), timeout=3)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return client.close()
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
        pump(upstream, client)

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=handle, args=(client,), daemon=True).start()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        server.join()
        listener.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _kubeconfig(path: Path, server: str) -> None:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "ctx",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {}}],
    }))


def test_a_closed_port_is_one_no_go_line_and_exit_1(project):
    server = f"https://127.0.0.1:{_closed_port()}"
    _kubeconfig(project.dir / KUBECONFIG, server)
    result, seconds = _timed_preflight(project)
    line = _assert_one_clear_no_go(result, server, "connection refused")
    assert f"kubeconfig {project.dir / KUBECONFIG} ({ORIGIN}), context ctx" in line  # relative to the project
    print(f"\nexit 1 in {seconds:.1f}s\n{line}")


def test_a_server_that_never_answers_is_cut_off_by_the_timeout(project):
    with socket.socket() as silent:  # accepts TCP (the kernel's backlog), never speaks TLS
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        server = f"https://127.0.0.1:{silent.getsockname()[1]}"
        _kubeconfig(project.dir / KUBECONFIG, server)
        result, seconds = _timed_preflight(project)
    line = _assert_one_clear_no_go(result, server, f"TLS handshake: no answer within {reach.TIMEOUT_S:g} s")
    assert seconds < reach.TIMEOUT_S + 30
    print(f"\nexit 1 in {seconds:.1f}s\n{line}")


def test_a_missing_kubeconfig_is_one_no_go_line_naming_it(project):
    result, _ = _timed_preflight(project)  # the fixture points at a kubeconfig it never wrote
    assert result.returncode == 1
    [line] = _no_go_lines(result)
    assert line.startswith(f"{STACK}: NO-GO: Kubernetes API cannot be located: kubeconfig {project.dir / KUBECONFIG} ({ORIGIN}) does not exist")
    assert "==> preview" not in result.stdout


def _stack(outputs: dict, name: str = "production"):
    """Just what kubernetes_endpoint reads of a cloud stack: its name, stack file and outputs."""
    return SimpleNamespace(name=name, workspace=SimpleNamespace(work_dir=str(ROOT)), outputs=lambda: {
        key: SimpleNamespace(value=value) for key, value in outputs.items()})


def test_a_deployed_cloud_stack_is_probed_at_its_kubeconfig_output_and_a_new_one_is_not(monkeypatch):
    monkeypatch.setattr(checks.stacks, "outputs", lambda stack: {k: v.value for k, v in stack.outputs().items()})
    config = {"clipper:cloud": ConfigEntry("gke")}
    kubeconfig = {"apiVersion": "v1", "kind": "Config", "current-context": "gke",
                  "clusters": [{"name": "gke", "cluster": {"server": "https://gke-0123.europe-west4.gke.goog"}}],
                  "contexts": [{"name": "gke", "context": {"cluster": "gke", "user": "gke"}}]}
    endpoint, _ = checks.kubernetes_endpoint(_stack({"kubeconfig": json.dumps(kubeconfig)}), config, ROOT)
    assert endpoint.server == "https://gke-0123.europe-west4.gke.goog"
    assert endpoint.source == "output kubeconfig of stack production, from its last update, context gke"
    endpoint, why = checks.kubernetes_endpoint(_stack({}), config, ROOT)
    assert endpoint is None and why.startswith("none yet: gke stack with no deployed cluster")
    result = checks.check_reachable(_stack({}), config, ROOT)
    assert result.go  # nothing to reach before the first up creates the cluster


def test_a_proxy_that_cannot_reach_the_server_is_one_no_go_line_naming_it(project):
    port = _closed_port()
    with connect_proxy() as proxy:
        server = f"https://127.0.0.1:{port}"
        _kubeconfig(project.dir / KUBECONFIG, server)
        document = yaml.safe_load((project.dir / KUBECONFIG).read_text())
        document["clusters"][0]["cluster"]["proxy-url"] = proxy
        (project.dir / KUBECONFIG).write_text(yaml.safe_dump(document))
        result, _ = _timed_preflight(project)
    where = proxy.removeprefix("http://")
    _assert_one_clear_no_go(result, server, f"CONNECT 127.0.0.1:{port} through proxy {where}: HTTP 502 Bad Gateway")


def test_proxies_are_chosen_as_kubectl_chooses_them(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "bypass.internal")
    remote = reach.Endpoint("https://api.example.test:6443", "test")
    assert reach.proxy_for(remote) == "http://proxy.internal:3128"
    assert reach.proxy_for(reach.Endpoint("https://bypass.internal", "test")) is None  # NO_PROXY
    assert reach.proxy_for(reach.Endpoint("https://127.0.0.1:6443", "test")) is None  # loopback: never proxied
    assert reach.proxy_for(reach.Endpoint("https://localhost:6443", "test")) is None
    explicit = reach.Endpoint("https://127.0.0.1:6443", "test", proxy_url="http://other:8080")
    assert reach.proxy_for(explicit) == "http://other:8080"  # the kubeconfig's proxy-url always wins
    socks = reach.Endpoint("https://api.example.test:6443", "test", proxy_url="socks5://jump:1080")
    probe = reach.probe(socks)
    assert probe.reachable is None and "socks5://jump:1080" in probe.detail  # not probed, not guessed
