"""The nginx edge's configuration as rendered from the settings (no nginx needed; the
integration tests run `nginx -t` and real traffic on it)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from kush import edge
from runtime.settings import Settings


def render(tmp_path: Path, **changes: object) -> dict[str, str]:
    settings = dataclasses.replace(Settings(data_dir=tmp_path), **changes)  # type: ignore[arg-type]
    config = edge.render(settings)
    return {p.name: p.read_text() for p in config.directory.glob("*.conf")}


def location(text: str, opening: str) -> str:
    """The body of one location block (no nested braces but `if`)."""
    start = text.index(opening)
    depth, i = 0, text.index("{", start)
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i : j + 1]
    raise AssertionError(f"unclosed {opening}")


def test_segment_cache_key_leaves_the_token_out_and_auth_comes_first(tmp_path: Path) -> None:
    files = render(tmp_path)
    segments = location(files["kush-edge-locations.conf"], "location /hls/ {")
    keys = re.findall(r"proxy_cache_key\s+([^;]+);", segments)
    assert keys == ['"$uri|$slice_range"']
    for token_bearing in ("$arg", "$args", "$query_string", "$request_uri", "$is_args"):
        assert token_bearing not in keys[0]
    assert "auth_request /_edge/auth;" in segments
    assert "proxy_cache kush_segments;" in segments
    assert "slice 1m;" in segments
    assert "proxy_cache_lock on;" in segments
    assert "proxy_cache_use_stale error" in segments
    # the auth answers are keyed by the whole request line: path and token
    auth = location(files["kush-edge-locations.conf"], "location = /_edge/auth {")
    assert "internal;" in auth
    assert re.findall(r"proxy_cache_key\s+([^;]+);", auth) == ['"$request_uri"']
    assert re.search(r"proxy_cache_valid 204 [12]s;", auth)


def test_segments_report_their_bytes_in_udp_log_lines(tmp_path: Path) -> None:
    files = render(tmp_path)
    locations, main = files["kush-edge-locations.conf"], files["kush-edge.conf"]
    segments = location(locations, "location /hls/ {")
    # one syslog line to the gateway's usage port per segment GET answered 200/206
    assert (
        "access_log syslog:server=127.0.0.1:8089,tag=kush_usage,nohostname kush_usage "
        "if=$kush_usage_sent;" in segments
    )
    assert "log_format kush_usage '$status $body_bytes_sent $remote_addr $request_uri';" in main
    sent = location(main, 'map "$request_method $status" $kush_usage_sent {')
    assert '"GET 200" 1;' in sent
    assert '"GET 206" 1;' in sent
    assert "default 0;" in sent
    # the location's own access_log replaces the inherited one: the JSON log is kept
    assert "kush_json buffer=64k" in segments
    # the requests it forwards are marked so the gateway does not count them again
    assert "proxy_set_header X-Kush-Edge-Metered 1;" in segments
    # no per-request report any more, nor the variables it needed for the log
    for gone in ("post_action", "@kush_usage", "_edge/usage", "$kush_seg_", "$kush_log_"):
        assert gone not in locations + main, gone
    # the usage port follows the setting and the gateway's address
    other = render(tmp_path, host="::", edge_usage_port=9999)["kush-edge-locations.conf"]
    assert "syslog:server=[::1]:9999," in other
    away = render(tmp_path, edge_upstream=("gateway:8080", "10.0.0.7:8080"))
    assert "syslog:server=gateway:8089," in away["kush-edge-locations.conf"]
    with pytest.raises(edge.EdgeConfigError, match="KUSH_EDGE_USAGE_PORT"):
        render(tmp_path, edge_usage_port=0)


def test_playlists_are_never_cached(tmp_path: Path) -> None:
    files = render(tmp_path)
    playlists = location(files["kush-edge-locations.conf"], r"location ~ ^/hls/.+\.m3u8$ {")
    assert "proxy_cache off;" in playlists
    assert "auth_request" not in playlists
    assert "proxy_cache_valid" not in playlists


def test_every_proxying_location_sends_the_security_headers(tmp_path: Path) -> None:
    text = render(tmp_path)["kush-edge-locations.conf"]
    blocks = re.findall(r"^location [^{]+\{", text, flags=re.M)
    for opening in blocks:
        body = location(text, opening)
        if "kush-edge-proxy.conf" in body and "internal;" not in body:
            assert "kush-edge-headers.conf" in body, opening


def test_tls_server_is_commented_out_without_a_certificate(tmp_path: Path) -> None:
    main = render(tmp_path)["kush-edge.conf"]
    assert "ssl_certificate" in main
    assert not re.search(r"^\s*ssl_certificate", main, flags=re.M)
    assert not re.search(r"^\s*listen .* ssl", main, flags=re.M)
    active = render(
        tmp_path, edge_tls_cert=Path("/etc/tls/c.pem"), edge_tls_key=Path("/etc/tls/k.pem")
    )["kush-edge.conf"]
    assert re.search(r"^\s*ssl_certificate /etc/tls/c.pem;", active, flags=re.M)
    assert re.search(r"^\s*listen 127.0.0.1:8443 ssl", active, flags=re.M)


def test_ports_paths_and_upstream(tmp_path: Path) -> None:
    main = render(tmp_path, host="0.0.0.0", gateway_port=9001, edge_port=9002)["kush-edge.conf"]
    assert "listen 0.0.0.0:9002 " in main
    assert "server 127.0.0.1:9001 " in main  # a wildcard listener is reached on loopback
    assert "keepalive 64;" in main
    elsewhere = render(tmp_path, edge_upstream=("gateway:8080", "10.0.0.7:8080"))
    assert "server gateway:8080 max_fails=0;" in elsewhere["kush-edge.conf"]
    assert "server 10.0.0.7:8080 max_fails=0;" in elsewhere["kush-edge.conf"]
    edge_dir = str((tmp_path / "edge").resolve())
    for line in main.splitlines():
        m = re.match(
            r"\s*(pid|client_body_temp_path|proxy_temp_path|proxy_cache_path)\s+(\S+)", line
        )
        if m:
            assert m[2].startswith(edge_dir), line


def test_real_ip_and_geo_only_from_proxies_in_front(tmp_path: Path) -> None:
    alone = render(tmp_path, trusted_proxies=edge.LOOPBACK)["kush-edge.conf"]
    assert "set_real_ip_from" not in alone.replace("# no proxy", "")
    behind = render(tmp_path, trusted_proxies=(*edge.LOOPBACK, "173.245.48.0/20"))["kush-edge.conf"]
    assert "set_real_ip_from 173.245.48.0/20;" in behind
    assert "set_real_ip_from 127.0.0.1" not in behind
    assert "173.245.48.0/20 1;" in behind
    assert '"$kush_from_cdn:$http_cf_ipcountry"' in behind


def test_cors_allow_list(tmp_path: Path) -> None:
    files = render(tmp_path, cors_allowed_origins=("https://kushfilms.example",))
    assert '"https://kushfilms.example" $http_origin;' in files["kush-edge.conf"]
    assert 'default "*"' not in files["kush-edge.conf"]
    assert "add_header Vary Origin always;" in files["kush-edge-cors.conf"]
    assert 'default "*";' in render(tmp_path)["kush-edge.conf"]


@pytest.mark.parametrize(
    "changes",
    [
        {"cors_allowed_origins": ('https://x.example" $evil;',)},
        {"geo_header": "CF IPCountry"},
        {"region_header": "X-Region;"},
    ],
)
def test_unsafe_values_are_refused(tmp_path: Path, changes: dict[str, object]) -> None:
    with pytest.raises(edge.EdgeConfigError):
        render(tmp_path, **changes)


def test_unknown_placeholder_is_an_error(tmp_path: Path) -> None:
    assert edge.substitute("a {{x}} b", {"x": "1"}) == "a 1 b"
    with pytest.raises(edge.EdgeConfigError, match="nope"):
        edge.substitute("{{nope}}", {})


def test_every_placeholder_is_filled(tmp_path: Path) -> None:
    for name, text in render(tmp_path).items():
        assert "{{" not in text, name


def test_trusting_the_edge() -> None:
    assert not edge.gateway_trusts_edge(Settings())
    assert edge.gateway_trusts_edge(Settings(trusted_proxies=edge.LOOPBACK))
    assert edge.with_loopback_trusted(("10.0.0.0/8", "127.0.0.1/32")) == (
        "10.0.0.0/8",
        "127.0.0.1/32",
        "::1/128",
    )


def test_edge_settings() -> None:
    s = Settings.from_env({})
    assert (s.edge, s.edge_port, s.edge_tls_cert) == (False, 8088, None)
    s = Settings.from_env({"KUSH_EDGE": "1", "KUSH_EDGE_PORT": "9000"})
    assert (s.edge, s.edge_port) == (True, 9000)
    with pytest.raises(ValueError, match="KUSH_EDGE_PORT"):
        Settings.from_env({"KUSH_EDGE_PORT": "8080"})
    assert Settings.from_env({"KUSH_EDGE_UPSTREAM": "gateway:8080"}).edge_upstream == (
        "gateway:8080",
    )
    with pytest.raises(ValueError, match="KUSH_EDGE_UPSTREAM"):
        Settings.from_env({"KUSH_EDGE_UPSTREAM": "gateway"})
    with pytest.raises(ValueError, match="KUSH_EDGE_TLS"):
        Settings.from_env({"KUSH_EDGE_TLS_CERT": "/c.pem"})
