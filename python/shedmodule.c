/*
 * The Python module shed: shed's calls for a Python program whose malloc is
 * shed (started with shed-run, which preloads libshed.so and sets
 * PYTHONMALLOC=malloc).
 *
 * The module links against nothing of shed's: it finds shed_stats() and the
 * others in the running process with dlsym(RTLD_DEFAULT), so that it works
 * with whichever libshed.so was preloaded, and imports everywhere (active()
 * is then False, and the other calls raise RuntimeError saying how to start
 * the program).  A symbol that library lacks makes only its own call fail.
 *
 * Built against CPython's limited API (one shed.abi3.so for every Python 3
 * from 3.6 on): see setup.py and python.mk.
 */
#define Py_LIMITED_API 0x03060000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <link.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shed.h"

/* ---- finding shed in the process ---- */

static struct {
    __typeof__(shed_stats_get) *stats_get;
    __typeof__(shed_stats) *stats;
    __typeof__(shed_stats_print) *stats_print;
    __typeof__(shed_stats_print_json) *stats_print_json;
    __typeof__(shed_heap_map_svg) *heap_map_svg;
    __typeof__(shed_trim) *trim;
    __typeof__(shed_freeze) *freeze;
    __typeof__(shed_thaw) *thaw;
    __typeof__(shed_config) *config;
} api;

static const struct symbol {
    const char *name;
    void **slot;
} symbols[] = {
    { "shed_stats_get", (void **)&api.stats_get },
    { "shed_stats", (void **)&api.stats },
    { "shed_stats_print", (void **)&api.stats_print },
    { "shed_stats_print_json", (void **)&api.stats_print_json },
    { "shed_heap_map_svg", (void **)&api.heap_map_svg },
    { "shed_trim", (void **)&api.trim },
    { "shed_freeze", (void **)&api.freeze },
    { "shed_thaw", (void **)&api.thaw },
    { "shed_config", (void **)&api.config },
};

static int shed_is_malloc;

/* Whether the object at addr defines the symbol there (dladdr1 finds the
 * address of a program's PLT entry too, as an undefined symbol), and which
 * file it is. */
static int defines(void *addr, Dl_info *info)
{
    const ElfW(Sym) *sym = NULL;
    return addr && dladdr1(addr, info, (void **)&sym, RTLD_DL_SYMENT) && sym &&
           sym->st_shndx != SHN_UNDEF;
}

/* The file whose malloc the process calls, or NULL.  Usually dlsym finds
 * it; but in a program built without -pie that takes malloc's address
 * (Debian's python3), dlsym gives the program's PLT entry, and the calls go
 * to the first definition after the program in load order. */
static const char *malloc_file(void)
{
    Dl_info info;
    if (defines(dlsym(RTLD_DEFAULT, "malloc"), &info))
        return info.dli_fname;
    struct link_map *lm = NULL;
    void *self = dlopen(NULL, RTLD_LAZY | RTLD_NOLOAD);
    if (!self || dlinfo(self, RTLD_DI_LINKMAP, &lm) != 0)
        return NULL;
    for (; lm; lm = lm->l_next) {
        if (!lm->l_name || !*lm->l_name)
            continue;                   /* the program */
        void *h = dlopen(lm->l_name, RTLD_LAZY | RTLD_NOLOAD);
        if (!h)
            continue;
        int own = defines(dlsym(h, "malloc"), &info) &&
                  strcmp(info.dli_fname, lm->l_name) == 0;
        dlclose(h);
        if (own)
            return info.dli_fname;
    }
    return NULL;
}

/* shed is the process's malloc when the malloc every library calls lives in
 * the same file as shed_malloc (libshed.so preloaded, or a program linked
 * with it).  A libshed.a linked into a program that keeps glibc's malloc
 * has shed_malloc but not malloc. */
static void find_shed(void)
{
    Dl_info sm;
    const char *m = NULL;
    shed_is_malloc = defines(dlsym(RTLD_DEFAULT, "shed_malloc"), &sm) &&
                     (m = malloc_file()) && strcmp(m, sm.dli_fname) == 0;
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++)
        *symbols[i].slot = shed_is_malloc ? dlsym(RTLD_DEFAULT, symbols[i].name) : NULL;
}

/* The call's function, or NULL with RuntimeError set. */
static void *need(void *fn, const char *name)
{
    if (!shed_is_malloc)
        PyErr_SetString(PyExc_RuntimeError,
                        "shed is not this process's malloc: start the program with "
                        "shed-run (for example: shed-run python3 script.py)");
    else if (!fn)
        PyErr_Format(PyExc_RuntimeError,
                     "the libshed.so in this process has no %s(); use the shed-run "
                     "of the same build as this module", name);
    return shed_is_malloc ? fn : NULL;
}

