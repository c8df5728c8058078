/*
 * Reporting bad input: one line on stderr naming the error, the address and
 * the call, then abort() (on_error=abort, the default) or carry on having
 * changed nothing (on_error=report).  In the checking build (SHED_DEBUG), a
 * failed internal check too (check_failed).
 */
#include <stdlib.h>

#include "shed_impl.h"

static const char *const what[] = {
    [E_DOUBLE] = "double free of ",
    [E_INVALID] = "invalid pointer ",
    [E_INTERIOR] = "interior pointer ",
    [E_HEAP] = "invalid heap ",
};

static char *put_hex(char *out, uintptr_t v)
{
    char tmp[2 * sizeof v];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    *out++ = '0';
    *out++ = 'x';
    while (n)
        *out++ = tmp[--n];
    return out;
}

static char *put_str(char *out, const char *s, const char *end)
{
    while (*s && out < end)
        *out++ = *s++;
    return out;
}

void shed_error(enum err_kind kind, const void *ptr, const char *call)
{
    char line[160], *end = line + sizeof line - 4, *o = line;
    RELAXED_ADD(g.c.errors, 1);
    o = put_str(o, "shed: ", end);
    o = put_str(o, what[kind], end);
    o = put_hex(o, (uintptr_t)ptr);
    o = put_str(o, " in ", end);
    o = put_str(o, call, end);
    o = put_str(o, "()\n", end + 3);
    *o = 0;
    os_write_err(line);
    if (RELAXED_LOAD(g.opt.on_error_abort))
        abort();
}

/* A configuration problem: "shed: <msg>: <detail>". */
void shed_warn(const char *msg, const char *detail)
{
    char line[256], *end = line + sizeof line - 2, *o = line;
    o = put_str(o, "shed: ", end);
    o = put_str(o, msg, end);
    if (detail) {
        o = put_str(o, ": ", end);
        o = put_str(o, detail, end);
    }
    *o++ = '\n';
    *o = 0;
    os_write_err(line);
}

#ifdef SHED_DEBUG
static char *put_dec(char *out, unsigned long v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *out++ = tmp[--n];
    return out;
}

/* The checking build: an invariant does not hold (check.c).  One line,
 * "shed: internal check failed: <what> at <file>:<line>, pool <address>"
 * ("span <address>" in the medium region, a page of the span; "theap
 * <address>" when the check is about one), then abort. */
void check_failed(const char *what, const void *at, const char *file, int line)
{
    char out[512], *end = out + sizeof out - 48, *o = out;
    o = put_str(o, "shed: internal check failed: ", end);
    o = put_str(o, what, end);
    o = put_str(o, " at ", end);
    o = put_str(o, file, end);
    *o++ = ':';
    o = put_dec(o, (unsigned long)line);
    o = put_str(o, in_region(at) ? ", pool " : in_medium(at) ? ", span " : ", theap ", end + 16);
    o = put_hex(o, (uintptr_t)at);
    *o++ = '\n';
    *o = 0;
    os_write_err(out);
    abort();
}
#endif
