/* The Postfix policy server's request scanner: one pass over a request in C.
 *
 * scan(raw: bytes | bytearray, names: tuple[str, ...], max_lines: int, start=0, end=len(raw))
 *     -> dict[str, str] | int
 *
 * Reads raw[start:end] in place (the server's read buffer, no copy). Checks every line as mailward.policy.postfix.parse_request does and takes out only the
 * attributes named in `names` (a repeated name keeps its last value; values are decoded as UTF-8
 * with surrogateescape). On bad input it returns an int and the caller raises the error it names:
 * 1 too many lines, 2 a line without "=", 3 a line with an empty name (checked in that order).
 * No library parses this format, and the Python version's dozens of calls on bytes were the
 * larger part of a policy decision's cost (docs/benchmarks.md).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define MAX_NAMES 16

/* Sized once for the values found: an empty dict resizes on its sixth key. The sizing call is
 * CPython's own (what its compiler uses for dict displays); elsewhere, a plain dict. */
#if defined(PYPY_VERSION) || PY_VERSION_HEX >= 0x030E0000
#define NEW_DICT(n) PyDict_New()
#else
#define NEW_DICT(n) _PyDict_NewPresized(n)
#endif

enum { SCAN_TOO_MANY_LINES = 1, SCAN_NO_EQUALS = 2, SCAN_NO_NAME = 3 };

/* UTF-8 with surrogateescape, as Python's bytes.decode; ASCII (nearly every value Postfix sends)
 * is copied straight into a new str without the codec machinery. */
static PyObject *
decode(const char *s, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] >= 0x80) {
            return PyUnicode_DecodeUTF8(s, n, "surrogateescape");
        }
    }
    PyObject *text = PyUnicode_New(n, 127);
    if (text != NULL) {
        memcpy(PyUnicode_DATA(text), s, (size_t)n);
    }
    return text;
}

static PyObject *
scan(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 3 || nargs > 5) {
        PyErr_SetString(PyExc_TypeError, "scan(raw, names, max_lines[, start[, end]])");
        return NULL;
    }
    PyObject *raw = args[0];
    PyObject *names = args[1];
    const char *data;
    Py_ssize_t size;
    if (PyBytes_Check(raw)) {
        data = PyBytes_AS_STRING(raw);
        size = PyBytes_GET_SIZE(raw);
    } else if (PyByteArray_Check(raw)) {
        data = PyByteArray_AS_STRING(raw);
        size = PyByteArray_GET_SIZE(raw);
    } else {
        PyErr_SetString(PyExc_TypeError, "scan: raw must be bytes or bytearray");
        return NULL;
    }
    Py_ssize_t start = 0;
    Py_ssize_t stop = size;
    if (nargs > 3 && (start = PyLong_AsSsize_t(args[3])) == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (nargs > 4 && (stop = PyLong_AsSsize_t(args[4])) == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (start < 0 || stop > size || start > stop) {
        PyErr_SetString(PyExc_ValueError, "scan: start and end must lie within raw");
        return NULL;
    }
    if (!PyTuple_Check(names) || PyTuple_GET_SIZE(names) > MAX_NAMES) {
        PyErr_SetString(PyExc_TypeError, "scan: names must be a tuple of at most 16 str");
        return NULL;
    }
    Py_ssize_t max_lines = PyLong_AsSsize_t(args[2]);
    if (max_lines == -1 && PyErr_Occurred()) {
        return NULL;
    }

    Py_ssize_t count = PyTuple_GET_SIZE(names);
    const char *name[MAX_NAMES];
    Py_ssize_t name_len[MAX_NAMES];
    const char *value[MAX_NAMES];
    Py_ssize_t value_len[MAX_NAMES];
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyTuple_GET_ITEM(names, i);
        if (!PyUnicode_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "scan: names must be a tuple of at most 16 str");
            return NULL;
        }
        name[i] = PyUnicode_AsUTF8AndSize(item, &name_len[i]);
        if (name[i] == NULL) {
            return NULL;
        }
        value[i] = NULL;
        value_len[i] = 0;
    }

    /* No Python code runs between here and the last read of the buffer: a bytearray cannot be
     * resized under us. */
    const char *p = data + start;
    const char *end = data + stop;
    Py_ssize_t lines = 0;
    int no_equals = 0;
    int no_name = 0;
    for (;;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl != NULL ? nl : end;
        if (++lines > max_lines) {
            return PyLong_FromLong(SCAN_TOO_MANY_LINES);
        }
        const char *eq = memchr(p, '=', (size_t)(line_end - p));
        if (eq == NULL) {
            no_equals = 1;
        } else if (eq == p) {
            no_name = 1;
        } else {
            Py_ssize_t key_len = eq - p;
            for (Py_ssize_t i = 0; i < count; i++) {
                if (name_len[i] == key_len && memcmp(name[i], p, (size_t)key_len) == 0) {
                    value[i] = eq + 1;
                    value_len[i] = line_end - eq - 1;
                    break;
                }
            }
        }
        if (nl == NULL) {
            break;
        }
        p = nl + 1;
    }
    if (no_equals) {
        return PyLong_FromLong(SCAN_NO_EQUALS);
    }
    if (no_name) {
        return PyLong_FromLong(SCAN_NO_NAME);
    }

    /* Values are decoded before the dict exists: creating a dict may run the cyclic GC, and a
     * finalizer could then change the buffer these pointers point into. */
    PyObject *text[MAX_NAMES];
    for (Py_ssize_t i = 0; i < count; i++) {
        text[i] = NULL;
        if (value[i] == NULL) {
            continue;
        }
        text[i] = decode(value[i], value_len[i]);
        if (text[i] == NULL) {
            for (Py_ssize_t j = 0; j < i; j++) {
                Py_XDECREF(text[j]);
            }
            return NULL;
        }
    }
    PyObject *attrs = NEW_DICT(count);
    for (Py_ssize_t i = 0; i < count; i++) {
        if (text[i] == NULL) {
            continue;
        }
        if (attrs != NULL && PyDict_SetItem(attrs, PyTuple_GET_ITEM(names, i), text[i]) < 0) {
            Py_CLEAR(attrs);
        }
        Py_DECREF(text[i]);
    }
    return attrs;
}

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "scan(raw, names, max_lines) -> dict of the named attributes, or an error code"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "mailward.policy._scan", NULL, 0, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__scan(void)
{
    return PyModule_Create(&module);
}
