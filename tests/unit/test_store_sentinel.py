"""Sentinel REDIS_URLs (pipeline/infra/redis_clients.py): parsed, refused with a message naming the problem,
and handed to kombu and RedBeat in their own forms."""

from __future__ import annotations

import pytest
import redis

from pipeline.infra.redis_clients import (
    SentinelURL,
    celery_redis_options,
    is_sentinel_url,
    make_client,
    parse_sentinel_url,
    redis_location,
)


def test_a_sentinel_url_names_the_sentinels_master_database_and_passwords():
    url = "redis+sentinel://:p%40ss@s1:26380,s2,[::1]:26381/rsf/2?sentinel_password=sp"
    assert parse_sentinel_url(url) == SentinelURL(
        sentinels=(("s1", 26380), ("s2", 26379), ("::1", 26381)),
        master="rsf",
        db=2,
        password="p@ss",
        sentinel_password="sp",
    )
    assert parse_sentinel_url("redis+sentinel://s1/rsf").db == 0
    assert is_sentinel_url(url) and not is_sentinel_url("redis://127.0.0.1:6379/0")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://s1:26379", "name the Sentinel master"),
        ("redis+sentinel://s1:26379/", "name the Sentinel master"),
        ("redis+sentinel:///rsf/0", "at least one host"),
        ("redis+sentinel://s1,,s2/rsf", "at least one host"),
        ("redis+sentinel://s1:port/rsf", "bad Sentinel address 's1:port'"),
        ("redis+sentinel://s1:70000/rsf", "bad Sentinel address"),
        ("redis+sentinel://s1/rsf/zero", "database must be a number"),
        ("redis+sentinel://s1/rsf/0/1", "the path is /<master>/<db>"),
        ("redis+sentinel://s1/rsf/0?ssl_ca_certs=/x", "takes only ?sentinel_password="),
        ("rediss+sentinel://s1/rsf/0", "Sentinel with TLS"),
    ],
)
def test_a_bad_sentinel_url_is_refused_naming_the_problem(url, message):
    with pytest.raises(ValueError, match="REDIS_URL") as caught:
        parse_sentinel_url(url)
    assert message in str(caught.value)


def test_kombu_and_redbeat_get_the_same_sentinels_in_their_own_forms():
    options = celery_redis_options("redis+sentinel://:pw@s1:26379,s2:26380/rsf/3")
    assert options["broker_url"] == "sentinel://:pw@s1:26379/3;sentinel://:pw@s2:26380/3"
    assert options["transport_options"] == {"master_name": "rsf"}
    assert options["redbeat_url"].startswith("redis-sentinel://")
    redbeat = options["redbeat_options"]
    assert redbeat["sentinels"] == [("s1", 26379), ("s2", 26380)]
    assert (redbeat["service_name"], redbeat["db"], redbeat["password"]) == ("rsf", 3, "pw")
    with_sentinel_auth = celery_redis_options("redis+sentinel://s1/rsf?sentinel_password=sp")
    assert with_sentinel_auth["transport_options"]["sentinel_kwargs"] == {"password": "sp"}
    assert with_sentinel_auth["redbeat_options"]["sentinel_kwargs"] == {"password": "sp"}


def test_a_plain_url_is_handed_on_as_it_is():
    url = "redis://:pw@127.0.0.1:6379/1"
    assert celery_redis_options(url) == {
        "broker_url": url,
        "transport_options": {},
        "redbeat_url": url,
        "redbeat_options": {},
    }


def test_the_location_of_a_sentinel_url_shows_no_password():
    text = redis_location("redis+sentinel://:secret@s1,s2:26380/rsf/1?sentinel_password=other")
    assert text == "redis+sentinel://s1:26379,s2:26380/rsf/1"
    assert "secret" not in text and "other" not in text


def test_a_sentinel_client_finds_no_master_where_no_sentinel_answers():
    client = make_client("redis+sentinel://127.0.0.1:1/rsf/0", socket_connect_timeout=0.2)
    assert isinstance(client.connection_pool, redis.sentinel.SentinelConnectionPool)
    with pytest.raises(redis.ConnectionError):  # MasterNotFoundError is one
        client.ping()
