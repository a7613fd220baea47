"""The nginx edge: render ``nginx/*.conf.template`` from the settings and run nginx.

``kush edge`` writes the rendered files into ``$KUSH_DATA_DIR/edge/`` (with the pid file,
temp files, caches and logs, so nginx needs no root and no system paths) and replaces
itself with Debian's nginx in the foreground; ``kush edge --check`` renders and runs
``nginx -t``. ``kush up`` with ``KUSH_EDGE=1`` runs it next to the gateway and makes the
gateway trust loopback, the edge's address, for ``X-Forwarded-For``.
"""

from __future__ import annotations

import grp
import ipaddress
import os
import pwd
import re
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gateway.edge_usage import USAGE_LOG_FORMAT, USAGE_TAG
from runtime.settings import Settings

#: the template files in ``nginx/``, rendered to the same names without ``.template``
TEMPLATES = (
    "kush-edge.conf",
    "kush-edge-locations.conf",
    "kush-edge-headers.conf",
    "kush-edge-cors.conf",
    "kush-edge-proxy.conf",
    "kush-edge-tls.conf",
)
MAIN = "kush-edge.conf"
LOOPBACK = ("127.0.0.1/32", "::1/128")
NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")
_TLS_SAMPLE = {
    "tls_cert": "/etc/letsencrypt/live/watch.example.ug/fullchain.pem",
    "tls_key": "/etc/letsencrypt/live/watch.example.ug/privkey.pem",
}


class EdgeConfigError(ValueError):
    """The settings cannot be rendered into a safe nginx configuration."""


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    """The rendered configuration: its directory and main file."""

    directory: Path
    conf: Path


def template_dir() -> Path:
    """``nginx/`` of the project (next to the packages; ``KUSH_EDGE_TEMPLATES`` names
    another place, as in the container image)."""
    return Path(__file__).resolve().parent.parent / "nginx"


def edge_dir(settings: Settings) -> Path:
    """Where the rendered files, caches, temp files, logs and the pid file live."""
    return (settings.data_dir / "edge").resolve()


def edge_url(settings: Settings) -> str:
    """The edge's URL on this machine."""
    return f"http://{_hostport(settings.host, settings.edge_port)}"


def find_nginx() -> str | None:
    """The nginx binary (``$PATH``, then Debian's ``/usr/sbin/nginx``), or None."""
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in NGINX_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def gateway_trusts_edge(settings: Settings) -> bool:
    """Whether the gateway believes the edge's ``X-Forwarded-For`` (loopback trusted)."""
    nets = [ipaddress.ip_network(n) for n in settings.trusted_proxies]
    return any(ipaddress.ip_address("127.0.0.1") in n for n in nets)


def with_loopback_trusted(trusted: tuple[str, ...]) -> tuple[str, ...]:
    """``KUSH_TRUSTED_PROXIES`` plus loopback, for a gateway behind a local edge."""
    return tuple(dict.fromkeys((*trusted, *LOOPBACK)))


def _hostport(host: str, port: int) -> str:
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        is_v6 = False
    return f"[{host}]:{port}" if is_v6 else f"{host}:{port}"


def _upstream_host(host: str) -> str:
    """Where the edge reaches the gateway: its listen address, loopback for a wildcard."""
    if host in {"0.0.0.0", ""}:  # noqa: S104 - comparing, not binding
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def _upstream_servers(settings: Settings) -> str:
    """``server`` lines: ``KUSH_EDGE_UPSTREAM`` (the gateway elsewhere: containers,
    Kubernetes) or the local gateway on ``KUSH_GATEWAY_PORT``."""
    addresses = settings.edge_upstream or (
        _hostport(_upstream_host(settings.host), settings.gateway_port),
    )
    return "\n".join(f"        server {a} max_fails=0;" for a in addresses)


def _usage_log(settings: Settings) -> str:
    """Where the edge sends its segment usage lines: syslog over UDP to the gateway's
    host (the local gateway's, else the first of ``KUSH_EDGE_UPSTREAM``) on
    ``KUSH_EDGE_USAGE_PORT``."""
    if settings.edge_usage_port == 0:
        raise EdgeConfigError(
            "KUSH_EDGE_USAGE_PORT: the edge needs the gateway's usage port (0 turns it off)"
        )
    if settings.edge_upstream:
        first = settings.edge_upstream[0]
        host = first[1:].partition("]")[0] if first.startswith("[") else first.rpartition(":")[0]
    else:
        host = _upstream_host(settings.host)
    server = _hostport(host, settings.edge_usage_port)
    return f"syslog:server={server},tag={USAGE_TAG},nohostname"


def _header_var(name: str, setting: str) -> str:
    if not _HEADER_NAME.match(name):
        raise EdgeConfigError(f"{setting}: not a header name nginx can pass: {name!r}")
    return "$http_" + name.lower().replace("-", "_")


def _cors(origins: tuple[str, ...]) -> tuple[str, str]:
    """The ``$kush_cors_origin`` map body and the Vary line."""
    if "*" in origins:
        return '        default "*";', "# every origin allowed: no Vary"
    lines = ['        default "";']
    for origin in origins:
        if not _ORIGIN.match(origin):
            raise EdgeConfigError(f"KUSH_CORS_ALLOWED_ORIGINS: not an origin: {origin!r}")
        lines.append(f'        "{origin}" $http_origin;')
    return "\n".join(lines), "add_header Vary Origin always;"


