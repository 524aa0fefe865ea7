"""The Serf layer on the simulator: statuses (alive, left vs failed), intents, user events,
queries and key rotation across many SWIM nodes on a virtual clock."""
from __future__ import annotations

import random

from _core.keyring import Keyring
from agent.serf import codec
from agent.serf.core import (STATUS_ALIVE, STATUS_FAILED, STATUS_LEFT, KeyringChanged, SerfConfig,
                             SerfCore, UserEvent)
from agent.sim.cluster import SIM_PORT, SimCluster, sim_address


def serf_cluster(n: int, seed: int, keyring=None):
    serfs: dict[str, SerfCore] = {}
    rng = random.Random(seed)

    def factory(name: str) -> SerfCore:
        idx = int(name.split("-")[1])
        serfs[name] = SerfCore(SerfConfig(), name, sim_address(idx)[0], SIM_PORT,
                               {"role": "node", "idx": str(idx)}, random.Random(rng.getrandbits(64)),
                               0.0, keyring=keyring)
        return serfs[name]

    c = SimCluster(n, seed, delegate_factory=factory, keyring=keyring)   # nodes join node 0
    for node in c.nodes:
        serfs[node.name].attach(node.swim)
    return c, serfs


def statuses(serf: SerfCore) -> dict[str, int]:
    return {name: mem.status for name, mem in serf.members.items()}


def test_members_are_alive_and_tags_travel():
    c, serfs = serf_cluster(40, seed=11)
    c.run_until(lambda: all(len(s.members) == 40 and set(statuses(s).values()) == {STATUS_ALIVE}
                            for s in serfs.values()), within=30)
    some = serfs["node-0007"].members["node-0033"]
    assert some.tags == {"role": "node", "idx": "33"}
    assert (some.pmin, some.pmax, some.dmin, some.dmax) == (1, 5, 2, 5)


def test_graceful_leave_is_left_and_a_crash_is_failed():
    c, serfs = serf_cluster(20, seed=12)
    c.run_for(5)
    leaver, victim = "node-0005", "node-0009"
    serfs[leaver].leave(c.now)
    c.run_for(2)                         # the leave intent spreads first, as Serf waits for it
    c.leave(leaver)
    c.kill(victim)
    others = [s for name, s in serfs.items() if name not in (leaver, victim)]
    c.run_until(lambda: all(s.members[leaver].status == STATUS_LEFT and
                            s.members[victim].status == STATUS_FAILED for s in others),
                within=c.bounds.detect_and_spread() + 10)


def test_user_event_reaches_everyone_exactly_once():
    c, serfs = serf_cluster(30, seed=13)
    c.run_for(3)
    serfs["node-0001"].user_event("deploy", b"v42", False, c.now)
    got: dict[str, list] = {name: [] for name in serfs}

    def collect() -> bool:
        for name, s in serfs.items():
            got[name] += [e for e in s.drain_events() if isinstance(e, UserEvent)]
        return all(len(v) >= 1 for v in got.values())

    c.run_until(collect, within=20)
    c.run_for(10)
    collect()
    assert all(len(v) == 1 and v[0].name == "deploy" and v[0].payload == b"v42"
               for v in got.values())


def test_key_rotation_by_queries():
    k1, k2 = b"a" * 32, b"b" * 16
    # one keyring object per node, as each agent has its own
    rings: dict[str, Keyring] = {}
    c, serfs = serf_cluster(8, seed=14, keyring=None)
    for name, s in serfs.items():
        rings[name] = s.keyring = Keyring([k1])
    c.run_for(5)
    origin = serfs["node-0000"]
    q = origin.query("_serf_install-key", codec.encode_key_request(k2), c.now)
    c.run_until(lambda: len(q.responses) == 8, within=10)
    assert all(codec.decode_key_response(r)["Result"] for r in q.responses.values())
    assert all(k2 in r.keys for r in rings.values())
    changed = [e for s in serfs.values() for e in s.drain_events() if isinstance(e, KeyringChanged)]
    assert len(changed) == 8
    q = origin.query("_serf_use-key", codec.encode_key_request(k2), c.now)
    c.run_until(lambda: len(q.responses) == 8, within=10)
    assert all(r.primary == k2 for r in rings.values())
    q = origin.query("_serf_remove-key", codec.encode_key_request(k2), c.now)
    c.run_until(lambda: len(q.responses) == 8, within=10)
    answers = [codec.decode_key_response(r) for r in q.responses.values()]
    assert not any(a["Result"] for a in answers)          # the primary cannot be removed
    q = origin.query("_serf_list-keys", b"", c.now)
    c.run_until(lambda: len(q.responses) == 8, within=10)
    keys = [codec.decode_key_response(r) for r in q.responses.values()]
    assert all(len(a["Keys"]) == 2 and a["Result"] for a in keys)


def test_coalesced_user_events_deliver_the_newest_of_a_burst():
    c, serfs = serf_cluster(10, seed=15)
    c.run_for(3)
    origin = serfs["node-0002"]
    for i in range(5):
        origin.user_event("config", f"v{i}".encode(), True, c.now)
        c.run_for(0.1)
    got: dict[str, list] = {name: [] for name in serfs}

    def tick_and_collect() -> bool:
        for name, s in serfs.items():
            s.tick(c.now)                  # the driver ticks Serf at its deadlines
            got[name] += [e for e in s.drain_events() if isinstance(e, UserEvent)]
        return all(got.values())

    c.run_until(tick_and_collect, within=10)
    c.run_for(5)
    tick_and_collect()
    assert all([e.payload for e in v] == [b"v4"] for v in got.values()), got


def test_name_conflict_is_resolved_by_a_vote():
    """Serf's resolveNodeConflict: the node memberlist reports a name conflict to asks everyone
    (`_serf_conflict` query) who holds its name; with a majority for its own address it stays,
    without one it is the impostor and gets ConflictResolved(majority=False) (the driver then
    leaves the pool)."""
    from types import SimpleNamespace

    from agent.serf.core import ConflictResolved
    c, serfs = serf_cluster(12, seed=21)
    c.run_until(lambda: all(len(s.members) == 12 for s in serfs.values()), within=30)
    me = serfs["node-0003"]
    impostor = SimpleNamespace(name="node-0003", addr=bytes((10, 9, 9, 9)), port=SIM_PORT)

    def verdict(serf) -> ConflictResolved:
        got = []

        def done() -> bool:
            serf.tick(c.now)                 # query deadlines (this cluster ticks no delegates)
            got.extend(e for e in serf.drain_events() if isinstance(e, ConflictResolved))
            return bool(got)
        c.run_until(done, within=10, check_every=0.05)
        return got[0]

    me.drain_events()
    me.notify_conflict(SimpleNamespace(name="node-0003"), impostor, c.now)
    ours = verdict(me)
    assert ours.majority and ours.matching == ours.responses == 11

    # the same vote counted by an impostor: everyone knows another address for the name
    # (the answers still reach us: the query went out with our real address)
    me.notify_conflict(SimpleNamespace(name="node-0003"), impostor, c.now)
    me.addr = "10.9.9.9"
    theirs = verdict(me)
    assert not theirs.majority and theirs.matching == 0 and theirs.responses == 11
