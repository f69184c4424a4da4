"""Can this machine reach the stack's Kubernetes API? A TCP connect, then TLS and `GET /readyz`,
each with a short timeout, so preflight can say NO-GO in seconds instead of letting a preview
wait on a dead endpoint.

Where the endpoint comes from, in the order preflight looks:
- `cloud: existing`, `existing.mode: cluster`: the kubeconfig the stack names
  (`existing.kubeconfig`, relative to the project directory like the program reads it; else
  $KUBECONFIG, then ~/.kube/config) and its `existing.context` (else the current context);
- a cloud stack (gke, eks, aks) that has been deployed: its `kubeconfig` output;
- a cloud stack never deployed: nothing to probe yet (its first `up` creates the cluster);
- render mode: no cluster at all.

Reachable means the API server answered over TLS: `/readyz` 200, or 401/403 (it answers but
wants credentials, which the preview then uses). Anything else (refused, timed out, name not
resolved, TLS failure, a 5xx from /readyz) is unreachable.

Proxies as client-go (kubectl, the Kubernetes provider) uses them: the cluster's `proxy-url`, else
$HTTPS_PROXY/$HTTP_PROXY unless $NO_PROXY names the host or the host is loopback. HTTP proxies are
probed through (CONNECT); a SOCKS or HTTPS proxy is not, and the probe says so instead of guessing.
"""
from __future__ import annotations

import base64
import http.client
import ipaddress
import os
import socket
import ssl
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from urllib.parse import SplitResult, unquote, urlsplit

import yaml

TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Endpoint:
    """An API server URL, where it came from, and how to verify its certificate."""

    server: str
    source: str  # e.g. "kubeconfig /x/kubeconfig (clipper:existing.kubeconfig in Pulumi.local.yaml), context c"
    ca_pem: Optional[bytes] = None
    insecure: bool = False
    tls_server_name: Optional[str] = None
    proxy_url: Optional[str] = None  # the kubeconfig cluster's proxy-url


@dataclass(frozen=True)
class Probe:
    reachable: Optional[bool]  # None: not probed (a proxy the probe cannot speak)
    detail: str  # what answered, or why nothing did
    seconds: float


class EndpointError(Exception):
    """The endpoint cannot even be worked out (missing kubeconfig, unknown context, no server)."""


def from_kubeconfig(document: Any, context: Optional[str], source: str, base_dir: Optional[Path] = None) -> Endpoint:
    """The server of `context` (default: current-context) in a parsed kubeconfig."""
    if not isinstance(document, dict):
        raise EndpointError(f"{source}: not a kubeconfig")
    wanted = context or document.get("current-context")
    if not wanted:
        raise EndpointError(f"{source}: no context given and no current-context")
    contexts = {c.get("name"): c.get("context") or {} for c in document.get("contexts") or []}
    if wanted not in contexts:
        raise EndpointError(f"{source}: no context {wanted!r} (has: {', '.join(sorted(map(str, contexts))) or 'none'})")
    cluster_name = contexts[wanted].get("cluster")
    clusters = {c.get("name"): c.get("cluster") or {} for c in document.get("clusters") or []}
    cluster = clusters.get(cluster_name)
    if not cluster or not cluster.get("server"):
        raise EndpointError(f"{source}: context {wanted!r} names cluster {cluster_name!r}, which has no server")
    ca_pem = None
    if cluster.get("certificate-authority-data"):
        try:
            ca_pem = base64.b64decode(cluster["certificate-authority-data"], validate=True)
        except ValueError:
            raise EndpointError(f"{source}: certificate-authority-data is not base64") from None
    elif cluster.get("certificate-authority"):
        ca_path = Path(os.path.expanduser(cluster["certificate-authority"]))
        if not ca_path.is_absolute() and base_dir is not None:
            ca_path = base_dir / ca_path
        try:
            ca_pem = ca_path.read_bytes()
        except OSError as error:
            raise EndpointError(f"{source}: certificate-authority {ca_path}: {error.strerror}") from None
    return Endpoint(
        server=str(cluster["server"]),
        source=f"{source}, context {wanted}",
        ca_pem=ca_pem,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=cluster.get("tls-server-name"),
        proxy_url=cluster.get("proxy-url"),
    )


def read_kubeconfig(path: Path, context: Optional[str], origin: str) -> Endpoint:
    source = f"kubeconfig {path} ({origin})"
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise EndpointError(f"{source} does not exist") from None
    except (OSError, yaml.YAMLError) as error:
        raise EndpointError(f"{source} cannot be read: {error}") from None
    return from_kubeconfig(document, context, source, path.parent)


