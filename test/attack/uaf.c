/*
 * Under ASan (make check-asan): a use after free of a shed block is caught.
 * A child reads a freed block; ASan must kill it with a report that names
 * use-after-poison (shed poisons freed blocks by hand) and the freed address.
 * A control child reads a live block the same way and must exit cleanly.
 */
#include "attack.h"

static volatile unsigned char sink;

static int read_block(void *arg)
{
    bool free_first = arg != NULL;
    unsigned char *p = shed_malloc(48);
    if (!p)
        return 20;
    memset(p, 7, 48);
    fprintf(stderr, "block %p\n", (void *)p);
    if (free_first)
        shed_free(p);
    sink = p[5];                    /* the bad read, when freed */
    return 0;
}

int main(void)
{
    char out[16384], want[64];

    int status = run_child(read_block, NULL, out, sizeof out);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || strstr(out, "AddressSanitizer")) {
        fprintf(stderr, "uaf: reading a live block failed (status %#x):\n%s", status, out);
        return 1;
    }

    status = run_child(read_block, "free", out, sizeof out);
    void *p = NULL;
    const char *b = strstr(out, "block ");
    if (b)
        sscanf(b, "block %p", &p);
    snprintf(want, sizeof want, "%p", (void *)((char *)p + 5));
    if (!p || (WIFEXITED(status) && WEXITSTATUS(status) == 0) ||
        !strstr(out, "ERROR: AddressSanitizer: use-after-poison") || !strstr(out, want)) {
        fprintf(stderr, "uaf: no use-after-poison report on %s (status %#x):\n%s", want, status, out);
        return 1;
    }
    printf("uaf: ASan caught the read of freed shed block %p: use-after-poison\n", p);
    return 0;
}
