# C types for _core/vivaldi.py (Cython pure-Python mode): the .py holds all the logic
# and runs as is without Cython; this file only says what is typed.
cimport cython
from libc cimport math

cdef double _ZERO_THRESHOLD, _MAX_RTT, _TWO_63, _INT64_MIN_SECONDS
cdef long long _NS_PER_SECOND


cdef class Coordinate:
    cdef public list vec
    cdef public double error, adjustment, height


cdef class CoordinateClient:
    cdef readonly object config
    cdef public object stats
    cdef object _rng
    cdef Py_ssize_t _dim, _window, _filter_size, _adjustment_index
    cdef double _error_max, _ce, _cc, _height_min, _rho
    cdef Coordinate _coord, _origin
    cdef list _adjustment_samples
    cdef dict _latency

    @cython.locals(rtt=double, rtt_ns=cython.longlong)
    cpdef Coordinate update(self, object node, Coordinate other, double rtt_seconds)
    cpdef double distance_to(self, Coordinate other) except? -1.0
    cdef void _check(self, object coord) except *
    @cython.locals(samples=list)
    cdef double _latency_filter(self, object node, double rtt) except? -1.0
    @cython.locals(dist=double, wrongness=double, total_error=double, weight=double,
                   error=double, force=double)
    cdef void _update_vivaldi(self, Coordinate other, double rtt) except *
    @cython.locals(samples=list, total=double, x=double, i=Py_ssize_t)
    cdef void _update_adjustment(self, Coordinate other, double rtt) except *
    @cython.locals(q=double, force=double)
    cdef void _update_gravity(self) except *


@cython.locals(ordered=list)
cpdef double median_rtt(object samples) except? -1.0

cdef bint _finite(double x) noexcept

@cython.locals(x=double)
cdef double _duration_seconds(double seconds) noexcept

@cython.locals(sec=cython.longlong, nsec=cython.longlong)
cdef double _ns_seconds(long long ns) noexcept

cdef Coordinate _new_coordinate(Py_ssize_t dimensionality, double error, double height)

cdef Coordinate _clone(Coordinate c)

@cython.locals(vec=list, i=Py_ssize_t)
cdef bint _is_valid(Coordinate c) except -1

cdef void _check_dimensions(Coordinate a, Coordinate b) except *

@cython.locals(av=list, bv=list, total=double, x=double, y=double, d=double, i=Py_ssize_t)
cdef double _raw_distance(Coordinate a, Coordinate b) except? -1.0

@cython.locals(dist=double, adjusted=double)
cdef double _distance(Coordinate a, Coordinate b) except? -1.0

@cython.locals(cv=list, ov=list, vec=list, direction=list, n=Py_ssize_t, i=Py_ssize_t,
               x=double, y=double, d=double, total=double, mag=double, rmag=double,
               scale=double, height=double, out=Coordinate)
cdef Coordinate _apply_force(Coordinate c, double force, Coordinate other, double height_min,
                             object rng)
