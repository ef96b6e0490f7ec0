"""TLS for tests: certificates made with the openssl command, and a redis-server that speaks only TLS.

    certs = make_certs(tmp_dir)            # ca, server (for 127.0.0.1 and localhost), client; other_ca
    with TLSRedisServer(certs, auth_clients="yes") as server:
        server.url                          # rediss://127.0.0.1:PORT/0
        server.client().acl_setuser(...)    # the test's own client: default user, client certificate

Keys are EC P-256 (quick to make); certificates are valid for a day.
`other_ca` signs nothing the server trusts, and `stranger` is a client
certificate it signed: both stand for "an untrusted certificate".
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.redis_server import RedisServer


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Certs:
    ca: Path          # the CA the server trusts and that signs its certificate
    server: Pair      # names 127.0.0.1 and localhost
    client: Pair      # signed by `ca`
    other_ca: Path    # a CA nobody here trusts
    stranger: Pair    # a client certificate signed by other_ca
    no_name: Pair     # a server certificate signed by `ca` that names another host


def make_certs(folder: Path) -> Certs:
    folder.mkdir(parents=True, exist_ok=True)
    ca = _ca(folder, "ca")
    other = _ca(folder, "other-ca")
    return Certs(
        ca=ca.cert,
        # clientAuth too: cluster nodes present their certificate to each other on the cluster bus.
        server=_signed(folder, "server", ca, "geoq test server", "IP:127.0.0.1,DNS:localhost",
                       "serverAuth,clientAuth"),
        client=_signed(folder, "client", ca, "geoq test client", None, "clientAuth"),
        other_ca=other.cert,
        stranger=_signed(folder, "stranger", other, "somebody else", None, "clientAuth"),
        no_name=_signed(folder, "no-name", ca, "elsewhere.example", "DNS:elsewhere.example", "serverAuth"),
    )


def _openssl(*args: str | Path) -> None:
    done = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args[:2]))} failed: {done.stderr[-1000:]}")


def _key(path: Path) -> Path:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    return path


def _ca(folder: Path, name: str) -> Pair:
    key = _key(folder / f"{name}.key")
    cert = folder / f"{name}.crt"
    _openssl("req", "-x509", "-new", "-key", key, "-sha256", "-days", "1", "-subj", f"/CN=geoq test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-out", cert)
    return Pair(cert, key)


def _signed(folder: Path, name: str, ca: Pair, common_name: str, names: str | None, usage: str) -> Pair:
    key = _key(folder / f"{name}.key")
    csr, cert, ext = folder / f"{name}.csr", folder / f"{name}.crt", folder / f"{name}.ext"
    lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
             f"extendedKeyUsage={usage}"]
    if names:
        lines.append(f"subjectAltName={names}")
    ext.write_text("\n".join(lines) + "\n")
    _openssl("req", "-new", "-key", key, "-subj", f"/CN={common_name}", "-out", csr)
    _openssl("x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial", "-days", "1",
             "-sha256", "-extfile", ext, "-out", cert)
    return Pair(cert, key)


class TLSRedisServer(RedisServer):
    """A redis-server listening only on a TLS port (plain port 0).

    auth_clients: "yes" (a client certificate signed by the CA is required), "optional"
    or "no". `server_pair` defaults to the certificate that names 127.0.0.1.
    """

    def __init__(self, certs: Certs, auth_clients: str = "yes", server_pair: Pair | None = None,
                 extra_args: Sequence[str] = ()) -> None:
        super().__init__(extra_args=extra_args)
        self.certs = certs
        self.auth_clients = auth_clients
        self.server_pair = server_pair or certs.server

    @property
    def url(self) -> str:
        return f"rediss://{self.host}:{self.port}/0"

    def url_for(self, db: int) -> str:
        return f"rediss://{self.host}:{self.port}/{db}"

    def client(self, db: int = 0, **kwargs: object) -> redis.Redis:
        """A client with the trusted CA and client certificate, as the default user."""
        kwargs.setdefault("decode_responses", False)
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        return redis.Redis(host=self.host, port=self.port, db=db, ssl=True,  # type: ignore[arg-type]
                           ssl_ca_certs=str(self.certs.ca), ssl_certfile=str(self.certs.client.cert),
                           ssl_keyfile=str(self.certs.client.key), ssl_check_hostname=False, **kwargs)

    def _argv(self) -> list[str]:
        argv = super()._argv()
        plain = argv.index("--port")
        argv[plain:plain + 2] = ["--port", "0", "--tls-port", str(self.port)]
        return argv + [
            "--tls-cert-file", str(self.server_pair.cert),
            "--tls-key-file", str(self.server_pair.key),
            "--tls-ca-cert-file", str(self.certs.ca),
            "--tls-auth-clients", self.auth_clients,
        ]
