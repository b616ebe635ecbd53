"""A local stand-in for the two Google sides the Cloud SQL Python Connector talks to.

The real, unmodified connector (google.cloud.sql.connector) runs against it, so its cold path (key pair,
credentials, the Admin API's connectSettings and generateEphemeralCert, the mTLS handshake on port 3307) is
exercised and measured locally:

- an HTTP server standing in for the Cloud SQL Admin API (the connector's ``sqladmin_api_endpoint``) and for an
  OAuth token endpoint (``token_uri`` of an ``authorized_user`` credentials file, so google.auth's ordinary
  Application Default Credentials path refreshes a token here, never at Google);
- a TLS server on ``<host>:3307`` (the connector's port is fixed, so each stand-in takes its own 127.x.y.z
  address) that requires a client certificate signed by the stand-in's CA and forwards the bytes to the local
  PostgreSQL: over TCP (password login) or, for a certificate issued with an IAM login token, over the server's
  Unix socket, where local connections are trusted, as Cloud SQL's proxy vouches for IAM users.

What it cannot show: network latency to Google, the Admin API's own latency and quotas (docs/PERFORMANCE.md).
The HTTP and TLS servers are hand-written on the standard library because no package provides this stand-in;
the certificates are made with ``cryptography``.
"""

from __future__ import annotations

import datetime
import json
import random
import secrets
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PROXY_PORT = 3307  # fixed in the connector (SERVER_PROXY_PORT)
API_PREFIX = "/sql/v1beta4/projects/"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class _Authority:
    """A self-signed CA and the certificates it signs (EC keys: fast to generate)."""

    common_name: str
    key: ec.EllipticCurvePrivateKey = field(init=False)
    cert: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(self.common_name))
            .issuer_name(_name(self.common_name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def sign(self, public_key: Any, common_name: str, hours: float = 1.0) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=hours))
            .sign(self.key, hashes.SHA256())
        )


