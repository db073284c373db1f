/*
 * The common JSON Lines record made a Document in one pass over its bytes (io.parse.parse_batch).
 *
 *     documents(records, field, id_field, group_field, Document, RawRecord, fallback) -> list
 *
 * For each record: a RawRecord whose line is a plain JSON object becomes its Document here;
 * anything else is passed to fallback(record), whose answer goes in its place.  "Plain" is
 * kept narrow, so that the answer here is surely the one Python's path gives (json.loads and
 * parse_any; tests/unit/test_parsing.py compares them on mutated lines):
 *   - the line is one object, with JSON whitespace around and between its tokens, no byte
 *     >= 0x80 and no control byte inside a string (either sends the line to Python);
 *   - its keys have no escapes; its values are strings, numbers, true, false or null (an array
 *     or object sends the line to Python); a key given twice counts with its last value;
 *   - strings decode the escapes \" \\ \/ \b \f \n \r \t and \u0000-\u007f; any other escape
 *     sends the line to Python; numbers follow JSON's grammar;
 *   - the text field is a string that is not empty and not all whitespace (str.isspace);
 *   - the id is a string, or an integer of at most 18 digits other than -0 (the Document's id
 *     is then its digits, as str(int) writes them); absent or null ids (a digest of the text)
 *     go to Python;
 *   - the group, when asked for, is a string (cut to GROUP_MAX_CHARS as group_value cuts it),
 *     or absent or null ("(missing)").
 * Document(id, text, source, position, b"", group) is made as a tuple subclass instance.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define GROUP_MAX_CHARS 200
#define MAX_INT_DIGITS 18
#define MAX_LINE (1 << 20) /* longer lines go to Python (the scratch is 4 x this at most) */
#define SLACK 16          /* the decoder stores 16 bytes at a time */

enum { V_ABSENT = 0, V_STR, V_INT, V_NULL, V_OTHER };

typedef struct {
    int kind;
    const uint8_t *s; /* V_STR: the decoded bytes (in a scratch slot); V_INT: the number's bytes */
    Py_ssize_t n;
} value;

typedef struct {
    const char *name;
    Py_ssize_t len;
} fname;

static inline int is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static inline const uint8_t *skip_ws(const uint8_t *p, const uint8_t *end)
{
    while (p < end && is_ws(*p)) p++;
    return p;
}

static inline int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* the character a backslash and this letter stand for (the one-letter escapes); 0: none */
static const uint8_t escaped[256] = {['"'] = '"', ['\\'] = '\\', ['/'] = '/', ['b'] = '\b',
                                     ['f'] = '\f', ['n'] = '\n', ['r'] = '\r', ['t'] = '\t'};

static inline int regular(uint8_t c) { return c != '"' && c != '\\' && c >= 0x20 && c < 0x80; }

/*
 * A string from just past its opening quote, decoded into dst (room for the rest of the line
 * plus SLACK): returns the position past its closing quote, with *n the decoded length and
 * *esc whether it had escapes, or NULL for anything sent to Python (a control byte, which json
 * refuses; a byte over 0x7f; an escape other than the simple ones and \u0000-\u007f).
 */
static const uint8_t *read_string(const uint8_t *p, const uint8_t *end, uint8_t *dst, Py_ssize_t *n,
                                  int *esc)
{
    uint8_t *d = dst;
    *esc = 0;
    for (;;) {
#if defined(__SSE2__)
        const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
        const __m128i low = _mm_set1_epi8(0x20);
        while (end - p >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)p);
            /* signed: bytes 0x80-0xff are negative, so below 0x20 too */
            __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                                     _mm_cmplt_epi8(v, low));
            int mask = _mm_movemask_epi8(m);
            _mm_storeu_si128((__m128i *)d, v); /* the bytes before the first special one stay */
            if (mask) {
                int k = __builtin_ctz((unsigned)mask);
                p += k;
                d += k;
                goto special;
            }
            p += 16;
            d += 16;
        }
#endif
        while (p < end && regular(*p)) *d++ = *p++;
        if (p >= end) return NULL;
