/*
 * block_index (src/shed_impl.h), the free fast path's "does this offset
 * start a block, and which": for every class, every page size it claims to
 * be exact for (4 KiB to MAX_PAGE, each power of two) and every offset of
 * the page, it is true exactly at block starts, with the block's index.
 * The magic is computed as pool_classes_init does (ceil(2^32 / size)), and
 * checked against the library's own table for the running page size.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "shed_impl.h"

static uint32_t magic_of(uint32_t size)
{
    return (uint32_t)((((uint64_t)1 << 32) + size - 1) / size);
}

static void test_every_offset_every_page(void **state)
{
    (void)state;
    size_t pages = 0, checked = 0;
    for (size_t page = 4096; page <= MAX_PAGE; page *= 2, pages++) {
        for (uint32_t size = SHED_CLASS_STEP; size <= SHED_MAX_BLOCK; size += SHED_CLASS_STEP) {
            uint32_t magic = magic_of(size);
            size_t wrong = 0;
            for (size_t off = 0; off < page; off++) {
                size_t idx = SIZE_MAX;
                bool starts = block_index(off, magic, &idx);
                bool want = off % size == 0;
                wrong += starts != want || (want && idx != off / size);
            }
            if (wrong)
                fail_msg("page %zu, size %u: %zu offsets wrong", page, (unsigned)size, wrong);
            checked += page;
        }
    }
    assert_int_equal(pages, 6);          /* 4, 8, 16, 32, 64 and 128 KiB */
    assert_int_equal(checked, (size_t)NCLS * (((size_t)256 << 10) - 4096));
}

/* The library's table is the one tested above. */
static void test_library_magic(void **state)
{
    (void)state;
    shed_free(shed_malloc(16));          /* shed starts: g.magic is set */
    for (unsigned c = 0; c < NCLS; c++)
        assert_int_equal(g.magic[c], magic_of((c + 1) * SHED_CLASS_STEP));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_offset_every_page),
        cmocka_unit_test(test_library_magic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
