/* The Postfix policy server's request scanner: framing, checking and extraction in C.
 *
 * take(buf: bytearray | bytes, names: tuple[str, ...], max_lines: int, start: int, limit: int,
 *      into: dict) -> int
 *
 *     The server's hot path. Walks the lines of the request that begins at buf[start] up to the
 *     empty line that ends it, checks each as parse_request would, and stores the attributes
 *     named in `names` into `into` (a dict the caller reuses: found names are set, the others
 *     removed). Returns where the next request begins. -1: no complete request yet, and no more
 *     than `limit` bytes waiting. -2: a request that is too large, or complete and malformed
 *     (too many lines, a line without "=" or without a name), for the caller's slower path,
 *     which finds the same request and names what is wrong.
 *
 * frame(buf, start) -> int
 *
 *     The same line walk with nothing checked or taken: where the next request begins, or -1.
 *     What the bench's null responder frames with, so mailward and its floor frame alike.
 *
 * scan(raw: bytes | bytearray, names, max_lines, start=0, end=len(raw)) -> dict | int
 *
 *     Checks raw[start:end] (one request without its empty line) like parse_request and returns a
 *     new dict of the named attributes, or an error code for the caller to raise: 1 too many
 *     lines, 2 a line without "=", 3 a line with an empty name (checked in that order).
 *
 * Values are decoded as UTF-8 with surrogateescape; a repeated name keeps its last value.
 * No library parses this format, and Python's dozens of calls on bytes per request were the
 * larger part of a policy decision's cost (docs/benchmarks.md).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_NAMES 16
#define CACHE_WAYS 8     /* recent values kept per name: Postfix has about eight states */
#define CACHE_MAX_LEN 64 /* longer values are not worth comparing */
#define CACHE_SAMPLE 256 /* lookups per verdict on whether a name's values repeat */
#define CACHE_REST 4096  /* lookups skipped after a verdict that they do not */

/* Sized once for the values found: an empty dict resizes on its sixth key. The sizing call is
 * CPython's own (what its compiler uses for dict displays); elsewhere, a plain dict. */
#if defined(PYPY_VERSION) || PY_VERSION_HEX >= 0x030E0000
#define NEW_DICT(n) PyDict_New()
#else
#define NEW_DICT(n) _PyDict_NewPresized(n)
#endif

enum { SCAN_TOO_MANY_LINES = 1, SCAN_NO_EQUALS = 2, SCAN_NO_NAME = 3 };
enum { TAKE_INCOMPLETE = -1, TAKE_SLOW = -2 };

/* The names of the last tuple seen, read once: the server passes the same tuple every time.
 * Beside them, the last few ASCII values decoded for each name: most requests repeat the
 * request kind, the protocol state and the login, and a hit saves making and freeing a str.
 * Names whose values seldom repeat (the client address, the recipient) are looked up only
 * now and then, to notice if they start to. */
static struct {
    PyObject *tuple; /* strong reference */
    Py_ssize_t count;
    const char *name[MAX_NAMES];
    Py_ssize_t len[MAX_NAMES];
    uint64_t len_mask; /* bit n: some name is n bytes long (n < 64) */
    PyObject *cache[MAX_NAMES][CACHE_WAYS];
    unsigned next_way[MAX_NAMES];
    unsigned tries[MAX_NAMES], hits[MAX_NAMES], rest[MAX_NAMES];
} st;

