/* The Maglev fill loop of herald.dataplane.maglev in C.
 *
 * maglev.py keeps the same loop in Python as the reference; this one must produce the
 * identical table (tests/unit/dataplane/test_maglev_compiled.py compares them). Python
 * still hashes the names and checks the arguments' meaning (unique names, weights in
 * 1..MAX_WEIGHT, a prime size); this file only checks what would make C misbehave.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>

/* Weights are at most 65535 (maglev.MAX_WEIGHT) and claims at most the table size (2^17):
 * every product below fits in 64 bits. */
#define MAX_WEIGHT 65535
#define MAX_SIZE (1 << 20)

static int
read_u64s(PyObject *seq, Py_ssize_t count, uint64_t *out, uint64_t low, uint64_t high,
          const char *what)
{
    PyObject *fast = PySequence_Fast(seq, what);
    if (fast == NULL) {
        return -1;
    }
    if (PySequence_Fast_GET_SIZE(fast) != count) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd values", what, count);
        Py_DECREF(fast);
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(fast);
    for (Py_ssize_t i = 0; i < count; i++) {
        unsigned long long value = PyLong_AsUnsignedLongLong(items[i]);
        if (value == (unsigned long long)-1 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
        if (value < low || value > high) {
            PyErr_Format(PyExc_ValueError, "%s: %llu is outside %llu..%llu", what, value,
                         (unsigned long long)low, (unsigned long long)high);
            Py_DECREF(fast);
            return -1;
        }
        out[i] = value;
    }
    Py_DECREF(fast);
    return 0;
}

/* fill(offsets, skips, weights, size) -> tuple of backend indices, one per slot. */
static PyObject *
fill(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *offsets_arg, *skips_arg, *weights_arg;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "OOOn", &offsets_arg, &skips_arg, &weights_arg, &size)) {
        return NULL;
    }
    if (size < 2 || size > MAX_SIZE) {
        PyErr_Format(PyExc_ValueError, "size %zd is outside 2..%d", size, MAX_SIZE);
        return NULL;
    }
    Py_ssize_t count = PySequence_Size(offsets_arg);
    if (count < 0) {
        return NULL;
    }
    if (count == 0) {
        return PyTuple_New(0);
    }
    uint64_t *offsets = PyMem_Calloc((size_t)count * 5, sizeof(uint64_t));
    int32_t *table = PyMem_Malloc((size_t)size * sizeof(int32_t));
    if (offsets == NULL || table == NULL) {
        PyMem_Free(offsets);
        PyMem_Free(table);
        return PyErr_NoMemory();
    }
    uint64_t *skips = offsets + count, *weights = offsets + 2 * count;
    /* A backend's next slot to try replaces the reference's step counter: the same walk,
     * offset + step * skip (mod size), one addition per step. */
    uint64_t *next_slot = offsets + 3 * count, *claimed = offsets + 4 * count;
    PyObject *result = NULL;
    uint64_t m = (uint64_t)size;
    if (read_u64s(offsets_arg, count, offsets, 0, m - 1, "offsets") < 0
        || read_u64s(skips_arg, count, skips, 1, m - 1, "skips") < 0
        || read_u64s(weights_arg, count, weights, 1, MAX_WEIGHT, "weights") < 0) {
        goto done;
    }
    uint64_t max_weight = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        next_slot[i] = offsets[i];
        if (weights[i] > max_weight) {
            max_weight = weights[i];
        }
    }
    for (Py_ssize_t slot = 0; slot < size; slot++) {
        table[slot] = -1;
    }
    /* The heaviest backend claims a slot every turn, so the loop ends within `size` turns;
     * a non-prime size could leave a walk cycling over claimed slots, hence the bound. */
    uint64_t filled = 0;
    for (uint64_t turn = 1; filled < m; turn++) {
        for (Py_ssize_t i = 0; i < count && filled < m; i++) {
            if (claimed[i] * max_weight >= turn * weights[i]) {
                continue;
            }
            uint64_t slot = next_slot[i];
            uint64_t tries = 0;
            while (table[slot] >= 0) {
                slot += skips[i];
                if (slot >= m) {
                    slot -= m;
                }
                if (++tries > m) {
                    PyErr_SetString(PyExc_ValueError, "size must be prime: a walk cycled");
                    goto done;
                }
            }
            table[slot] = (int32_t)i;
            slot += skips[i];
            next_slot[i] = slot >= m ? slot - m : slot;
            claimed[i]++;
            filled++;
        }
    }
    /* One int object per backend, shared by all its slots (only -5..256 are cached). */
    PyObject **indices = PyMem_Calloc((size_t)count, sizeof(PyObject *));
    if (indices == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        indices[i] = PyLong_FromSsize_t(i);
        if (indices[i] == NULL) {
            goto release;
        }
    }
    result = PyTuple_New(size);
    if (result == NULL) {
        goto release;
    }
    for (Py_ssize_t slot = 0; slot < size; slot++) {
        PyObject *index = indices[table[slot]];
        Py_INCREF(index);
        PyTuple_SET_ITEM(result, slot, index);
    }
release:
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_XDECREF(indices[i]);
    }
    PyMem_Free(indices);
done:
    PyMem_Free(offsets);
    PyMem_Free(table);
    return result;
}

static PyMethodDef methods[] = {
    {"fill", fill, METH_VARARGS,
     "fill(offsets, skips, weights, size) -> tuple: the owner index of every slot."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_maglev",
    .m_doc = "herald's Maglev fill loop, compiled.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__maglev(void)
{
    return PyModule_Create(&module);
}
