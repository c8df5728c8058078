/*
 * A deliberately wrong program, for memcheck: a use after free, a double
 * free and a read one past the end of a 20-byte block (class 32), and the
 * same three on a 3000-byte medium block (class 3072, in a span), all on
 * shed blocks.  check-demo.sh runs it under valgrind with
 * SHED_CONF=on_error=report (so that shed reports the double free and goes
 * on) and checks that memcheck reports each error at the line marked
 * "BUG: <name>" below.  Built with -O0, so each access stays at its line.
 */
#include <stdio.h>

#include "shed.h"

int main(void)
{
    volatile char *p = shed_malloc(20);
    volatile char *q = shed_malloc(20);
    volatile char sink;
    if (!p || !q)
        return 1;
    for (int i = 0; i < 20; i++)
        p[i] = q[i] = (char)i;

    shed_free((void *)p);
    sink = p[3];                        /* BUG: use-after-free */
    shed_free((void *)p);               /* BUG: double-free */
    sink = q[20];                       /* BUG: past-the-end */

    volatile char *m = shed_malloc(3000);
    volatile char *n = shed_malloc(3000);
    if (!m || !n)
        return 1;
    for (int i = 0; i < 3000; i++)
        m[i] = n[i] = (char)i;

    shed_free((void *)m);
    sink = m[2999];                     /* BUG: medium-use-after-free */
    shed_free((void *)m);               /* BUG: medium-double-free */
    sink = n[3000];                     /* BUG: medium-past-the-end */

    (void)sink;
    shed_free((void *)q);
    shed_free((void *)n);
    return 0;
}