static int
use_names(PyObject *names)
{
    if (names == st.tuple) {
        return 0;
    }
    /* mypyc code may box the same names into a new tuple per call: the same str objects */
    if (st.tuple != NULL && PyTuple_Check(names) && PyTuple_GET_SIZE(names) == st.count) {
        Py_ssize_t i = 0;
        while (i < st.count && PyTuple_GET_ITEM(names, i) == PyTuple_GET_ITEM(st.tuple, i)) {
            i++;
        }
        if (i == st.count) {
            return 0;
        }
    }
    if (!PyTuple_Check(names) || PyTuple_GET_SIZE(names) > MAX_NAMES) {
        PyErr_SetString(PyExc_TypeError, "names must be a tuple of at most 16 str");
        return -1;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(names);
    const char *name[MAX_NAMES];
    Py_ssize_t len[MAX_NAMES];
    uint64_t mask = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyTuple_GET_ITEM(names, i);
        if (!PyUnicode_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "names must be a tuple of at most 16 str");
            return -1;
        }
        /* kept valid by the tuple, which is held */
        name[i] = PyUnicode_AsUTF8AndSize(item, &len[i]);
        if (name[i] == NULL) {
            return -1;
        }
        mask |= len[i] < 64 ? (uint64_t)1 << len[i] : 0;
    }
    for (Py_ssize_t i = 0; i < MAX_NAMES; i++) {
        for (int w = 0; w < CACHE_WAYS; w++) {
            Py_CLEAR(st.cache[i][w]);
        }
        st.next_way[i] = st.tries[i] = st.hits[i] = st.rest[i] = 0;
    }
    Py_INCREF(names);
    Py_XSETREF(st.tuple, names);
    st.count = count;
    memcpy(st.name, name, sizeof(name[0]) * (size_t)count);
    memcpy(st.len, len, sizeof(len[0]) * (size_t)count);
    st.len_mask = mask;
    return 0;
}

/* The index of the name p[0:n] in the current names, or -1. */
static inline Py_ssize_t
name_index(const char *p, Py_ssize_t n)
{
    if (n < 64 && !(st.len_mask & ((uint64_t)1 << n))) {
        return -1; /* most lines: no wanted name has this length */
    }
    for (Py_ssize_t i = 0; i < st.count; i++) {
        if (st.len[i] == n && st.name[i][0] == p[0] && memcmp(st.name[i], p, (size_t)n) == 0) {
            return i;
        }
    }
    return -1;
}

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

/* decode(), through the recent values of name i. Only ASCII values are kept: for them the
 * str's data is the very bytes compared. */
static PyObject *
value_of(Py_ssize_t i, const char *s, Py_ssize_t n)
{
    if (n > CACHE_MAX_LEN) {
        return decode(s, n);
    }
    if (st.rest[i] > 0) {
        st.rest[i]--;
        return decode(s, n);
    }
    if (++st.tries[i] == CACHE_SAMPLE) {
        st.rest[i] = st.hits[i] < CACHE_SAMPLE / 8 ? CACHE_REST : 0;
        st.tries[i] = st.hits[i] = 0;
    }
    for (int w = 0; w < CACHE_WAYS; w++) {
        PyObject *seen = st.cache[i][w];
        if (seen != NULL && PyUnicode_GET_LENGTH(seen) == n &&
            memcmp(PyUnicode_1BYTE_DATA(seen), s, (size_t)n) == 0) {
            st.hits[i]++;
            Py_INCREF(seen);
            return seen;
        }
    }
    PyObject *text = decode(s, n);
    if (text != NULL && PyUnicode_IS_ASCII(text)) {
        unsigned w = st.next_way[i]++ % CACHE_WAYS;
        Py_INCREF(text);
        Py_XSETREF(st.cache[i][w], text);
    }
    return text;
}

/* The values found, decoded: all of them or none (NULL set, error raised). Decoded before any
 * dict is touched: an allocation may run the cyclic GC, and a finalizer could then change the
 * buffer the pointers point into. */
static int
decode_all(const char **value, const Py_ssize_t *value_len, PyObject **text)
{
    for (Py_ssize_t i = 0; i < st.count; i++) {
        text[i] = NULL;
        if (value[i] == NULL) {
            continue;
        }
        text[i] = value_of(i, value[i], value_len[i]);
        if (text[i] == NULL) {
            for (Py_ssize_t j = 0; j < i; j++) {
                Py_XDECREF(text[j]);
            }
            return -1;
        }
    }
    return 0;
}