/* ---- stats(): the fields of struct shed_stats, one table ---- */

struct field {
    const char *name;
    size_t offset, size;        /* of one element */
    size_t count;               /* elements of an array (a list), 0: a number */
};
#define FIELD(type, f) { #f, offsetof(struct type, f), sizeof(((struct type *)0)->f), 0 }
#define ARRAY(type, f)                                                        \
    { #f, offsetof(struct type, f), sizeof(((struct type *)0)->f[0]),         \
      sizeof(((struct type *)0)->f) / sizeof(((struct type *)0)->f[0]) }

/* The fields of struct shed_stats, in the header's order, but the per-class
 * arrays (classes and fill, merged into one list of dicts by stats()).  A new
 * field of shed.h goes here; a field that the library did not fill (an
 * older libshed.so) is left out of the dict. */
static const struct field totals[] = {
    FIELD(shed_stats, blocks_in_use),
    FIELD(shed_stats, bytes_in_use),
    FIELD(shed_stats, pools_in_use),
    FIELD(shed_stats, pools_dirty),
    FIELD(shed_stats, pools_releasing),
    FIELD(shed_stats, pools_released),
    FIELD(shed_stats, arenas),
    FIELD(shed_stats, pool_size),
    FIELD(shed_stats, bytes_reserved),
    FIELD(shed_stats, bytes_mapped),
    FIELD(shed_stats, bytes_resident),
    FIELD(shed_stats, release_syscalls),
    FIELD(shed_stats, release_syscalls_app),
    FIELD(shed_stats, release_batches),
    FIELD(shed_stats, release_ranges),
    FIELD(shed_stats, pages_released),
    FIELD(shed_stats, release_failures),
    FIELD(shed_stats, release_ns),
    FIELD(shed_stats, pools_reused_dirty),
    FIELD(shed_stats, large_allocs),
    FIELD(shed_stats, errors),
    FIELD(shed_stats, size),
    FIELD(shed_stats, pools_untouched),
    ARRAY(shed_stats, pools_by_fill),
    FIELD(shed_stats, spans_in_use),
    FIELD(shed_stats, span_size),
    FIELD(shed_stats, medium_bytes_mapped),
    FIELD(shed_stats, medium_bytes_resident),
};
static const struct field per_class[] = {
    FIELD(shed_class_stats, block_size),
    FIELD(shed_class_stats, blocks_in_use),
    FIELD(shed_class_stats, bytes_in_use),
    FIELD(shed_class_stats, pools_in_use),
};
static const struct field per_class_fill[] = {
    FIELD(shed_class_fill, blocks_per_pool),
    ARRAY(shed_class_fill, pools_by_fill),
};
#define N(table) (sizeof table / sizeof table[0])

static PyObject *read_number(const char *p, size_t size)
{
    if (size == sizeof(uint32_t)) {
        uint32_t v;
        memcpy(&v, p, sizeof v);
        return PyLong_FromUnsignedLongLong(v);
    }
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return PyLong_FromUnsignedLongLong(v);
}

/* A field's value: a number, or a list of them. */
static PyObject *read_field(const char *base, const struct field *f)
{
    if (!f->count)
        return read_number(base + f->offset, f->size);
    PyObject *l = PyList_New((Py_ssize_t)f->count);
    for (size_t i = 0; l && i < f->count; i++) {
        PyObject *v = read_number(base + f->offset + i * f->size, f->size);
        if (!v)
            Py_CLEAR(l);
        else
            PyList_SetItem(l, (Py_ssize_t)i, v);   /* steals v */
    }
    return l;
}

/* Add to d the fields of table[0..n) read from base, those that end within
 * the first filled bytes of the structure at top; -1 on error. */
static int add_fields(PyObject *d, const char *top, size_t filled, const char *base,
                      const struct field *table, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct field *f = &table[i];
        if ((size_t)(base - top) + f->offset + f->size * (f->count ? f->count : 1) > filled)
            continue;
        PyObject *v = read_field(base, f);
        int r = v ? PyDict_SetItemString(d, f->name, v) : -1;
        Py_XDECREF(v);
        if (r < 0)
            return -1;
    }
    return 0;
}

/* Room to spare after the structure, for an older library's shed_stats(),
 * which fills the structure of its own shed.h. */
#define STATS_SLACK 4096

