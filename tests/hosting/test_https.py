"""Sites served over HTTPS with certificates from a real ACME server (Pebble), obtained by
certbot over HTTP-01 through the site's own vhost on the suite's nginx."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.fixtures.acme import PebbleServer, pebble_server
from tests.fixtures.hosting import (
    Hosting,
    MariaDBServer,
    NginxServer,
    PostgresServer,
    _created,
)
from tests.fixtures.services import free_port, require_programs
from tests.fixtures.stack import running_stack
from tests.hosting.test_idempotence import changes

PASSWORD = "https-db-pass"
# Each test runs ansible-playbook two to five times and talks to an ACME server, and the
# first starts Aegir and Pebble too: more than the default per-test timeout when loaded.
pytestmark = pytest.mark.timeout(400)


@pytest.fixture(scope="module")
def pebble(nginx: NginxServer) -> Iterator[PebbleServer]:
    require_programs({"pebble": ("pebble", "pebble-challtestsrv"), "certbot": ("certbot",)})
    with pebble_server(nginx.port) as server:
        yield server


@pytest.fixture(scope="module")
def acme_hosting(
    tmp_path_factory: pytest.TempPathFactory,
    pebble: PebbleServer,
    nginx: NginxServer,
    mariadb: MariaDBServer,
    site_postgres: PostgresServer,
) -> Iterator[Hosting]:
    """Aegir whose ACME settings name Pebble (its listener CA trusted by certbot only),
    with a server entity serving TLS on a port of its own."""
    web = tmp_path_factory.mktemp("https-web")
    url = f"sqlite+aiosqlite:///{web / 'aegir.sqlite3'}"
    settings = {
        "AEGIR_ACME_DIRECTORY": pebble.directory,
        "AEGIR_ACME_CA_BUNDLE": str(pebble.listener_ca),
        "AEGIR_ACME_EMAIL": "ops@example.test",
    }
    with running_stack(url, **settings) as stack:
        http = stack.client()
        fields = {
            "hostname": "localhost",
            "connection": "local",
            "http_port": nginx.port,
            "http_address": "127.0.0.1",
            "https_port": free_port(),
            "certificate_dir": str(web / "letsencrypt"),
            "nginx_conf": str(nginx.conf),
            "nginx_sites_dir": str(nginx.sites_dir),
            "backup_dir": str(web / "backups"),
            "postgresql_host": str(site_postgres.socket_dir),
            "postgresql_port": site_postgres.port,
            "postgresql_admin": site_postgres.admin_user,
            "mariadb_socket": str(mariadb.socket),
            "mariadb_admin": mariadb.admin_user,
        }
        server = _created(http.post("/api/v1/servers", json={"name": "tls-host", "fields": fields}))
        yield Hosting(
            stack, http, web, nginx, mariadb, site_postgres, server, php="not used by these tests"
        )
        http.close()


def _https_port(hosting: Hosting) -> int:
    port: int = hosting.server["fields"]["https_port"]
    return port


def _https_get(hosting: Hosting, root: Path, host: str) -> httpx.Response:
    """GET https://host/ from the test nginx, trusting only Pebble's issuing root."""
    with httpx.Client(verify=ssl.create_default_context(cafile=root), trust_env=False) as client:
        return client.get(
            f"https://127.0.0.1:{_https_port(hosting)}/",
            headers={"Host": host},
            extensions={"sni_hostname": host},
        )


