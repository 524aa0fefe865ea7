# C types for _core/broadcast.py (Cython pure-Python mode): the .py holds all the logic
# and runs as is without Cython; this file only says what is typed.
cimport cython

cdef int _ID_BITS, _LEN_BITS, _TIER_SHIFT
cdef long long _TIER_MAX, _ID_MAX, _LEN_MAX


cpdef int retransmit_limit(int retransmit_mult, Py_ssize_t n) except -1


cdef class Broadcast:
    cdef readonly bytes msg
    cdef readonly object name
    cdef public object finished
    cdef public object invalidates
    cdef public long long transmits
    cdef public long long id
    cdef public unsigned long long key


cdef void _finish(Broadcast b) except *


@cython.locals(n=cython.longlong, t=cython.ulonglong, k=cython.ulonglong)
cdef unsigned long long _key(Broadcast b) except? 0


cdef class TransmitLimitedQueue:
    cdef public int retransmit_mult
    cdef public object num_nodes
    cdef list _keys
    cdef list _items
    cdef dict _named
    cdef public long long _id_gen
    cdef void _add(self, Broadcast b) except *
    @cython.locals(keys=list, items=list, transmit_limit=int, used=Py_ssize_t, out=list,
                   reinsert=list, tier=cython.ulonglong, max_tier=cython.ulonglong,
                   free=cython.longlong, lo=cython.ulonglong, nxt=cython.ulonglong,
                   i=Py_ssize_t, j=Py_ssize_t, b=Broadcast, msg=bytes)
    cdef list _take(self, Py_ssize_t overhead, Py_ssize_t limit)
    @cython.locals(i=Py_ssize_t)
    cdef void _delete(self, Broadcast b) except *