static PyObject *py_stats(PyObject *self, PyObject *noargs)
{
    (void)self, (void)noargs;
    if (!need(api.stats_get ? (void *)api.stats_get : (void *)api.stats, "shed_stats"))
        return NULL;
    char *buf = calloc(1, sizeof(struct shed_stats) + STATS_SLACK);
    if (!buf)
        return PyErr_NoMemory();
    struct shed_stats *st = (struct shed_stats *)buf;
    /* shed_stats_get fills as much as both sides know and says so in size;
     * a library without it fills shed 0.1.0's structure. */
    int r = api.stats_get ? api.stats_get(st, sizeof *st) : api.stats(st);
    size_t filled = api.stats_get ? st->size : SHED_STATS_SIZE_0_1;
    if (r != 0 || filled > sizeof *st) {
        free(buf);
        PyErr_SetString(PyExc_RuntimeError, "shed_stats() failed");
        return NULL;
    }
    PyObject *d = PyDict_New();
    PyObject *classes = d ? PyList_New(SHED_NUM_CLASSES) : NULL;
    if (classes && add_fields(d, buf, filled, buf, totals, N(totals)) < 0)
        Py_CLEAR(classes);
    for (size_t c = 0; classes && c < SHED_NUM_CLASSES; c++) {
        PyObject *cd = PyDict_New();
        if (!cd || add_fields(cd, buf, filled, (const char *)&st->classes[c], per_class, N(per_class)) < 0 ||
            add_fields(cd, buf, filled, (const char *)&st->fill[c], per_class_fill, N(per_class_fill)) < 0) {
            Py_XDECREF(cd);
            Py_CLEAR(classes);
        } else
            PyList_SetItem(classes, (Py_ssize_t)c, cd);   /* steals cd */
    }
    free(buf);
    if (!classes || PyDict_SetItemString(d, "classes", classes) < 0) {
        Py_XDECREF(classes);
        Py_XDECREF(d);
        return NULL;
    }
    Py_DECREF(classes);
    return d;
}

/* ---- the other calls ---- */

static PyObject *py_active(PyObject *self, PyObject *noargs)
{
    (void)self, (void)noargs;
    return PyBool_FromLong(shed_is_malloc);
}

static PyObject *py_trim(PyObject *self, PyObject *noargs)
{
    (void)self, (void)noargs;
    __typeof__(shed_trim) *fn = need(api.trim, "shed_trim");
    if (!fn)
        return NULL;
    size_t n;
    Py_BEGIN_ALLOW_THREADS
    n = fn();
    Py_END_ALLOW_THREADS
    return PyLong_FromSize_t(n);
}

static PyObject *py_freeze(PyObject *self, PyObject *noargs)
{
    (void)self, (void)noargs;
    __typeof__(shed_freeze) *fn = need(api.freeze, "shed_freeze");
    if (!fn)
        return NULL;
    fn();
    Py_RETURN_NONE;
}

static PyObject *py_thaw(PyObject *self, PyObject *noargs)
{
    (void)self, (void)noargs;
    __typeof__(shed_thaw) *fn = need(api.thaw, "shed_thaw");
    if (!fn)
        return NULL;
    fn();
    Py_RETURN_NONE;
}

/* Each item is given to shed_config() on its own, as shed applies them in
 * order anyway, so that the error names the items shed refused; any
 * non-zero return is a refusal. */
static PyObject *py_config(PyObject *self, PyObject *args)
{
    (void)self;
    const char *settings;
    if (!PyArg_ParseTuple(args, "s:config", &settings))
        return NULL;
    __typeof__(shed_config) *fn = need(api.config, "shed_config");
    if (!fn)
        return NULL;
    /* bad: the refused items, each quoted, ", " between them */
    char *copy = strdup(settings), *bad = calloc(3, strlen(settings) + 1);
    if (!copy || !bad) {
        free(copy);
        free(bad);
        return PyErr_NoMemory();
    }
    int nbad = 0;
    char *save;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        if (fn(item) != 0) {
            strcat(bad, nbad++ ? ", '" : "'");
            strcat(bad, item);
            strcat(bad, "'");
        }
    }
    free(copy);
    if (nbad)
        PyErr_Format(PyExc_ValueError,
                     "shed: %s %s: unknown key or bad value (see shed_config(3))%s",
                     nbad > 1 ? "bad settings" : "bad setting", bad,
                     strchr(settings, ',') ? "; the other settings were applied" : "");
    free(bad);
    if (nbad)
        return NULL;
    Py_RETURN_NONE;
}

/* What shed writes to a FILE, caught in memory: text_open, the call, then
 * text_close, which gives it as a str (NULL with an exception set). */
struct text {
    char *buf;
    size_t len;
    FILE *f;
};

