"""The shared session of the vendor clients (pipeline/clients/http.py)."""


def test_without_a_proxy_the_environment_is_read_once_not_per_request(monkeypatch):
    from pipeline.clients.http import new_session

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    session = new_session()
    assert session.trust_env is False and session.verify == "/etc/ssl/certs/ca-certificates.crt"


def test_with_a_proxy_requests_keeps_reading_the_environment(monkeypatch):
    from pipeline.clients.http import new_session

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    session = new_session()
    assert session.trust_env is True
    settings = session.merge_environment_settings("https://api.rokt.test/x", {}, None, None, None)
    assert settings["proxies"]["https"] == "http://proxy.internal:3128"