def _tls_context(endpoint: Endpoint) -> ssl.SSLContext:
    if endpoint.insecure:  # the kubeconfig itself says insecure-skip-tls-verify
        return ssl._create_unverified_context()
    if endpoint.ca_pem:
        return ssl.create_default_context(cadata=endpoint.ca_pem.decode("ascii", "replace"))
    return ssl.create_default_context()


def _reason(error: BaseException, timeout: float) -> str:
    if isinstance(error, (socket.timeout, TimeoutError)):
        return f"no answer within {timeout:g} s"
    if isinstance(error, socket.gaierror):
        return f"name not resolved ({error.strerror or error})"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({error.verify_message})"
    if isinstance(error, ssl.SSLError):
        return f"TLS failed ({error.reason or error})"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def proxy_for(endpoint: Endpoint) -> Optional[str]:
    """The proxy client-go would use for this server, or None for a direct connection."""
    if endpoint.proxy_url:
        return endpoint.proxy_url
    url = urlsplit(endpoint.server)
    host = url.hostname or ""
    if _is_loopback(host) or urllib.request.proxy_bypass_environment(host):
        return None
    return urllib.request.getproxies_environment().get(url.scheme)


def _connect(url: SplitResult, proxy: Optional[str], timeout: float) -> tuple[socket.socket, str]:
    """A TCP connection to the server, directly or through an HTTP proxy's CONNECT tunnel, and
    " through <proxy>" or "" for messages. Raises _StepFailed naming the step that failed."""
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    if proxy is None:
        try:
            return socket.create_connection((host, port), timeout=timeout), ""
        except OSError as error:
            raise _StepFailed(f"TCP connect to {host}:{port}", error) from None
    via = urlsplit(proxy)
    where = f"proxy {via.hostname}:{via.port or 80}"
    try:
        sock = socket.create_connection((via.hostname or "", via.port or 80), timeout=timeout)
    except OSError as error:
        raise _StepFailed(f"TCP connect to {where}", error) from None
    headers = f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    if via.username:
        credentials = f"{unquote(via.username)}:{unquote(via.password or '')}".encode()
        headers += f"Proxy-Authorization: Basic {base64.b64encode(credentials).decode()}\r\n"
    try:
        sock.sendall((headers + "\r\n").encode())
        answer = http.client.HTTPResponse(sock, method="CONNECT")
        answer.begin()
    except (OSError, http.client.HTTPException) as error:
        sock.close()
        raise _StepFailed(f"CONNECT {host}:{port} through {where}", error) from None
    if answer.status != 200:
        sock.close()
        raise _StepFailed(f"CONNECT {host}:{port} through {where}", OSError(f"HTTP {answer.status} {answer.reason}"))
    return sock, f" through {where}"


class _StepFailed(Exception):
    def __init__(self, step: str, error: BaseException):
        super().__init__(step)
        self.step, self.error = step, error


def probe(endpoint: Endpoint, timeout: float = TIMEOUT_S) -> Probe:
    """TCP connect to the server (or its proxy), TLS handshake, `GET /readyz`; each step within
    `timeout` seconds."""
    start = time.perf_counter()
    url = urlsplit(endpoint.server)
    host = url.hostname
    if url.scheme not in ("https", "http") or not host:
        return Probe(False, f"server {endpoint.server!r} is not an http(s) URL", 0.0)
    proxy = proxy_for(endpoint)
    if proxy is not None and urlsplit(proxy).scheme != "http":
        return Probe(None, f"not probed: it is reached through the proxy {proxy}, which this check cannot use", 0.0)

    def failed(step: str, error: BaseException) -> Probe:
        return Probe(False, f"{step}: {_reason(error, timeout)}", time.perf_counter() - start)

    try:
        sock, via = _connect(url, proxy, timeout)
    except _StepFailed as failure:
        return failed(failure.step, failure.error)
    try:
        if url.scheme == "https":
            try:
                sock = _tls_context(endpoint).wrap_socket(sock, server_hostname=endpoint.tls_server_name or host)
            except OSError as error:
                return failed(f"TLS handshake{via}", error)
        path = url.path.rstrip("/") + "/readyz"  # a server URL may carry a path prefix (API proxies)
        request = f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read(200).decode("utf-8", "replace").strip()
    except (OSError, http.client.HTTPException) as error:
        return failed(f"GET /readyz{via}", error)
    finally:
        sock.close()
    seconds = time.perf_counter() - start
    if response.status == 200:
        return Probe(True, f"/readyz {body or 'ok'}{via}", seconds)
    if response.status in (401, 403):
        return Probe(True, f"/readyz {response.status}{via} (wants the credentials the preview uses)", seconds)
    first = body.splitlines()[0] if body else ""
    return Probe(False, f"GET /readyz{via}: HTTP {response.status} {first}".rstrip(), seconds)