static int
buffer_of(PyObject *raw, const char **data, Py_ssize_t *size)
{
    if (PyByteArray_Check(raw)) {
        *data = PyByteArray_AS_STRING(raw);
        *size = PyByteArray_GET_SIZE(raw);
    } else if (PyBytes_Check(raw)) {
        *data = PyBytes_AS_STRING(raw);
        *size = PyBytes_GET_SIZE(raw);
    } else {
        PyErr_SetString(PyExc_TypeError, "the buffer must be bytes or bytearray");
        return -1;
    }
    return 0;
}

static int
ssize_arg(PyObject *arg, Py_ssize_t *out)
{
    *out = PyLong_AsSsize_t(arg);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static PyObject *
take(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    const char *data;
    Py_ssize_t size, max_lines, start, limit;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "take(buf, names, max_lines, start, limit, into)");
        return NULL;
    }
    PyObject *into = args[5];
    if (buffer_of(args[0], &data, &size) < 0 || use_names(args[1]) < 0 ||
        ssize_arg(args[2], &max_lines) < 0 || ssize_arg(args[3], &start) < 0 ||
        ssize_arg(args[4], &limit) < 0) {
        return NULL;
    }
    if (!PyDict_CheckExact(into)) {
        PyErr_SetString(PyExc_TypeError, "take: into must be a dict");
        return NULL;
    }
    if (start < 0 || start > size) {
        PyErr_SetString(PyExc_ValueError, "take: start must lie within buf");
        return NULL;
    }

    const char *value[MAX_NAMES] = {0};
    Py_ssize_t value_len[MAX_NAMES] = {0};
    const char *first = data + start;
    const char *p = first;
    const char *end = data + size;
    Py_ssize_t lines = 0;
    int bad = 0; /* a malformed line: once the request is complete, the slow path names it */
    /* No Python code runs from here to the last read of the buffer: it cannot change. */
    for (;;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) {
            return PyLong_FromSsize_t(end - first > limit ? TAKE_SLOW : TAKE_INCOMPLETE);
        }
        if (nl == p && lines > 0) {
            break; /* the empty line that ends the request */
        }
        if (nl - first > limit) {
            return PyLong_FromSsize_t(TAKE_SLOW);
        }
        lines++;
        if (!bad) {
            const char *eq = memchr(p, '=', (size_t)(nl - p));
            if (eq == NULL || eq == p || lines > max_lines) {
                bad = 1;
            } else {
                Py_ssize_t i = name_index(p, eq - p);
                if (i >= 0) {
                    value[i] = eq + 1;
                    value_len[i] = nl - eq - 1;
                }
            }
        }
        p = nl + 1;
    }
    if (bad) {
        return PyLong_FromSsize_t(TAKE_SLOW);
    }
    Py_ssize_t next = p + 1 - data;

    PyObject *text[MAX_NAMES];
    if (decode_all(value, value_len, text) < 0) {
        return NULL;
    }
    int failed = 0;
    for (Py_ssize_t i = 0; i < st.count; i++) {
        PyObject *key = PyTuple_GET_ITEM(st.tuple, i);
        if (text[i] != NULL) {
            failed = failed || PyDict_SetItem(into, key, text[i]) < 0;
            Py_DECREF(text[i]);
        } else if (!failed) {
            int had = PyDict_Contains(into, key);
            failed = had < 0 || (had && PyDict_DelItem(into, key) < 0);
        }
    }
    return failed ? NULL : PyLong_FromSsize_t(next);
}

static PyObject *
frame(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    const char *data;
    Py_ssize_t size, start;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "frame(buf, start)");
        return NULL;
    }
    if (buffer_of(args[0], &data, &size) < 0 || ssize_arg(args[1], &start) < 0) {
        return NULL;
    }
    if (start < 0 || start > size) {
        PyErr_SetString(PyExc_ValueError, "frame: start must lie within buf");
        return NULL;
    }
    const char *p = data + start;
    const char *end = data + size;
    for (;;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) {
            return PyLong_FromSsize_t(TAKE_INCOMPLETE);
        }
        if (nl == p && p != data + start) {
            return PyLong_FromSsize_t(p + 1 - data);
        }
        p = nl + 1;
    }
}

