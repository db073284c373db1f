/*
 * The common JSON Lines record made a Document in one pass over its bytes (io.parse.parse_batch).
 *
 *     documents(records, field, id_field, group_field, Document, RawRecord, fallback) -> list
 *
 * For each record: a RawRecord whose line is a plain JSON object becomes its Document here;
 * anything else is passed to fallback(record), whose answer goes in its place.  "Plain" is
 * kept narrow, so that the answer here is surely the one Python's path gives (json.loads and
 * parse_any; tests/unit/test_parsing.py compares them on mutated lines):
 *   - the line is one object, with JSON whitespace around and between its tokens, valid UTF-8
 *     in its strings (as Python's strict decoder reads it) and no control byte inside one;
 *   - its keys have no escapes; its values are strings, numbers, true, false or null (an array
 *     or object sends the line to Python); a key given twice counts with its last value;
 *   - strings decode JSON's escapes, \u ones of a surrogate only as a high-low pair (a lone
 *     surrogate sends the line to Python); numbers follow JSON's grammar;
 *   - the text field is a string that is not empty and not all whitespace (str.isspace);
 *   - the id is a string, or an integer of at most 18 characters other than -0 (the id is
 *     then its digits, as str(int) writes them); absent or null ids (a digest of the text) go
 *     to Python;
 *   - the group, when asked for, is a string (cut to GROUP_MAX_CHARS characters as
 *     group_value cuts it), or absent or null ("(missing)");
 *   - the line is at most MAX_LINE bytes.
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
    const uint8_t *s; /* V_STR: the decoded UTF-8 (in a scratch slot); V_INT: the number's bytes */
    Py_ssize_t n;
    int ascii; /* V_STR: no byte over 0x7f */
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

/* The length of the valid UTF-8 sequence at p (as Python's strict decoder takes it: no
   overlong forms, no surrogates, nothing past U+10FFFF), or 0. */
static inline int utf8_len(const uint8_t *p, const uint8_t *end)
{
    uint8_t c = p[0];
    Py_ssize_t left = end - p;
#define CONT(i) ((p[i] & 0xc0) == 0x80)
    if (c >= 0xc2 && c <= 0xdf) return left >= 2 && CONT(1) ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (left < 3 || !CONT(1) || !CONT(2)) return 0;
        if (c == 0xe0 && p[1] < 0xa0) return 0; /* overlong */
        if (c == 0xed && p[1] > 0x9f) return 0; /* a surrogate */
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (left < 4 || !CONT(1) || !CONT(2) || !CONT(3)) return 0;
        if (c == 0xf0 && p[1] < 0x90) return 0; /* overlong */
        if (c == 0xf4 && p[1] > 0x8f) return 0; /* past U+10FFFF */
        return 4;
    }
#undef CONT
    return 0;
}

static inline int hex4(const uint8_t *p)
{
    int a = hexval(p[0]), b = hexval(p[1]), c = hexval(p[2]), d = hexval(p[3]);
    return (a | b | c | d) < 0 ? -1 : a << 12 | b << 8 | c << 4 | d;
}

/*
 * A string from just past its opening quote, decoded into dst (room for the rest of the line
 * plus SLACK) as UTF-8: returns the position past its closing quote, with *n the decoded
 * length, *esc whether it had escapes and *ascii whether it is all ASCII, or NULL for anything
 * sent to Python (a control byte, which json refuses; invalid UTF-8; a lone surrogate escape;
 * an unknown escape).
 */