def _served_serial(hosting: Hosting, root: Path, host: str) -> str:
    """The serial of the certificate nginx serves for ``host`` (verified against ``root``)."""
    context = ssl.create_default_context(cafile=root)
    address = ("127.0.0.1", _https_port(hosting))
    with (
        socket.create_connection(address, timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    # As openssl prints it (the task's output): hex digits, whole bytes.
    digits = format(x509.load_der_x509_certificate(der).serial_number, "X")
    return digits.zfill(len(digits) + len(digits) % 2)


def _https_site(hosting: Hosting, domain: str, **fields: Any) -> dict[str, Any]:
    platform = hosting.platform(f"static-{domain.split('.')[0]}", page=f"Page of {domain}")
    site = hosting.site(domain, platform, https=True, **fields)
    run = hosting.run(site, "install", {"database": {"engine": "mariadb", "db_password": PASSWORD}})
    assert run["status"] == "succeeded", "\n".join(run["log"])
    return hosting.entity("sites", site["id"])


def test_install_obtains_a_certificate_for_domain_and_alias(
    acme_hosting: Hosting, pebble: PebbleServer
) -> None:
    hosting, root = acme_hosting, pebble.issuer_root()
    site = _https_site(hosting, "tls-one.example.test", aliases=["www.tls-one.example.test"])
    for host in ("tls-one.example.test", "www.tls-one.example.test"):
        response = _https_get(hosting, root, host)
        assert (response.status_code, response.text) == (
            200,
            "<h1>Page of tls-one.example.test</h1>\n",
        )
    # Plain HTTP redirects to the same path over HTTPS.
    with httpx.Client(trust_env=False) as client:
        answer = client.get(
            f"http://127.0.0.1:{hosting.nginx.port}/page?x=1",
            headers={"Host": "www.tls-one.example.test"},
        )
    assert answer.status_code == 301
    port = _https_port(hosting)
    assert answer.headers["location"] == f"https://www.tls-one.example.test:{port}/page?x=1"
    found = hosting.outputs(site, "certificate", "certificate")
    assert Path(found["certificate_path"]).is_file()
    assert found["certificate_serial"] == _served_serial(hosting, root, "tls-one.example.test")
    expires = datetime.datetime.fromisoformat(found["certificate_expires"])
    assert expires > datetime.datetime.now(datetime.UTC)


def test_renewal_replaces_the_certificate_without_a_failed_request(
    acme_hosting: Hosting, pebble: PebbleServer
) -> None:
    hosting, root = acme_hosting, pebble.issuer_root()
    domain = "tls-renew.example.test"
    site = _https_site(hosting, domain)
    first = _served_serial(hosting, root, domain)

    # Not due (Pebble's certificates last far longer than the renewal window): kept, and
    # nothing changes (nginx is not even reloaded).
    for op in ("certificate", "renew_certificate"):
        kept = hosting.run(
            site, op, {"renew_certificate": {"force": False}} if "renew" in op else {}
        )
        assert kept["status"] == "succeeded", "\n".join(kept["log"])
        assert any("is not due: it is kept" in line for line in kept["log"])
        assert changes(kept) == []
    assert _served_serial(hosting, root, domain) == first

    answers: list[int | str] = []
    stop = threading.Event()

    def keep_asking() -> None:
        while not stop.is_set():
            try:
                answers.append(_https_get(hosting, root, domain).status_code)
            except httpx.HTTPError as error:
                answers.append(repr(error))

    asking = threading.Thread(target=keep_asking)
    asking.start()
    try:
        run = hosting.run(site, "renew_certificate", {"renew_certificate": {"force": True}})
    finally:
        stop.set()
        asking.join()
    assert run["status"] == "succeeded", "\n".join(run["log"])
    renewed = hosting.outputs(site, "renew_certificate", "renew_certificate")
    assert renewed["certificate_serial"] != first
    assert _served_serial(hosting, root, domain) == renewed["certificate_serial"]
    assert answers and set(answers) == {200}, [a for a in answers if a != 200][:5]


def test_a_failed_http_01_challenge_leaves_the_site_on_http(
    acme_hosting: Hosting, pebble: PebbleServer
) -> None:
    hosting = acme_hosting
    domain = "tls-unreachable.example.test"
    platform = hosting.platform("static-unreachable", page="Still here")
    site = hosting.site(domain, platform)
    install = hosting.run(site, "install", {"database": {"db_password": PASSWORD}})
    assert install["status"] == "succeeded", "\n".join(install["log"])
    # Pebble finds the domain where nothing listens: its HTTP-01 validation cannot connect.
    pebble.resolve(domain, "127.0.0.2")
    patched = hosting.http.patch(f"/api/v1/sites/{site['id']}", json={"fields": {"https": True}})
    assert patched.status_code == 200, patched.text

    run = hosting.run(hosting.entity("sites", site["id"]), "certificate")
    log = "\n".join(run["log"])
    assert run["status"] == "failed", log
    assert f"No certificate for {domain}" in log
    # certbot's words for what Pebble reported, not a traceback.
    assert "The Certificate Authority reported these problems" in log
    assert "127.0.0.2" in log and "connection refused" in log.lower(), log
    assert "Traceback" not in log
    assert hosting.get(domain) == (200, "<h1>Still here</h1>\n")


def test_verify_writes_the_expiry_and_fails_on_an_expired_certificate(
    acme_hosting: Hosting, pebble: PebbleServer
) -> None:
    hosting = acme_hosting
    domain = "tls-verify.example.test"
    site = _https_site(hosting, domain)
    issued = hosting.outputs(site, "certificate", "certificate")

    run = hosting.run(site, "verify")
    assert run["status"] == "succeeded", "\n".join(run["log"])
    found = hosting.outputs(site, "verify", "verify")
    assert found["certificate_expires"] == issued["certificate_expires"]
    assert _site_page_shows(hosting, site["id"], found["certificate_expires"])

    _expire(Path(issued["certificate_path"]), Path(issued["key_path"]))
    expired = hosting.run(site, "verify")
    log = "\n".join(expired["log"])
    assert expired["status"] == "failed", log
    assert f"The certificate of {domain} expired" in log


def _site_page_shows(hosting: Hosting, site_id: str, expires: str) -> bool:
    """Whether the site's page, signed in as a browser would, shows ``expires``."""
    with httpx.Client(base_url=hosting.stack.base_url, trust_env=False) as browser:
        form = browser.get("/login").text
        csrf = form.split('name="csrf_token" value="')[1].split('"')[0]
        hosting.stack.create_account("https-viewer")
        browser.post(
            "/login",
            data={
                "username": "https-viewer",
                "password": "a-long-test-password",
                "csrf_token": csrf,
            },
        )
        page = browser.get(f"/sites/{site_id}").text
    return "Certificate expires" in page and expires[:10] in page


def _expire(certificate: Path, key_path: Path) -> None:
    """Put a certificate that expired yesterday where the site's is (same key)."""
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    now = datetime.datetime.now(datetime.UTC)
    name = x509.load_pem_x509_certificate(certificate.read_bytes()).subject
    old = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=10))
        .not_valid_after(now - datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    target = certificate.resolve()
    target.write_bytes(old.public_bytes(serialization.Encoding.PEM))
