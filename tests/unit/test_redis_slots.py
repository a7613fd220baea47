"""Redis Cluster: the keys one Lua script, one multi-key command or one transaction
touches together hash to one slot (runtime/redis.py says which hash tags group them).

Slots are computed with redis-py's ``key_slot`` (CRC16 of the hash tag, mod 16384),
cross-checked here against a CRC16/XMODEM written out from the cluster specification.
A scan of the source makes sure no script or transaction escapes these checks:
a new ``register_script``, ``MGET`` or ``transaction=True`` fails until it is listed.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.crc import key_slot

from gateway.ads.inventory import frequency_key
from runtime.redis import SHARD_CHARS, Keys, session_shard, user_shard
from tokens.segment import SESSION_ID_LENGTH, new_session_id
from tokens.service.login_guard import LoginGuard, LoginLimits
from tokens.service.session_endings import ended_key, networks_key, session_key, streams_key
from tokens.service.sessions import SessionStore, session_id_for

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tokens", "gateway", "admin", "runtime", "billing", "origin", "kush", "hls")
KEYS = Keys("kush:")


def crc16_slot(key: str) -> int:
    """The cluster specification's HASH_SLOT: CRC16 (XMODEM) of the hash tag (the text
    between the first ``{`` and the next ``}``, if not empty), mod 16384."""
    data = key.encode()
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc % 16384


def one_slot(*keys: str) -> bool:
    slots = {key_slot(k.encode()) for k in keys}
    assert slots == {crc16_slot(k) for k in keys}
    return len(slots) == 1


def test_crc16_matches_the_specification_example() -> None:
    # the cluster specification's test vector: CRC16("123456789") = 0x31C3
    assert crc16_slot("123456789") == 0x31C3 % 16384 == key_slot(b"123456789")
    assert crc16_slot("a{user1000}.following") == crc16_slot("b{user1000}.followers")


# ------------------------------------------------------------------ playback sessions


@given(user=st.uuids())
def test_session_scripts_touch_one_slot(user: uuid.UUID) -> None:
    """Every script and multi-key command of tokens/service/sessions.py and
    session_endings.py, with the keys it is given."""
    user_id = str(user)
    sid = session_id_for(user_id)
    streams = streams_key(KEYS, user_id)
    ps, ended, nets = (f(KEYS, sid) for f in (session_key, ended_key, networks_key))
    groups = {
        "_CREATE_LUA": (streams, ps),
        "_BEAT_LUA": (streams, ps, nets),
        "_REPRIME_LUA": (ps, ended, streams),
        "reads in _read_stored (pipelined GETs)": (ps, ended),
        "DEL in evict": (ps, nets),
    }
    for name, keys in groups.items():
        assert one_slot(*keys), name


def test_session_ids_lead_with_their_users_shard() -> None:
    for _ in range(200):
        user_id = str(uuid.uuid4())
        sid = session_id_for(user_id)
        assert len(sid) == SESSION_ID_LENGTH
        assert session_shard(sid) == user_shard(user_id)
        assert len(user_shard(user_id)) == SHARD_CHARS
    # 78 random bits remain: no repeats for one user
    assert len({session_id_for("u") for _ in range(2000)}) == 2000


def test_users_spread_over_the_slots() -> None:
    slots = {key_slot(streams_key(KEYS, str(uuid.uuid4())).encode()) for _ in range(5000)}
    assert len(slots) > 3000  # of 16 384: not a handful of hot slots


def test_keys_of_different_users_are_not_forced_together() -> None:
    a, b = (streams_key(KEYS, str(uuid.uuid4())) for _ in range(2))
    assert a != b


@pytest.mark.parametrize("lead", ["", "A", "Ab-", "Ab_9"])
def test_new_session_id_lead(lead: str) -> None:
    sid = new_session_id(lead=lead)
    assert sid.startswith(lead)
    assert re.fullmatch(r"[A-Za-z0-9_-]{16}", sid)


@pytest.mark.parametrize("lead", ["abcde", "a{", "a/b", "é"])
def test_new_session_id_refuses_a_bad_lead(lead: str) -> None:
    with pytest.raises(ValueError, match="lead"):
        new_session_id(lead=lead)


# ------------------------------------------------------------------ the rest


def test_login_guard_account_keys_share_a_slot() -> None:
    guard = LoginGuard(None, KEYS, LoginLimits())  # type: ignore[arg-type]  # keys only
    account, address = "0123456789abcdef01234567", "203.0.113.7"
    pair = f"{account}:{address}"
    deleted = (
        guard._key(account, "login-fail", "pair", pair),
        guard._key(account, "login-lock", "pair", pair),
        guard._key(account, "login-fail", "acct", account),
        guard._key(account, "login-lock", "acct", account),
    )
    assert one_slot(*deleted, guard._key(account, "login-known", account))


@given(user=st.uuids(), campaigns=st.lists(st.uuids(), min_size=2, max_size=20))
def test_frequency_counters_of_a_viewer_share_a_slot(
    user: uuid.UUID, campaigns: list[uuid.UUID]
) -> None:
    """Inventory.counts reads them with one MGET."""
    keys = [frequency_key(KEYS, str(user), str(c), "20261130") for c in campaigns]
    assert one_slot(*keys)


def test_keys_refuse_braces_outside_the_tag() -> None:
    with pytest.raises(ValueError, match="braces"):
        Keys("kush{x}:")
    with pytest.raises(ValueError, match="braces"):
        KEYS.tagged("a}b", "x")
    assert KEYS.tagged("u:abc", "streams", "1") == "kush:{u:abc}:streams:1"


# ------------------------------------------------------------------ nothing unlisted

#: every register_script in the code, each covered above
SCRIPTS = {"_CREATE_LUA", "_BEAT_LUA", "_REPRIME_LUA"}
#: every file with an MGET, each covered above
MGET_FILES = {"gateway/ads/inventory.py"}


def _sources() -> dict[str, str]:
    return {
        str(path.relative_to(ROOT)): path.read_text()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
    }


def test_every_script_and_multi_key_read_is_covered() -> None:
    sources = _sources()
    scripts = {
        m[1] for text in sources.values() for m in re.finditer(r"register_script\((\w+)\)", text)
    }
    assert scripts == SCRIPTS
    assert {name for name, text in sources.items() if ".mget(" in text} == MGET_FILES
    for name, text in sources.items():
        # no Redis transactions (MULTI/EXEC, WATCH) and no script run inline by EVAL:
        # each would need its keys listed here
        assert "transaction=True" not in text, name
        assert not re.search(r"(redis|pipe)\.(multi|watch|eval|evalsha)\(", text), name
        assert not re.search(r"pipeline\(\s*\)", text), name  # redis-py's default: MULTI


async def test_ending_a_session_id_from_a_url_that_is_no_session_id() -> None:
    """DELETE /v1/playback/{id} passes the id as typed: braces (or anything else that is
    not a session id) answer "no such session" before any key is built or sent."""
    redis = Redis()  # connects lazily: nothing may reach it
    store = SessionStore(None, redis, KEYS)  # type: ignore[arg-type]  # no PostgreSQL either
    for bad in ("ab{c}defghijklmn", "{u:x}", "", "x" * 17):
        assert await store.end(bad, reason="stopped", user_id=str(uuid.uuid4())) is False
    await redis.aclose()
