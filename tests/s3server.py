"""A real S3-compatible object store on loopback for the engine tests: MinIO, built from its Go
module (the version is pinned here, in MINIO_VERSION, and nowhere else), the way a team's
`pulumi login s3://...` talks to S3.

    python -m tests.s3server build          # go install it once (cached; prints the binary)
    python -m tests.s3server run [--dir D]  # serve on 127.0.0.1 until Ctrl-C; prints the env to use

The binary is cached outside the repo in ~/.cache/clipper/minio/<version>/ (like toolchain/'s
builds). The tiny client below (SigV4-signed PUT bucket and ListObjectsV2, standard library only)
exists only so that tests can make a bucket and look at the lock objects Pulumi writes.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

MINIO_MODULE = "github.com/minio/minio"
# MinIO's module has no semver tags (its releases are RELEASE.<date> tags), so it is pinned by
# pseudo-version: the newest commit the Go module proxy served when this was written.
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"
CACHE = Path(os.environ.get("CLIPPER_CACHE_DIR", Path.home() / ".cache" / "clipper")) / "minio" / MINIO_VERSION
ACCESS_KEY, SECRET_KEY, REGION = "clipper-test", "clipper-test-secret", "us-east-1"


def minio_binary() -> Optional[Path]:
    """The cached MinIO server binary, or None when it has not been built."""
    binary = CACHE / "minio"
    return binary if binary.is_file() else None


def build_minio(log=sys.stderr) -> Path:
    """`go install` MinIO at MINIO_VERSION into the cache, once. Several minutes cold (see
    docs/backends.md); raises RuntimeError with go's output when it fails."""
    found = minio_binary()
    if found:
        return found
    if shutil.which("go") is None:
        raise RuntimeError("building MinIO needs Go on PATH")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as gobin:
        print(f"building {MINIO_MODULE}@{MINIO_VERSION} (once; cached in {CACHE})", file=log, flush=True)
        done = subprocess.run(["go", "install", f"{MINIO_MODULE}@{MINIO_VERSION}"],
                              env={**os.environ, "GOBIN": gobin},
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"go install {MINIO_MODULE}@{MINIO_VERSION} failed:\n{done.stderr[-4000:]}")
        os.replace(Path(gobin) / "minio", CACHE / "minio")  # atomic: a half-built binary is never used
    return CACHE / "minio"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sign(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


@dataclass
class S3Server:
    """A running MinIO on 127.0.0.1:port, with one root access key."""

    port: int
    process: subprocess.Popen

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def backend_url(self, bucket: str, prefix: str = "") -> str:
        """The Pulumi DIY backend URL for a bucket (and key prefix) on this server. gocloud's s3blob
        (AWS SDK v2) takes `endpoint` as a URL, `use_path_style` (MinIO serves path-style) and
        `region`; `disableSSL`/`s3ForcePathStyle` of the v1 SDK: only the latter is still accepted."""
        path = f"/{prefix.strip('/')}" if prefix else ""
        return f"s3://{bucket}{path}?endpoint={self.endpoint}&use_path_style=true&region={REGION}"

    def env(self) -> dict[str, str]:
        """What a `pulumi login s3://...` user sets: the AWS SDK's credentials and region."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION}

    def request(self, method: str, path: str, query: Optional[dict] = None, body: bytes = b"") -> bytes:
        """One SigV4-signed request (path-style: /bucket[/key])."""
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        canonical_query = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(str(v), safe='-_.~')}"
                                   for k, v in sorted((query or {}).items()))
        payload = hashlib.sha256(body).hexdigest()
        host = f"127.0.0.1:{self.port}"
        headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
        signed = ";".join(sorted(headers))
        canonical = "\n".join([method, urllib.parse.quote(path, safe="/-_.~"), canonical_query,
                               "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, payload])
        scope = f"{day}/{REGION}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = _sign(_sign(_sign(_sign(f"AWS4{SECRET_KEY}".encode(), day), REGION), "s3"), "aws4_request")
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, SignedHeaders={signed}, "
                                    f"Signature={signature}")
        url = f"{self.endpoint}{urllib.parse.quote(path, safe='/-_.~')}" + (f"?{canonical_query}" if query else "")
        req = urllib.request.Request(url, data=body if method == "PUT" else None, method=method,
                                     headers={k: v for k, v in headers.items() if k != "host"})
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.read()

    def create_bucket(self, bucket: str) -> None:
        try:
            self.request("PUT", f"/{bucket}")
        except urllib.error.HTTPError as error:
            if error.code != 409:  # 409: BucketAlreadyOwnedByYou, from a reused --dir
                raise

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key under prefix (ListObjectsV2, following continuation tokens)."""
        found, token = [], None
        while True:
            query = {"list-type": "2", "prefix": prefix, **({"continuation-token": token} if token else {})}
            root = ET.fromstring(self.request("GET", f"/{bucket}", query))
            ns = {"s3": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else {}
            tag = (lambda name: f"s3:{name}") if ns else (lambda name: name)
            found += [e.text for e in root.findall(f"{tag('Contents')}/{tag('Key')}", ns)]
            token = root.findtext(tag("NextContinuationToken"), None, ns)
            if not token:
                return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def running_s3(data_dir: Path, binary: Optional[Path] = None, timeout: float = 60) -> Iterator[S3Server]:
    """Start MinIO on a free loopback port with data in data_dir; stop it afterwards."""
    binary = binary or build_minio()
    port, console_port = _free_port(), _free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(data_dir.parent / f"{data_dir.name}.log", "w")
    env = {**os.environ, "MINIO_ROOT_USER": ACCESS_KEY, "MINIO_ROOT_PASSWORD": SECRET_KEY,
           "MINIO_BROWSER": "off", "MINIO_UPDATE": "off", "MINIO_REGION": REGION}
    process = subprocess.Popen([str(binary), "server", "--quiet", "--address", f"127.0.0.1:{port}",
                                "--console-address", f"127.0.0.1:{console_port}", str(data_dir)],
                               env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = S3Server(port, process)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"minio exited with {process.returncode}: see {log.name}")
            try:
                with urllib.request.urlopen(f"{server.endpoint}/minio/health/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"minio did not become ready in {timeout:.0f}s: see {log.name}")
            time.sleep(0.2)
        yield server
    finally:
        server.stop()
        log.close()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.s3server", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build MinIO from its Go module (once) and print the binary's path")
    run = sub.add_parser("run", help="serve S3 on loopback until interrupted, with a bucket 'clipper-state'")
    run.add_argument("--dir", type=Path, default=None, help="data folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.command == "build":
        print(build_minio())
        return 0
    data = args.dir or Path(tempfile.mkdtemp(prefix="clipper-s3-")) / "data"
    with running_s3(data) as server:
        server.create_bucket("clipper-state")
        for name, value in server.env().items():
            print(f"export {name}={value}")
        print(f"export PULUMI_BACKEND_URL='{server.backend_url('clipper-state')}'")
        print("# serving; Ctrl-C stops it", flush=True)
        try:
            server.process.wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