static FILE *text_open(struct text *t)
{
    t->buf = NULL;
    t->len = 0;
    t->f = open_memstream(&t->buf, &t->len);
    if (!t->f)
        PyErr_NoMemory();
    return t->f;
}

static PyObject *text_close(struct text *t)
{
    PyObject *s = NULL;
    if (fclose(t->f) != 0)
        PyErr_NoMemory();
    else
        s = PyUnicode_DecodeUTF8(t->buf, (Py_ssize_t)t->len, "replace");
    free(t->buf);
    return s;
}

static PyObject *py_stats_json(PyObject *self, PyObject *noargs)
{
    (void)self, (void)noargs;
    __typeof__(shed_stats_print_json) *fn = need(api.stats_print_json, "shed_stats_print_json");
    struct text t;
    if (!fn || !text_open(&t))
        return NULL;
    fn(t.f);
    return text_close(&t);
}

static PyObject *py_heap_map_svg(PyObject *self, PyObject *noargs)
{
    (void)self, (void)noargs;
    __typeof__(shed_heap_map_svg) *fn = need(api.heap_map_svg, "shed_heap_map_svg");
    struct text t;
    if (!fn || !text_open(&t))
        return NULL;
    int r = fn(t.f);
    PyObject *s = text_close(&t);
    if (s && r != 0) {
        Py_DECREF(s);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return s;
}

static PyObject *py_print_stats(PyObject *self, PyObject *args, PyObject *kw)
{
    (void)self;
    static char *names[] = { "file", NULL };
    PyObject *file = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:print_stats", names, &file))
        return NULL;
    __typeof__(shed_stats_print) *fn = need(api.stats_print, "shed_stats_print");
    if (!fn)
        return NULL;
    if (file == Py_None) {
        file = PySys_GetObject("stdout");       /* borrowed */
        if (!file || file == Py_None)
            Py_RETURN_NONE;                      /* no stdout: as print() */
    }
    struct text t;
    if (!text_open(&t))
        return NULL;
    fn(t.f);
    PyObject *text = text_close(&t);
    PyObject *r = text ? PyObject_CallMethod(file, "write", "O", text) : NULL;
    Py_XDECREF(text);
    if (!r)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    { "active", py_active, METH_NOARGS,
      "active() -> bool\n\nTrue when shed is this process's malloc (the program was "
      "started with shed-run,\nor with libshed.so preloaded)." },
    { "stats", py_stats, METH_NOARGS,
      "stats() -> dict\n\nshed's statistics: the fields of struct shed_stats "
      "(see shed_stats(3)), with\n'classes' a list of one dict per size class." },
    { "trim", py_trim, METH_NOARGS,
      "trim() -> int\n\nGive every free pool back to the kernel now; returns the "
      "bytes released\n(shed_trim(3))." },
    { "freeze", py_freeze, METH_NOARGS,
      "freeze()\n\nSeal every pool in use now, so that later allocations, here or "
      "in fork()ed\nchildren, go to fresh pools (shed_freeze(3)).  Call it after "
      "gc.freeze(),\nright before forking workers." },
    { "thaw", py_thaw, METH_NOARGS,
      "thaw()\n\nUnseal the pools sealed by freeze() (shed_thaw(3))." },
    { "config", py_config, METH_VARARGS,
      "config(settings)\n\nApply 'key=value[,key=value...]' as SHED_CONF would "
      "(shed_config(3)); raises\nValueError naming the items shed refused (the "
      "others are applied)." },
    { "print_stats", (PyCFunction)(void (*)(void))py_print_stats,
      METH_VARARGS | METH_KEYWORDS,
      "print_stats(file=None)\n\nWrite shed's statistics table to file "
      "(sys.stdout by default)." },
    { "stats_json", py_stats_json, METH_NOARGS,
      "stats_json() -> str\n\nshed's statistics as one JSON object, as SHED_STATS=json "
      "prints it\n(shed_stats_print_json(3)): json.loads() it." },
    { "heap_map_svg", py_heap_map_svg, METH_NOARGS,
      "heap_map_svg() -> str\n\nThe heap map: an SVG picture of shed's region, a cell "
      "per pool coloured\nby state and fill (shed_heap_map_svg(3))." },
    { NULL, NULL, 0, NULL },
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "shed",
    "shed's calls for a Python program whose malloc is shed.\n\n"
    "Start the program with shed-run (shed-run(1)): it preloads libshed.so and\n"
    "sets PYTHONMALLOC=malloc, so that Python's objects come to shed.  Without\n"
    "it, active() is False and the other calls raise RuntimeError.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_shed(void)
{
    find_shed();
    return PyModule_Create(&module);
}