class CloudSqlStandIn:
    """Admin API + token endpoint (HTTP on 127.0.0.1) and the TLS proxy on ``host:3307`` for one instance."""

    def __init__(
        self,
        pg_host: str,
        pg_port: int,
        pg_socket_dir: Path | None,
        project: str = "proj",
        region: str = "europe-west1",
        instance: str = "netra",
        database_version: str = "POSTGRES_16",
    ) -> None:
        self.pg_host, self.pg_port, self.pg_socket_dir = pg_host, pg_port, pg_socket_dir
        self.project, self.region, self.instance = project, region, instance
        self.database_version = database_version
        self.server_ca = _Authority(f"stand-in server CA {instance}")
        self.client_ca = _Authority(f"stand-in client CA {instance}")
        self.tokens: set[str] = set()
        self.iam_serials: set[int] = set()  # ephemeral certificates issued with an IAM login token
        self.calls: list[str] = []  # "connectSettings", "generateEphemeralCert", "token", "proxy"
        self.events: list[tuple[str, float]] = []  # (call, wall-clock time answered): the benchmark's phases
        self.hang_admin = threading.Event()  # set: the Admin API accepts requests and never answers
        self.host = ""
        self._http: ThreadingHTTPServer | None = None
        self._proxy: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._tmp = tempfile.TemporaryDirectory(prefix="cloudsql-standin-")

    # -- addresses -----------------------------------------------------------------------------------
    @property
    def connection_name(self) -> str:
        return f"{self.project}:{self.region}:{self.instance}"

    @property
    def admin_endpoint(self) -> str:
        assert self._http is not None
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def credentials_file(self) -> str:
        """A ``service_account`` ADC file whose token_uri is this stand-in (GOOGLE_APPLICATION_CREDENTIALS).

        google.auth signs a JWT with its key and trades it for a token here, as it would at Google's token
        endpoint (an ``authorized_user`` file cannot be used: google.auth forces Google's token_uri for it)."""
        path = Path(self._tmp.name) / "adc.json"
        if not path.exists():
            from cryptography.hazmat.primitives.asymmetric import rsa

            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode()
            path.write_text(
                json.dumps(
                    {
                        "type": "service_account",
                        "project_id": self.project,
                        "private_key_id": "stand-in",
                        "private_key": pem,
                        "client_email": f"netra-agent@{self.project}.iam.gserviceaccount.com",
                        "client_id": "1",
                        "token_uri": f"{self.admin_endpoint}/token",
                    }
                )
            )
        return str(path)

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> CloudSqlStandIn:
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._http.daemon_threads = True
        self._spawn(self._http.serve_forever)
        self.start_proxy()
        return self

    def start_proxy(self) -> None:
        """Binds a free 127.x.y.z:3307 (parallel stand-ins each take their own address)."""
        for _ in range(50):
            host = f"127.{random.randint(1, 254)}.{random.randint(0, 254)}.{random.randint(1, 254)}"  # noqa: S311
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host if not self.host else self.host, PROXY_PORT))
            except OSError:
                sock.close()
                if self.host:
                    raise
                continue
            self.host = self.host or host
            sock.listen(64)
            self._proxy = sock
            self._spawn(self._accept_loop, sock)
            return
        raise RuntimeError(f"no free 127.x.y.z:{PROXY_PORT}")

    def stop_proxy(self) -> None:
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None

    def stop_admin(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()

    def stop(self) -> None:
        self._stopping.set()
        self.hang_admin.clear()
        self.stop_proxy()
        self.stop_admin()
        self._tmp.cleanup()

    def record(self, call: str) -> None:
        self.calls.append(call)
        self.events.append((call, time.time()))

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    # -- Admin API -----------------------------------------------------------------------------------
    def issue_token(self) -> str:
        token = "standin-" + secrets.token_urlsafe(16)
        self.tokens.add(token)
        return token

    def connect_settings(self) -> dict[str, Any]:
        return {
            "kind": "sql#connectSettings",
            "region": self.region,
            "databaseVersion": self.database_version,
            "backendType": "SECOND_GEN",
            "ipAddresses": [
                {"type": "PRIMARY", "ipAddress": self.host},
                {"type": "PRIVATE", "ipAddress": self.host},
            ],
            "serverCaCert": {"cert": _pem(self.server_ca.cert)},
        }

    def ephemeral_cert(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            public_key = serialization.load_pem_public_key(body["public_key"].encode())
        except (KeyError, ValueError, AttributeError):
            return 400, {"error": {"code": 400, "message": "public_key: a PEM public key is required"}}
        iam_token = body.get("access_token")
        if iam_token is not None and iam_token not in self.tokens:
            return 401, {"error": {"code": 401, "message": "access_token: not a valid IAM login token"}}
        cert = self.client_ca.sign(public_key, "ephemeral")
        if iam_token is not None:
            self.iam_serials.add(cert.serial_number)
        return 200, {"ephemeralCert": {"kind": "sql#sslCert", "cert": _pem(cert)}}

    # -- TLS proxy -----------------------------------------------------------------------------------
    def _server_context(self) -> ssl.SSLContext:
        base = Path(self._tmp.name)
        server = self.server_ca.sign(self.server_ca.key.public_key(), self.host or "127.0.0.1", hours=24)
        (base / "server.pem").write_text(_pem(server))
        (base / "server.key").write_bytes(
            self.server_ca.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        (base / "client-ca.pem").write_text(_pem(self.client_ca.cert))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.load_cert_chain(base / "server.pem", base / "server.key")
        context.load_verify_locations(base / "client-ca.pem")
        context.verify_mode = ssl.CERT_REQUIRED
        return context

    def _accept_loop(self, listener: socket.socket) -> None:
        context = self._server_context()
        while not self._stopping.is_set():
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            self._spawn(self._serve, context, raw)

    def _serve(self, context: ssl.SSLContext, raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            client = context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()  # no or a foreign client certificate: refused, as Cloud SQL's proxy does
            return
        client.settimeout(None)
        self.record("proxy")
        cert = x509.load_der_x509_certificate(client.getpeercert(binary_form=True) or b"")
        try:
            if cert.serial_number in self.iam_serials and self.pg_socket_dir is not None:
                upstream = socket.socket(socket.AF_UNIX)
                upstream.connect(str(self.pg_socket_dir / f".s.PGSQL.{self.pg_port}"))
            else:
                upstream = socket.create_connection((self.pg_host, self.pg_port), timeout=10)
                upstream.settimeout(None)
        except OSError:
            client.close()
            return
        self._spawn(_pump, upstream, client)
        _pump(client, upstream)


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def _handler(standin: CloudSqlStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            return

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            if token in standin.tokens:
                return True
            self._answer(401, {"error": {"code": 401, "message": "Request had invalid authentication credentials."}})
            return False

        def _hang(self) -> None:
            while standin.hang_admin.is_set() and not standin._stopping.wait(0.1):
                pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self._hang()
            expected = f"{API_PREFIX}{standin.project}/instances/{standin.instance}/connectSettings"
            if self.path != expected:
                self._answer(404, {"error": {"code": 404, "message": "instance not found"}})
                return
            if self._authorized():
                self._answer(200, standin.connect_settings())
                standin.record("connectSettings")

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self._hang()
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.path == "/token":
                self._answer(200, {"access_token": standin.issue_token(), "expires_in": 3600, "token_type": "Bearer"})
                standin.record("token")
                return
            expected = f"{API_PREFIX}{standin.project}/instances/{standin.instance}:generateEphemeralCert"
            if self.path != expected:
                self._answer(404, {"error": {"code": 404, "message": "instance not found"}})
                return
            if not self._authorized():
                return
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                self._answer(400, {"error": {"code": 400, "message": "invalid JSON"}})
                return
            status, answer = standin.ephemeral_cert(body)
            self._answer(status, answer)
            standin.record("generateEphemeralCert")

    return Handler