#if defined(__SSE2__)
    special:
#endif
        if (*p == '"') {
            *n = d - dst;
            return p + 1;
        }
        if (*p != '\\' || end - p < 2) return NULL;
        *esc = 1;
        if (p[1] == 'u') {
            int a, b, c, e;
            if (end - p < 6) return NULL;
            a = hexval(p[2]); b = hexval(p[3]); c = hexval(p[4]); e = hexval(p[5]);
            if ((a | b | c | e) < 0 || a || b || c > 7) return NULL; /* only \u0000-\u007f */
            *d++ = (uint8_t)(c << 4 | e);
            p += 6;
        } else {
            uint8_t c = escaped[p[1]];
            if (!c) return NULL;
            *d++ = c;
            p += 2;
        }
    }
}

/* A JSON number from its first byte; NULL if it is not one.  *is_int: no fraction or exponent. */
static const uint8_t *scan_number(const uint8_t *p, const uint8_t *end, int *is_int)
{
    *is_int = 1;
    if (p < end && *p == '-') p++;
    if (p >= end) return NULL;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') p++;
    } else {
        return NULL;
    }
    if (p < end && *p == '.') {
        *is_int = 0;
        p++;
        if (p >= end || *p < '0' || *p > '9') return NULL;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        *is_int = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return NULL;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    return p;
}

static inline int literal(const uint8_t *p, const uint8_t *end, const char *word, Py_ssize_t n)
{
    return end - p >= n && memcmp(p, word, (size_t)n) == 0;
}

/*
 * Walks one line; fills vals[i] with the last value of names[i], its strings decoded into
 * slot[1 + i] (slot[0] takes keys and the strings of other fields; each slot has room for the
 * line plus SLACK).  Returns 1 for a plain object, 0 for a line sent to Python.
 */
static int scan_object(const uint8_t *p, const uint8_t *end, const fname *names, int nnames, value *vals,
                       uint8_t **slot)
{
    int i;
    for (i = 0; i < nnames; i++) vals[i].kind = V_ABSENT;
    p = skip_ws(p, end);
    if (p >= end || *p != '{') return 0;
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') return 0; /* {}: no text field; Python words the dead letter */
    for (;;) {
        const uint8_t *q, *vs = NULL;
        Py_ssize_t klen, vn = 0;
        int esc, which[3], nw = 0, kind, is_int;
        if (p >= end || *p != '"') return 0;
        q = read_string(p + 1, end, slot[0], &klen, &esc);
        if (q == NULL || esc) return 0; /* keys with escapes: Python compares them */
        for (i = 0; i < nnames; i++)
            if (names[i].len == klen && memcmp(names[i].name, slot[0], (size_t)klen) == 0) which[nw++] = i;
        p = skip_ws(q, end);
        if (p >= end || *p != ':') return 0;
        p = skip_ws(p + 1, end);
        if (p >= end) return 0;
        if (*p == '"') {
            /* names equal to this key are equal to each other: they share one slot */
            uint8_t *dst = slot[nw ? 1 + which[0] : 0];
            q = read_string(p + 1, end, dst, &vn, &esc);
            if (q == NULL) return 0;
            kind = V_STR;
            vs = dst;
        } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
            q = scan_number(p, end, &is_int);
            if (q == NULL) return 0;
            vn = q - p;
            kind = (is_int && vn <= MAX_INT_DIGITS && !(vn == 2 && p[0] == '-' && p[1] == '0')) ? V_INT
                                                                                                : V_OTHER;
            vs = p;
        } else if (literal(p, end, "true", 4)) {
            kind = V_OTHER;
            q = p + 4;
        } else if (literal(p, end, "false", 5)) {
            kind = V_OTHER;
            q = p + 5;
        } else if (literal(p, end, "null", 4)) {
            kind = V_NULL;
            q = p + 4;
        } else {
            return 0; /* an array, an object, NaN, or not JSON */
        }
        for (i = 0; i < nw; i++) {
            vals[which[i]].kind = kind;
            vals[which[i]].s = vs;
            vals[which[i]].n = vn;
        }
        p = skip_ws(q, end);
        if (p >= end) return 0;
        if (*p == '}') break;
        if (*p != ',') return 0;
        p = skip_ws(p + 1, end);
    }
    return skip_ws(p + 1, end) == end;
}

