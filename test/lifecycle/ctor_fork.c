/*
 * A library whose constructor calls back into the test program
 * (test_forkrace.c): a constructor runs with the dynamic loader's lock held,
 * which is what that test needs.  The program passes its function's address
 * in LC_CTOR_HOOK (hexadecimal).
 */
#include <stdint.h>
#include <stdlib.h>

__attribute__((constructor)) static void ctor_fork(void)
{
    const char *hook = getenv("LC_CTOR_HOOK");
    if (hook) {
        void (*fn)(void) = (void (*)(void))(uintptr_t)strtoull(hook, NULL, 16);
        fn();
    }
}