static PyObject *
scan(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    const char *data;
    Py_ssize_t size, max_lines;
    if (nargs < 3 || nargs > 5) {
        PyErr_SetString(PyExc_TypeError, "scan(raw, names, max_lines[, start[, end]])");
        return NULL;
    }
    if (buffer_of(args[0], &data, &size) < 0 || use_names(args[1]) < 0 ||
        ssize_arg(args[2], &max_lines) < 0) {
        return NULL;
    }
    Py_ssize_t start = 0;
    Py_ssize_t stop = size;
    if ((nargs > 3 && ssize_arg(args[3], &start) < 0) ||
        (nargs > 4 && ssize_arg(args[4], &stop) < 0)) {
        return NULL;
    }
    if (start < 0 || stop > size || start > stop) {
        PyErr_SetString(PyExc_ValueError, "scan: start and end must lie within raw");
        return NULL;
    }

    const char *value[MAX_NAMES] = {0};
    Py_ssize_t value_len[MAX_NAMES] = {0};
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
            Py_ssize_t i = name_index(p, eq - p);
            if (i >= 0) {
                value[i] = eq + 1;
                value_len[i] = line_end - eq - 1;
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

    PyObject *text[MAX_NAMES];
    if (decode_all(value, value_len, text) < 0) {
        return NULL;
    }
    PyObject *attrs = NEW_DICT(st.count);
    for (Py_ssize_t i = 0; i < st.count; i++) {
        if (text[i] == NULL) {
            continue;
        }
        if (attrs != NULL && PyDict_SetItem(attrs, PyTuple_GET_ITEM(st.tuple, i), text[i]) < 0) {
            Py_CLEAR(attrs);
        }
        Py_DECREF(text[i]);
    }
    return attrs;
}

/* ipv4(text) -> the address as an int, or -1 when text is not a plain dotted quad: four decimal
 * octets of 0-255, no sign, no spaces, no leading zeros (the grammar inet_pton(AF_INET) and
 * ipaddress accept). Anything else, IPv6 included, is for the Python parser to judge. */
static PyObject *
ipv4(PyObject *module, PyObject *text)
{
    if (!PyUnicode_Check(text) || !PyUnicode_IS_COMPACT_ASCII(text)) {
        return PyLong_FromLong(-1);
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    const unsigned char *c = (const unsigned char *)PyUnicode_DATA(text);
    if (n < 7 || n > 15) {
        return PyLong_FromLong(-1);
    }
    unsigned long value = 0;
    int octets = 0;
    Py_ssize_t i = 0;
    while (i < n) {
        unsigned int octet = 0;
        Py_ssize_t digits = 0;
        while (i < n && c[i] >= '0' && c[i] <= '9') {
            if (digits == 1 && octet == 0) {
                return PyLong_FromLong(-1); /* a leading zero */
            }
            octet = octet * 10 + (unsigned int)(c[i] - '0');
            digits++;
            i++;
            if (octet > 255) {
                return PyLong_FromLong(-1);
            }
        }
        if (digits == 0) {
            return PyLong_FromLong(-1);
        }
        value = (value << 8) | octet;
        octets++;
        if (i == n) {
            break;
        }
        if (c[i] != '.' || octets == 4) {
            return PyLong_FromLong(-1);
        }
        i++;
        if (i == n) {
            return PyLong_FromLong(-1); /* a trailing dot */
        }
    }
    if (octets != 4) {
        return PyLong_FromLong(-1);
    }
    return PyLong_FromUnsignedLong(value);
}

static PyMethodDef methods[] = {
    {"take", (PyCFunction)(void (*)(void))take, METH_FASTCALL,
     "take(buf, names, max_lines, start, limit, into) -> where the next request begins, "
     "-1 (incomplete) or -2 (take the slow path)"},
    {"frame", (PyCFunction)(void (*)(void))frame, METH_FASTCALL,
     "frame(buf, start) -> where the next request begins, or -1"},
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "scan(raw, names, max_lines[, start[, end]]) -> dict of the named attributes, or an error "
     "code"},
    {"ipv4", (PyCFunction)ipv4, METH_O,
     "ipv4(text) -> the dotted-quad address as an int, or -1 when text is not one"},
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