/* An ASCII str of n bytes (the first keep of them, then "...", when keep < n). */
static PyObject *ascii_str(const uint8_t *s, Py_ssize_t n, Py_ssize_t keep)
{
    PyObject *out = PyUnicode_New(keep < n ? keep + 3 : n, 127);
    if (out == NULL) return NULL;
    if (keep < n) {
        memcpy(PyUnicode_1BYTE_DATA(out), s, (size_t)keep);
        memcpy(PyUnicode_1BYTE_DATA(out) + keep, "...", 3);
    } else {
        memcpy(PyUnicode_1BYTE_DATA(out), s, (size_t)n);
    }
    return out;
}

/* str.isspace() of ASCII text, which is what blank text is */
static int all_space(const uint8_t *d, Py_ssize_t n)
{
    Py_ssize_t i;
    for (i = 0; i < n; i++) {
        uint8_t c = d[i];
        if (!((c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20))) return 0;
    }
    return 1;
}

/* The record's Document, or NULL with no error set when Python decides it (or with one set). */
static PyObject *document(PyObject *rec, const fname *names, int nnames, PyTypeObject *doc_type,
                          PyObject *empty, PyObject *missing, uint8_t **slot)
{
    PyObject *data = PyTuple_GET_ITEM(rec, 2), *text = NULL, *id = NULL, *group = NULL, *doc;
    value vals[3];
    const uint8_t *b;
    if (!PyBytes_Check(data) || PyBytes_GET_SIZE(data) > MAX_LINE) return NULL;
    b = (const uint8_t *)PyBytes_AS_STRING(data);
    if (!scan_object(b, b + PyBytes_GET_SIZE(data), names, nnames, vals, slot)) return NULL;
    if (vals[0].kind != V_STR || vals[0].n == 0 || all_space(vals[0].s, vals[0].n)) return NULL;
    if (vals[1].kind != V_STR && vals[1].kind != V_INT) return NULL;
    if (nnames > 2 && vals[2].kind != V_STR && vals[2].kind != V_ABSENT && vals[2].kind != V_NULL)
        return NULL;
    text = ascii_str(vals[0].s, vals[0].n, vals[0].n);
    id = ascii_str(vals[1].s, vals[1].n, vals[1].n); /* a string's bytes, or an integer's digits */
    if (nnames < 3)
        group = Py_NewRef(Py_None);
    else if (vals[2].kind == V_STR) /* group_value: cut to GROUP_MAX_CHARS, "..." included */
        group = ascii_str(vals[2].s, vals[2].n, vals[2].n > GROUP_MAX_CHARS ? GROUP_MAX_CHARS - 3 : vals[2].n);
    else
        group = Py_NewRef(missing);
    if (text == NULL || id == NULL || group == NULL) goto fail;
    doc = doc_type->tp_alloc(doc_type, 6);
    if (doc == NULL) goto fail;
    PyTuple_SET_ITEM(doc, 0, id);
    PyTuple_SET_ITEM(doc, 1, text);
    PyTuple_SET_ITEM(doc, 2, Py_NewRef(PyTuple_GET_ITEM(rec, 0)));
    PyTuple_SET_ITEM(doc, 3, Py_NewRef(PyTuple_GET_ITEM(rec, 1)));
    PyTuple_SET_ITEM(doc, 4, Py_NewRef(empty));
    PyTuple_SET_ITEM(doc, 5, group);
    return doc;
fail:
    Py_XDECREF(text);
    Py_XDECREF(id);
    Py_XDECREF(group);
    return NULL;
}