def _cdn_ranges(trusted: tuple[str, ...]) -> tuple[str, str]:
    """``set_real_ip_from`` lines and ``geo`` entries for proxies in front of the edge:
    the non-loopback entries of ``KUSH_TRUSTED_PROXIES``."""
    nets = [n for n in (ipaddress.ip_network(t) for t in trusted) if not n.is_loopback]
    if not nets:
        none = "# no proxy in front of the edge: clients connect to it directly"
        return f"    {none}", f"        {none}"
    real_ip = [f"    set_real_ip_from {n};" for n in nets]
    real_ip += ["    real_ip_header X-Forwarded-For;", "    real_ip_recursive on;"]
    return "\n".join(real_ip), "\n".join(f"        {n} 1;" for n in nets)


def _nofile() -> int:
    """Open files per worker: 65 536, or the hard limit nginx may raise itself to."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)


def _user_line(directory: Path) -> str:
    """nginx's ``user``: the owner of the edge directory when started as root (workers
    must read what the master created), nothing otherwise (nginx keeps its user)."""
    if os.geteuid() != 0:
        return "# not started as root: the workers run as the user who started nginx"
    st = directory.stat()
    return f"user {pwd.getpwuid(st.st_uid).pw_name} {grp.getgrgid(st.st_gid).gr_name};"


def substitute(text: str, values: dict[str, str]) -> str:
    """Replace every ``{{name}}``; an unknown name is an error, never left in place."""

    def one(match: re.Match[str]) -> str:
        name = match[1]
        if name not in values:
            raise EdgeConfigError(f"nginx template: unknown placeholder {{{{{name}}}}}")
        return values[name]

    return _PLACEHOLDER.sub(one, text)


def values_for(settings: Settings, directory: Path, access_log: str) -> dict[str, str]:
    """Every placeholder's value."""
    cors_map, cors_vary = _cors(settings.cors_allowed_origins)
    real_ip, cdn_ranges = _cdn_ranges(settings.trusted_proxies)
    return {
        "user": _user_line(directory),
        "nofile": str(_nofile()),
        "edge_dir": str(directory),
        "access_log": access_log,
        "listen": _hostport(settings.host, settings.edge_port),
        "tls_listen": _hostport(settings.host, settings.edge_tls_port),
        "gateway_servers": _upstream_servers(settings),
        "usage_log": _usage_log(settings),
        "usage_format": f"'{USAGE_LOG_FORMAT}'",
        "max_body_bytes": str(settings.max_body_bytes),
        "cache_max_mb": str(settings.edge_cache_max_mb),
        "auth_rate": str(settings.edge_auth_rate),
        "auth_burst": str(settings.edge_auth_rate * 2),
        "start_rate": str(settings.edge_start_rate),
        "start_burst": str(settings.edge_start_rate * 2),
        "cors_map": cors_map,
        "cors_vary": cors_vary,
        "real_ip": real_ip,
        "cdn_ranges": cdn_ranges,
        "geo_header": settings.geo_header,
        "region_header": settings.region_header,
        "geo_var": _header_var(settings.geo_header, "KUSH_GEO_HEADER"),
        "region_var": _header_var(settings.region_header, "KUSH_REGION_HEADER"),
        "tls_cert": str(settings.edge_tls_cert or _TLS_SAMPLE["tls_cert"]),
        "tls_key": str(settings.edge_tls_key or _TLS_SAMPLE["tls_key"]),
    }


def _tls_block(settings: Settings, rendered: str) -> str:
    """The TLS server, active when a certificate is configured, else commented out."""
    if settings.edge_tls_cert is not None:
        return "\n".join(f"    {line}" if line else "" for line in rendered.splitlines())
    head = [
        "    # TLS is off: set KUSH_EDGE_TLS_CERT and KUSH_EDGE_TLS_KEY (and",
        "    # KUSH_EDGE_TLS_PORT, default 8443) and this server is rendered active:",
    ]
    body = [f"    # {line}" if line else "    #" for line in rendered.splitlines()]
    return "\n".join(head + body)


def render(
    settings: Settings, *, access_log: str | None = None, templates: Path | None = None
) -> EdgeConfig:
    """Write the edge configuration for ``settings``; returns where it is."""
    source = templates or settings.edge_templates or template_dir()
    directory = edge_dir(settings)
    for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi", "logs"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    for sub in ("cache/segments", "cache/auth"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    log_path = access_log or str(directory / "logs" / "access.log")
    values = values_for(settings, directory, log_path)
    texts = {name: (source / f"{name}.template").read_text() for name in TEMPLATES}
    values["tls_server"] = _tls_block(settings, substitute(texts["kush-edge-tls.conf"], values))
    for name, text in texts.items():
        if name == "kush-edge-tls.conf":
            continue  # inlined into the main file
        (directory / name).write_text(substitute(text, values))
    return EdgeConfig(directory=directory, conf=directory / MAIN)


def nginx_command(nginx: str, config: EdgeConfig, *, test: bool = False) -> list[str]:
    """The nginx command line for a rendered configuration (``-t`` to only test it)."""
    cmd = [nginx, "-p", str(config.directory), "-c", str(config.conf), "-e", "stderr"]
    return [*cmd, "-t", "-q"] if test else cmd


def check(nginx: str, config: EdgeConfig, *, timeout_s: float = 30) -> tuple[bool, str]:
    """``nginx -t`` on a rendered configuration: (passed, what nginx said)."""
    proc = subprocess.run(  # noqa: S603 - our own binary and paths
        nginx_command(nginx, config, test=True),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()
