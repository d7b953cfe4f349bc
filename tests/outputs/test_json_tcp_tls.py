"""json_tcp over TLS against a real TLS listener with a CA and certificates made here: records
arrive; an unknown CA or another name is refused and the records stay in the spool, never
sent in clear text."""
from __future__ import annotations

import pytest

from ogrt.errors import ConfigError
from ogrt.outputs.base import OutputError
from ogrt.outputs.json_tcp import JsonTcpOutput
from tests.fixtures.server import end_msg, frame, start_msg
from tests.outputs.helpers import wait_for
from tests.outputs.tls import Authority, TlsListener


@pytest.fixture(scope="module")
def pki(tmp_path_factory):  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("pki")
    ca, other = Authority(base / "ca"), Authority(base / "other", "Another CA")
    return {"ca": ca, "other": other,
            "server": ca.issue("collector", ["collector.test", "127.0.0.1"]),
            "client": ca.issue("daemon", ["ogrt-daemon"], client=True),
            "rogue": other.issue("rogue", ["collector.test", "127.0.0.1"])}


def _outputs(port: int, ca_file, extra: str = "") -> str:  # type: ignore[no-untyped-def]
    return (f'[outputs.tcp]\ntype = "json_tcp"\nhost = "127.0.0.1"\nport = {port}\ntls = true\n'
            f'ca_file = "{ca_file}"\nbatch_records = 20\nflush_interval = 0.05\n'
            f'reconnect_max_seconds = 0.5\nconnect_timeout = 2\n{extra}')


def _send(srv, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    starts = [start_msg(pid=i, args=[b"secret-token-%d" % i]) for i in range(n)]
    srv.send_tcp(b"".join(frame(12, s) + frame(13, end_msg(uuid=s.uuid)) for s in starts))
    return [s.uuid.hex() for s in starts]


def _spool_depth(srv) -> float:  # type: ignore[no-untyped-def]
    return sum(v for k, v in srv.metrics().items()
               if k.startswith("ogrt_output_spool_depth{") and '"tcp"' in k)


def test_records_arrive_over_tls_with_a_client_certificate(ogrt_server, pki) -> None:
    cert, key = pki["client"]
    listener = TlsListener(pki["server"], client_ca=pki["ca"].ca_file)
    try:
        srv = ogrt_server(extra_outputs=_outputs(listener.port, pki["ca"].ca_file,
                                                 f'cert_file = "{cert}"\nkey_file = "{key}"\n'
                                                 'server_name = "collector.test"\n'))
        _send(srv, 30)
        wait_for(lambda: len(listener.received()) >= 60, timeout=30, what="records over TLS")
        assert srv.stop() == 0
        got = listener.received()
        assert got == srv.records(60)  # the same records, in order, as the jsonl output
        assert not listener.handshake_errors
    finally:
        listener.stop()


def test_a_listener_wanting_a_client_certificate_refuses_a_daemon_without_one(ogrt_server, pki) -> None:
    listener = TlsListener(pki["server"], client_ca=pki["ca"].ca_file)
    try:
        srv = ogrt_server(extra_outputs=_outputs(listener.port, pki["ca"].ca_file))
        _send(srv, 10)
        wait_for(lambda: _spool_depth(srv) >= 20, timeout=30, what="records spooled")
        assert srv.stop() == 0
        assert listener.received() == []
    finally:
        listener.stop()


def test_an_unknown_ca_is_refused_and_the_records_are_spooled_not_lost(ogrt_server, pki, tmp_path) -> None:
    rogue = TlsListener(pki["rogue"])  # a certificate of the right name from another CA
    state = tmp_path / "state"
    conf = f'[server]\nstate_dir = "{state}"\n'
    try:
        srv = ogrt_server(config_toml=conf, extra_outputs=_outputs(rogue.port, pki["ca"].ca_file))
        _send(srv, 10)
        wait_for(lambda: _spool_depth(srv) >= 20, timeout=30, what="records spooled")
        assert srv.stop() == 0
        assert "certificate verify failed" in srv.stderr_text()
        assert rogue.received() == [] and rogue.handshake_errors  # no byte of a record
        sent = srv.records(20)
    finally:
        rogue.stop()
    # the right collector comes up on that port's config: the spool is replayed to it, all of it
    good = TlsListener(pki["server"])
    try:
        srv2 = ogrt_server(config_toml=conf, extra_outputs=_outputs(good.port, pki["ca"].ca_file))
        wait_for(lambda: len(good.received()) >= 20, timeout=30, what="spool replayed over TLS")
        assert srv2.stop() == 0
        assert good.received() == sent
    finally:
        good.stop()


def test_nothing_goes_out_in_clear_text_to_a_peer_that_does_not_speak_tls(ogrt_server, pki) -> None:
    plain = TlsListener(None, plain_capture=True)
    try:
        srv = ogrt_server(extra_outputs=_outputs(plain.port, pki["ca"].ca_file))
        uuids = _send(srv, 5)
        wait_for(lambda: _spool_depth(srv) >= 10, timeout=30, what="records spooled")
        assert srv.stop() == 0
        assert plain.raw.startswith(b"\x16\x03")  # a TLS handshake record (ClientHello), only
        assert b"secret-token" not in plain.raw and b"node001" not in plain.raw
        assert not any(u.encode() in plain.raw for u in uuids)
    finally:
        plain.stop()


def _output(port: int, **options) -> JsonTcpOutput:  # type: ignore[no-untyped-def]
    opts = {"type": "json_tcp", "host": "127.0.0.1", "port": port, "tls": True, **options}
    return JsonTcpOutput("tcp", JsonTcpOutput.validate("tcp", opts))


def test_the_server_name_is_checked(pki) -> None:
    listener = TlsListener(pki["server"])  # names: collector.test, 127.0.0.1
    try:
        ca = str(pki["ca"].ca_file)
        wrong = _output(listener.port, ca_file=ca, server_name="elsewhere.test")
        with pytest.raises(OutputError, match="TLS refused.*(mismatch|match)"):
            wrong.open()
        for name in ("collector.test", ""):  # "": the host, 127.0.0.1
            ok = _output(listener.port, ca_file=ca, server_name=name)
            ok.open()
            ok.write([{"id": name or "ip", "event": "start"}])
            ok.close()
        wait_for(lambda: len(listener.received()) == 2, what="two records")
    finally:
        listener.stop()


def test_tls_keys_are_checked(pki, tmp_path) -> None:
    base = {"type": "json_tcp", "host": "127.0.0.1", "port": 9}
    with pytest.raises(ConfigError, match="outputs.t.ca_file: needs tls = true"):
        JsonTcpOutput.validate("t", {**base, "ca_file": str(pki["ca"].ca_file)})
    with pytest.raises(ConfigError, match="outputs.t.ca_file: cannot read"):
        JsonTcpOutput.validate("t", {**base, "tls": True, "ca_file": str(tmp_path / "none.pem")})
    with pytest.raises(ConfigError, match="outputs.t.key_file: needs cert_file"):
        JsonTcpOutput.validate("t", {**base, "tls": True, "key_file": str(pki["client"][1])})
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ConfigError, match="outputs.t: cannot load the TLS files"):
        JsonTcpOutput.validate("t", {**base, "tls": True, "ca_file": str(garbage)})
