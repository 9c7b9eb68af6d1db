/*
 * One linear walk over the merge of two sorted float64 samples: the KS extremes and the
 * Wasserstein-1 integral of kernels._numerical, without materialising the merge.
 *
 * NumPy has no merge primitive: its walk merges blocks with a stable argsort and a dozen
 * whole-block passes, about 40 ms per feature at a million rows against about 12 ms here
 * (most of it the two float64 divisions per element that bit-exactness asks for). The
 * arithmetic is the NumPy walk's own, so the KS extremes agree bit for bit:
 *   - elements are taken one at a time, reference first on ties; an element whose successor
 *     has another value ends a run of equal values, and there i and j are scipy's
 *     searchsorted(side="right") counts; only run ends count for KS;
 *   - the difference is the float64 expression i/n1 - j/n2 (built with -ffp-contract=off, so
 *     no fused multiply-add changes a rounding);
 *   - Wasserstein-1 sums |F1 - F2| * (next value - value) with Neumaier compensation, so the
 *     sum of two million positive terms carries no more than a few ulps of error.
 * The GIL is released during the walk, so per-feature worker threads run it in parallel.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

static int
is_native_float64(const char *fmt)
{
    if (fmt == NULL) {
        return 0;
    }
    if (fmt[0] == '=' || fmt[0] == '@') {
        fmt++;
    }
    return fmt[0] == 'd' && fmt[1] == '\0';
}

static int
get_float64_vector(PyObject *obj, Py_buffer *view, const char *what)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        return -1;
    }
    if (view->ndim != 1 || view->itemsize != 8 || !is_native_float64(view->format)) {
        PyErr_Format(PyExc_TypeError,
                     "%s must be a contiguous 1-D native float64 array (got ndim=%d, format '%s')",
                     what, view->ndim, view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* The walk's state: the last merged element is held back until the next one shows whether it
 * ends a run of equal values (only run ends count for KS) and how far the step to it is. */
typedef struct {
    double hi, lo, sum, comp;
    double v, d; /* the held-back element: its value and i/n1 - j/n2 after it */
    int held;
} walk_state;

static inline void
step(walk_state *s, double v, double d, int want_w1)
{
    if (s->held) {
        if (v != s->v) {
            s->hi = s->d > s->hi ? s->d : s->hi;
            s->lo = s->d < s->lo ? s->d : s->lo;
        }
        if (want_w1) {
            const double term = fabs(s->d) * (v - s->v);
            const double t = s->sum + term;
            s->comp += (fabs(s->sum) >= fabs(term)) ? (s->sum - t) + term : (term - t) + s->sum;
            s->sum = t;
        }
    }
    s->v = v;
    s->d = d;
    s->held = 1;
}

/* Returns 0, or -1 when an input holds a NaN (it would break the order the walk relies on). */
static int
walk(const double *r, Py_ssize_t n1, const double *c, Py_ssize_t n2, int want_w1,
     double *out_max, double *out_min, double *out_w1)
{
    const double fn1 = (double)n1, fn2 = (double)n2;
    Py_ssize_t i = 0, j = 0;
    walk_state s = {-INFINITY, INFINITY, 0.0, 0.0, 0.0, 0.0, 0};
    int nan_seen = 0;

    /* Both samples left: one element per iteration, reference first on ties. Which sample
     * advances is a select, not a branch, so a random interleaving costs no mispredictions. */
    while (i < n1 && j < n2) {
        const double a = r[i], b = c[j];
        nan_seen |= (a != a) | (b != b);
        const int take_ref = a <= b;
        const double v = take_ref ? a : b;
        i += take_ref;
        j += 1 - take_ref;
        step(&s, v, (double)i / fn1 - (double)j / fn2, want_w1);
    }
    for (; i < n1; i++) {
        nan_seen |= r[i] != r[i];
        step(&s, r[i], (double)(i + 1) / fn1 - (double)j / fn2, want_w1);
    }
    for (; j < n2; j++) {
        nan_seen |= c[j] != c[j];
        step(&s, c[j], (double)i / fn1 - (double)(j + 1) / fn2, want_w1);
    }
    if (nan_seen) {
        return -1;
    }
    if (s.held) { /* the last element ends the last run */
        s.hi = s.d > s.hi ? s.d : s.hi;
        s.lo = s.d < s.lo ? s.d : s.lo;
    }
    *out_max = s.hi;
    *out_min = s.lo;
    *out_w1 = s.sum + s.comp;
    return 0;
}

static PyObject *
merge_walk(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *ref_obj, *cur_obj;
    int want_w1;
    if (!PyArg_ParseTuple(args, "OOp:merge_walk", &ref_obj, &cur_obj, &want_w1)) {
        return NULL;
    }
    Py_buffer ref, cur;
    if (get_float64_vector(ref_obj, &ref, "ref") < 0) {
        return NULL;
    }
    if (get_float64_vector(cur_obj, &cur, "cur") < 0) {
        PyBuffer_Release(&ref);
        return NULL;
    }
    double hi = -INFINITY, lo = INFINITY, w1 = 0.0;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = walk((const double *)ref.buf, ref.shape[0], (const double *)cur.buf, cur.shape[0],
              want_w1, &hi, &lo, &w1);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&ref);
    PyBuffer_Release(&cur);
    if (rc < 0) {
        PyErr_SetString(PyExc_ValueError, "merge_walk: the samples must be sorted and hold no NaN");
        return NULL;
    }
    return Py_BuildValue("(ddd)", hi, lo, w1);
}

static PyMethodDef methods[] = {
    {"merge_walk", merge_walk, METH_VARARGS,
     "merge_walk(ref, cur, want_w1) -> (max, min, w1)\n\n"
     "Over the merge of two sorted float64 samples without NaN: the max and min of\n"
     "i/n1 - j/n2 after each distinct value, and (when want_w1) the integral of |F1 - F2|\n"
     "(finite values only). An empty pair gives (-inf, inf, 0.0)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "kernels._sorted_merge",
    "Linear merge walk of two sorted samples (see kernels._numerical).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__sorted_merge(void)
{
    return PyModule_Create(&module);
}