static int ascii_name(PyObject *o, fname *f, const char *what)
{
    if (!PyUnicode_Check(o) || !PyUnicode_IS_ASCII(o)) {
        f->name = NULL; /* a non-ASCII field name: every line goes to Python */
        f->len = -1;
        if (!PyUnicode_Check(o)) {
            PyErr_Format(PyExc_TypeError, "%s must be a str", what);
            return -1;
        }
        return 0;
    }
    f->name = (const char *)PyUnicode_1BYTE_DATA(o);
    f->len = PyUnicode_GET_LENGTH(o);
    return 0;
}

static PyObject *py_documents(PyObject *self, PyObject *args)
{
    PyObject *records, *field, *id_field, *group_field, *doc_type, *raw_type, *fallback;
    PyObject *seq = NULL, *out = NULL, *empty = NULL, *missing = NULL;
    fname names[3];
    int nnames = 2, fast = 1, k;
    Py_ssize_t i, n, room = 0;
    uint8_t *scratch = NULL, *slot[4];
    if (!PyArg_ParseTuple(args, "OUUOO!O!O:documents", &records, &field, &id_field, &group_field,
                          &PyType_Type, &doc_type, &PyType_Type, &raw_type, &fallback))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)doc_type, &PyTuple_Type) ||
        !PyType_IsSubtype((PyTypeObject *)raw_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "Document and RawRecord must be tuple types");
        return NULL;
    }
    if (ascii_name(field, &names[0], "field") || ascii_name(id_field, &names[1], "id_field")) return NULL;
    if (group_field != Py_None) {
        if (ascii_name(group_field, &names[2], "group_field")) return NULL;
        nnames = 3;
    }
    for (i = 0; i < nnames; i++) fast &= names[i].name != NULL;
    seq = PySequence_Fast(records, "records must be a sequence");
    if (seq == NULL) return NULL;
    n = PySequence_Fast_GET_SIZE(seq);
    out = PyList_New(n);
    empty = PyBytes_FromStringAndSize("", 0);
    missing = PyUnicode_FromString("(missing)");
    if (out == NULL || empty == NULL || missing == NULL) goto fail;
    for (i = 0; i < n; i++) {
        PyObject *rec = PySequence_Fast_GET_ITEM(seq, i), *res = NULL;
        if (fast && Py_TYPE(rec) == (PyTypeObject *)raw_type && PyTuple_GET_SIZE(rec) == 3) {
            PyObject *data = PyTuple_GET_ITEM(rec, 2);
            Py_ssize_t need = PyBytes_Check(data) ? PyBytes_GET_SIZE(data) + SLACK : 0;
            if (need > room && need <= MAX_LINE + SLACK) { /* 1 + nnames slots of `need` bytes */
                uint8_t *grown = PyMem_Realloc(scratch, (size_t)(need * (1 + nnames)));
                if (grown == NULL) {
                    PyErr_NoMemory();
                    goto fail;
                }
                scratch = grown;
                room = need;
            }
            for (k = 0; k <= nnames; k++) slot[k] = scratch + k * room;
            res = document(rec, names, nnames, (PyTypeObject *)doc_type, empty, missing, slot);
            if (res == NULL && PyErr_Occurred()) goto fail;
        }
        if (res == NULL) res = PyObject_CallOneArg(fallback, rec);
        if (res == NULL) goto fail;
        PyList_SET_ITEM(out, i, res);
    }
    PyMem_Free(scratch);
    Py_DECREF(seq);
    Py_DECREF(empty);
    Py_DECREF(missing);
    return out;
fail:
    PyMem_Free(scratch);
    Py_XDECREF(seq);
    Py_XDECREF(out);
    Py_XDECREF(empty);
    Py_XDECREF(missing);
    return NULL;
}

static PyMethodDef methods[] = {
    {"documents", py_documents, METH_VARARGS,
     "documents(records, field, id_field, group_field, Document, RawRecord, fallback) -> list: each "
     "plain JSON line's Document, fallback(record) for every other record."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "_jsonl", NULL, -1, methods};

PyMODINIT_FUNC PyInit__jsonl(void) { return PyModule_Create(&moduledef); }