static const uint8_t *read_string(const uint8_t *p, const uint8_t *end, uint8_t *dst, Py_ssize_t *n,
                                  int *esc, int *ascii)
{
    uint8_t *d = dst;
    *esc = 0;
    *ascii = 1;
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
        if (*p >= 0x80) { /* one whole UTF-8 sequence, copied */
            int k = utf8_len(p, end);
            if (!k) return NULL;
            memcpy(d, p, (size_t)k);
            d += k;
            p += k;
            *ascii = 0;
            continue;
        }
        if (*p != '\\' || end - p < 2) return NULL;
        *esc = 1;
        if (p[1] == 'u') {
            int cp;
            if (end - p < 6 || (cp = hex4(p + 2)) < 0) return NULL;
            p += 6;
            if (cp >= 0xd800 && cp <= 0xdfff) { /* only a high surrogate followed by a low one */
                int lo;
                if (cp > 0xdbff || end - p < 6 || p[0] != '\\' || p[1] != 'u' || (lo = hex4(p + 2)) < 0xdc00 ||
                    lo > 0xdfff)
                    return NULL;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            }
            if (cp < 0x80) {
                *d++ = (uint8_t)cp;
            } else {
                *ascii = 0;
                if (cp < 0x800) {
                    *d++ = (uint8_t)(0xc0 | cp >> 6);
                } else if (cp < 0x10000) {
                    *d++ = (uint8_t)(0xe0 | cp >> 12);
                    *d++ = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
                } else {
                    *d++ = (uint8_t)(0xf0 | cp >> 18);
                    *d++ = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
                    *d++ = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
                }
                *d++ = (uint8_t)(0x80 | (cp & 0x3f));
            }
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
        int esc, ascii = 1, which[3], nw = 0, kind, is_int;
        if (p >= end || *p != '"') return 0;
        q = read_string(p + 1, end, slot[0], &klen, &esc, &ascii);
        if (q == NULL || esc) return 0; /* keys with escapes: Python compares them */
        for (i = 0; i < nnames; i++)
            if (names[i].len == klen && memcmp(names[i].name, slot[0], (size_t)klen) == 0) which[nw++] = i;
        p = skip_ws(q, end);
        if (p >= end || *p != ':') return 0;
        p = skip_ws(p + 1, end);
        if (p >= end) return 0;
        ascii = 1;
        if (*p == '"') {
            /* names equal to this key are equal to each other: they share one slot */
            uint8_t *dst = slot[nw ? 1 + which[0] : 0];
            q = read_string(p + 1, end, dst, &vn, &esc, &ascii);
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
            vals[which[i]].ascii = ascii;
        }
        p = skip_ws(q, end);
        if (p >= end) return 0;
        if (*p == '}') break;
        if (*p != ',') return 0;
        p = skip_ws(p + 1, end);
    }
    return skip_ws(p + 1, end) == end;
}

/* A V_STR value's str (cut to GROUP_MAX_CHARS characters, "..." included, when cut), or an
   integer's digits. */
static PyObject *make_str(const value *v, int cut)
{
    PyObject *out, *head, *whole;
    if (v->ascii || v->kind != V_STR) {
        Py_ssize_t n = cut && v->n > GROUP_MAX_CHARS ? GROUP_MAX_CHARS : v->n;
        out = PyUnicode_New(n, 127);
        if (out == NULL) return NULL;
        memcpy(PyUnicode_1BYTE_DATA(out), v->s, (size_t)n);
        if (n < v->n) memcpy(PyUnicode_1BYTE_DATA(out) + n - 3, "...", 3);
        return out;
    }
    whole = PyUnicode_DecodeUTF8((const char *)v->s, v->n, NULL); /* valid: read_string checked */
    if (whole == NULL || !cut || PyUnicode_GET_LENGTH(whole) <= GROUP_MAX_CHARS) return whole;
    head = PyUnicode_Substring(whole, 0, GROUP_MAX_CHARS - 3);
    Py_DECREF(whole);
    if (head == NULL) return NULL;
    out = PyUnicode_FromFormat("%U...", head);
    Py_DECREF(head);
    return out;
}

/* str.isspace(): every character whitespace (blank text) */
static int blank(PyObject *s)
{
    Py_ssize_t i, n = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    for (i = 0; i < n; i++)
        if (!Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, i))) return 0;
    return n > 0;
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
    if (vals[0].kind != V_STR || vals[0].n == 0) return NULL;
    if (vals[1].kind != V_STR && vals[1].kind != V_INT) return NULL;
    if (nnames > 2 && vals[2].kind != V_STR && vals[2].kind != V_ABSENT && vals[2].kind != V_NULL)
        return NULL;
    text = make_str(&vals[0], 0);
    if (text == NULL) return NULL;
    if (blank(text)) { /* Python words the dead letter */
        Py_DECREF(text);
        return NULL;
    }
    id = make_str(&vals[1], 0);
    if (nnames < 3)
        group = Py_NewRef(Py_None);
    else if (vals[2].kind == V_STR) /* as group_value cuts it */
        group = make_str(&vals[2], 1);
    else
        group = Py_NewRef(missing);
    if (id == NULL || group == NULL) goto fail;
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

/* A field name as UTF-8 (NULL name: one with a lone surrogate, which no line's key can be). */
static int field_name(PyObject *o, fname *f)
{
    f->name = PyUnicode_AsUTF8AndSize(o, &f->len);
    if (f->name == NULL) {
        PyErr_Clear();
        f->len = -1;
    }
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
    field_name(field, &names[0]);
    field_name(id_field, &names[1]);
    if (group_field != Py_None) {
        if (!PyUnicode_Check(group_field)) {
            PyErr_SetString(PyExc_TypeError, "group_field must be a str or None");
            return NULL;
        }
        field_name(group_field, &names[2]);
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
