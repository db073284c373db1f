/*
 * The alignment contract shared by the C length kernels (_gzip1.c: Gzip1Targets, _lz4len.c:
 * Lz4Targets, _liblen.c: ZstdTargets and IsalTargets) and the extension that calls them without
 * the GIL (_docwork.c).
 *
 * Each kernel module exports, as the capsule named "<module>._alignment_nogil_v1" (attribute
 * _alignment_nogil_v1), a function of type alignment_fn:
 *
 *   int alignment_nogil(PyObject *targets, const uint8_t *x, size_t len, double *out)
 *
 * targets: an initialised object of that module's targets type (the caller checks the type).
 * *out = 1 - mean_j NCD(x, t_j), the double operations of ncd.alignment_from_lengths in its
 * order (ncd_alignment below), so the very bits Python computes.  Thread-safe, needs no GIL,
 * touches no Python object.  Returns one of the ALIGN_* codes.
 *
 * Each kernel's Python method alignment(source) is alignment_method over its function.
 * Included by each of these modules (static functions, nothing shared at run time).
 */
#ifndef ZIPFIT_ALIGNMENT_H
#define ZIPFIT_ALIGNMENT_H

#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int (*alignment_fn)(PyObject *targets, const uint8_t *x, size_t len, double *out);

#define ALIGN_OK 0
#define ALIGN_NO_MEMORY (-1)
#define ALIGN_NO_TARGETS (-2)  /* no targets, or the object was not initialised */
#define ALIGN_NOT_HANDLED (-3) /* x is past what the kernel computes (lz4: 2 GB), or the library
                                  the kernel calls refused it (_liblen): Python scores it */

#define ALIGNMENT_CAPSULE_ATTR "_alignment_nogil_v1"

/*
 * 1 - mean_j NCD(x, t_j) from C(x) = cx, C(t_j) = cy[j] and C(x + t_j) = cxy[j] + cxy_add:
 * (cxy - min(cx, cy)) / max(cx, cy) summed in target order, as Python does.  Python's int / int
 * is the correctly rounded quotient of the two values, which is the double division here while
 * both are below 2^53; build with -ffp-contract=off so no step is fused.
 */
static inline double ncd_alignment(int64_t cx, const int64_t *cy, const int64_t *cxy, int64_t cxy_add,
                                   Py_ssize_t n)
{
    double total = 0.0;
    Py_ssize_t j;
    for (j = 0; j < n; j++) {
        int64_t y = cy[j], xy = cxy[j] + cxy_add;
        int64_t mn = cx < y ? cx : y, mx = cx < y ? y : cx;
        total += (double)(xy - mn) / (double)mx;
    }
    return 1.0 - total / (double)n;
}

/*
 * The body of a kernel's alignment(source) method: fn over the source's buffer with the GIL
 * released.  initialised / n: the object's state, checked first for clear errors.
 */
static inline PyObject *alignment_method(PyObject *self, PyObject *arg, alignment_fn fn, int initialised,
                                         Py_ssize_t n, const char *type_name)
{
    Py_buffer view;
    double r = 0.0;
    int rc;
    if (!initialised) {
        PyErr_Format(PyExc_RuntimeError, "%s.__init__ was not called", type_name);
        return NULL;
    }
    if (n == 0) {
        PyErr_SetString(PyExc_ValueError, "alignment needs at least one target");
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = fn(self, (const uint8_t *)view.buf, (size_t)view.len, &r);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (rc == ALIGN_NOT_HANDLED) {
        PyErr_Format(PyExc_OverflowError, "source too long for %s", type_name);
        return NULL;
    }
    if (rc != ALIGN_OK) return PyErr_NoMemory();
    return PyFloat_FromDouble(r);
}

/* A new list of the n Python ints v[j] + add (the kernels' concat_lengths); NULL with an
 * exception set when Python runs out of memory. */
static inline PyObject *int64_list(const int64_t *v, Py_ssize_t n, int64_t add)
{
    PyObject *list = PyList_New(n);
    Py_ssize_t j;
    if (!list) return NULL;
    for (j = 0; j < n; j++) {
        PyObject *item = PyLong_FromLongLong((long long)(v[j] + add));
        if (!item) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, j, item);
    }
    return list;
}

/*
 * The targets' bytes copied once, for a targets type's __init__: every item of seq must be bytes of
 * at most max_len bytes.  Sets *arena (all of them, one after another; at least 1 byte), *off and
 * *len (n entries; at least 1), *n, *total and *maxlen; the caller owns and frees the three
 * arrays.  -1 with an exception set, and nothing allocated, on error.
 */
static inline int copy_targets(PyObject *seq, size_t max_len, const char *type_name, uint8_t **arena,
                               size_t **off, size_t **len, Py_ssize_t *n_out, size_t *total_out,
                               size_t *maxlen_out)
{
    PyObject *fast = PySequence_Fast(seq, "targets must be a sequence of bytes");
    Py_ssize_t i, n;
    size_t total = 0, maxlen = 0;
    uint8_t *a;
    size_t *o, *l;
    if (!fast) return -1;
    n = PySequence_Fast_GET_SIZE(fast);
    for (i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        size_t k;
        if (!PyBytes_Check(item)) {
            PyErr_Format(PyExc_TypeError, "target %zd is not bytes", i);
            Py_DECREF(fast);
            return -1;
        }
        k = (size_t)PyBytes_GET_SIZE(item);
        if (k > max_len) {
            PyErr_Format(PyExc_OverflowError, "target %zd is too long for %s (over %zu bytes)", i, type_name,
                         max_len);
            Py_DECREF(fast);
            return -1;
        }
        total += k;
        if (k > maxlen) maxlen = k;
    }
    a = (uint8_t *)malloc(total ? total : 1);
    o = (size_t *)malloc(sizeof(size_t) * (size_t)(n ? n : 1));
    l = (size_t *)malloc(sizeof(size_t) * (size_t)(n ? n : 1));
    if (!a || !o || !l) {
        free(a);
        free(o);
        free(l);
        Py_DECREF(fast);
        PyErr_NoMemory();
        return -1;
    }
    total = 0;
    for (i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        size_t k = (size_t)PyBytes_GET_SIZE(item);
        memcpy(a + total, PyBytes_AS_STRING(item), k);
        o[i] = total;
        l[i] = k;
        total += k;
    }
    Py_DECREF(fast);
    *arena = a;
    *off = o;
    *len = l;
    *n_out = n;
    *total_out = total;
    *maxlen_out = maxlen;
    return 0;
}

#endif
