# C types for _core/swim.py (Cython pure-Python mode): the .py holds all the logic and
# runs as is without Cython; this file only says what is typed. Public entry points stay
# `def` (readable tracebacks, profiles by name); internal steps are `cdef`.
cimport cython

from _core.broadcast cimport TransmitLimitedQueue

cdef object _Ping, _IndirectPing, _Ack, _Nack, _Suspect, _Alive, _Dead, _User
cdef double _NEVER
cdef bytes _V4_MAPPED
cdef dict _IP_CACHE
cdef int _T_PROBE_TICK, _T_GOSSIP_TICK, _T_PUSH_PULL, _T_PROBE_TIMEOUT, _T_PROBE_DEADLINE
cdef int _T_TCP_GRACE, _T_RELAY_EXPIRE, _T_SUSPICION

cdef double _INV_LN10
cpdef double go_log10(double x) except? -1.0
cpdef double suspicion_timeout(int suspicion_mult, Py_ssize_t n, double interval) except? -1.0
cpdef double remaining_suspicion_time(int n, int k, double elapsed, double min_,
                                      double max_) except? -1.0
cpdef double push_pull_scale(double interval, Py_ssize_t n) except? -1.0
cdef double _next_tick(double due, double interval, double now) except? -1.0


cdef class Member:
    cdef public str name
    cdef public bytes addr
    cdef public int port
    cdef public bytes meta
    cdef public long long incarnation
    cdef public int state
    cdef public double state_change
    cdef public bytes vsn
    cdef public tuple udp


cdef class SwimStats:
    cdef public long long packets_in, packets_out, malformed, malformed_parts, unknown_msgs
    cdef public long long probes, probe_failures, acks, nacks, nacks_sent, indirect_pings
    cdef public long long indirect_relayed, tcp_pings, suspects_raised, dead_declared, refutes
    cdef public long long push_pulls, push_pull_failures, push_pulls_served, gossip_packets
    cdef public long long conflicts, wrong_node_pings, bad_alive, last_pings, last_ping_saves


cdef class _Timer:
    cdef public int kind
    cdef public object obj
    cdef public bint cancelled


cdef class _Probe:
    cdef public long long seq
    cdef public Member node
    cdef public str name
    cdef public long long incarnation
    cdef public int state
    cdef public double sent, deadline
    cdef public int phase, expected_nacks, nacks
    cdef public long long tcp_req
    cdef public bint tcp_ok, done
    cdef public list timers


cdef class _Relay:
    cdef public long long seq, req_seq
    cdef public tuple requester
    cdef public str source_node
    cdef public bint nack, done


cdef class _Suspicion:
    cdef public str node
    cdef public int k, n
    cdef public double min, max, start, change_time
    cdef public set confirmations
    cdef public _Timer timer
    cdef public long long last_seq


cdef class _Join:
    cdef public int pending, successes
    cdef public list errors


cdef class SwimNode:
    cdef readonly object cfg
    cdef readonly str name
    cdef readonly Member local
    cdef readonly SwimStats stats
    cdef bytes _addr
    cdef int _port
    cdef object _rng
    cdef bint _null_delegate, _delegate_broadcasts
    cdef object _delegate
    cdef object _keyring, _nonce_source
    cdef object _encode_message, _encode_packet, _decode_packet, _encode_stream
    cdef bytes _stream_label
    cdef bint _encrypt_out, _lifeguard
    cdef bytes _vsn
    cdef int _packet_room, _gossip_room
    cdef readonly list _nodes
    cdef readonly dict _node_map
    cdef Py_ssize_t _probe_index
    cdef long long _seq
    cdef long long _incarnation
    cdef public int _awareness
    cdef bint _leaving, _gossip_dead
    cdef readonly bint _leave_notified
    cdef readonly TransmitLimitedQueue _broadcasts
    cdef readonly dict _acks
    cdef readonly dict _suspicions
    cdef readonly list _timers
    cdef long long _timer_seq
    cdef object _probe
    cdef bint _probe_pending, _push_pull_inflight
    cdef dict _streams
    cdef long long _next_req
    cdef dict _joins
    cdef long long _next_join
    cdef list _packets, _stream_out, _events

    cdef _Timer _at(self, double due, int kind, object obj)
    cdef long long _next_seq(self) except -1
    cdef object _nonce(self)
    @cython.locals(crc=bint, i=Py_ssize_t)
    cdef void _raw_send(self, tuple dest, list parts, Member node) except *
    cdef void _send_msg(self, tuple dest, bytes msg) except *
    @cython.locals(used=Py_ssize_t, avail=Py_ssize_t)
    cdef list _get_broadcasts(self, int overhead, Py_ssize_t limit)
    cdef void _broadcast(self, str name, object msg, object finished=*) except *
    cdef bytes _stream_bytes(self, object msg, bint outbound)
    cdef long long _request_stream(self, tuple addr, bytes payload, double timeout, str kind,
                                   str ctx_kind, object ctx) except -1
    @cython.locals(n=Py_ssize_t, offset=Py_ssize_t)
    cdef void _insert_node(self, Member node) except *
    @cython.locals(node=Member, keep=list)
    cdef void _reset_nodes(self, double now) except *
    @cython.locals(node=Member)
    cdef bint _any_alive(self) except -1
    @cython.locals(n=Py_ssize_t, node=Member, out=list)
    cdef list _k_random_alive(self, int k, str exclude)
    @cython.locals(n=Py_ssize_t, node=Member, out=list, st=int, dead_time=double)
    cdef list _k_random_gossip(self, int k, double now)
    @cython.locals(node=Member)
    cdef void _gossip(self, double now) except *
    cdef void _push_pull(self, double now) except *
    @cython.locals(n=Member)
    cdef object _local_push_pull(self, bint join)
    @cython.locals(num_check=Py_ssize_t, node=Member, nodes=list)
    cdef void _probe_round(self, double now) except *
    @cython.locals(interval=double, probe=_Probe)
    cdef void _probe_node(self, Member node, double now) except *
    cdef void _on_probe_timeout(self, _Probe probe, double now) except *
    @cython.locals(node=Member, peer=Member, nack=bint, remaining=double)
    cdef void _start_indirect(self, _Probe probe, double now) except *
    cdef void _on_probe_deadline(self, _Probe probe, double now) except *
    cdef void _on_tcp_ping_result(self, _Probe probe, object reply, double now) except *
    @cython.locals(t=_Timer, delta=int)
    cdef void _finish_probe(self, _Probe probe, double now, bint ok, bint tcp_only=*) except *
    @cython.locals(score=int, hi=int)
    cpdef void _apply_awareness(self, int delta) except *
    cdef void _handle_ping(self, object p, tuple src, double now) except *
    @cython.locals(port=int, relay=_Relay)
    cdef void _handle_indirect_ping(self, object ind, tuple src, double now) except *
    cdef void _on_relay_expired(self, _Relay relay, double now) except *
    @cython.locals(probe=_Probe, relay=_Relay)
    cdef void _handle_ack(self, object ack, tuple src, double now) except *
    @cython.locals(probe=_Probe)
    cdef void _handle_nack(self, object nack, tuple src, double now) except *
    cdef void _handle_alive(self, object a, tuple src, double now) except *
    @cython.locals(state=Member, other=Member, susp=_Suspicion, updates_node=bint,
                   is_local=bint, old_state=int, can_reclaim=bint, reclaim=double)
    cdef void _alive_node(self, object a, double now, bint bootstrap, object finished) except *
    @cython.locals(state=Member, susp=_Suspicion, k=int, n=Py_ssize_t, min_=double,
                   max_=double)
    cdef void _suspect_node(self, object s, double now) except *
    @cython.locals(remaining=double)
    cdef bint _confirm(self, _Suspicion susp, str from_, double now) except -1
    @cython.locals(state=Member, seq=cython.longlong)
    cdef void _on_suspicion_timeout(self, _Suspicion susp, double now) except *
    @cython.locals(state=Member)
    cdef void _on_last_ping_ack(self, _Suspicion susp, double now) except *
    @cython.locals(state=Member, susp=_Suspicion)
    cdef void _dead_node(self, object d, double now) except *
    @cython.locals(inc=cython.longlong)
    cdef void _refute(self, Member me, long long accused_inc) except *
    cdef object _merge_remote_state(self, bint join, list states, object user_state,
                                    double now)
    @cython.locals(maxpmin=int, maxdmin=int, minpmax=int, mindmax=int, pcur=int, dcur=int,
                   v=bytes)
    cdef object _verify_protocol(self, list remote)
    @cython.locals(kind=int, probe=_Probe)
    cdef void _fire(self, _Timer t, double due, double now) except *
