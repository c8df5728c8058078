/*
 * Claiming: threads free whole pools and at once allocate again
 * while the release thread runs with delay_ms=0, so that the thread claims
 * pools that an allocation wants back in the same instant.  A pool released
 * while a block in it is live would come back zeroed (MADV_DONTNEED): every
 * block's content is checked, every round.  Some frees cross threads.  At the
 * end the statistics match what the test holds.
 */
#include "lc.h"

enum { NTHREADS = 3, MAXLIVE = 4096, MAILBOX = 256 };

struct mailbox {                 /* blocks one thread hands to the next */
    pthread_mutex_t m;
    void *b[MAILBOX];
    size_t size[MAILBOX];
    unsigned seed[MAILBOX];
    size_t n;
};

struct worker {
    int id;
    long rounds;
    struct mailbox *in, *out;
    /* survivors handed back to main at the end */
    void **keep;
    size_t *keep_size;
    unsigned *keep_seed;
    size_t nkeep;
    long errors;
    long reused;                 /* pages seen freed and handed out again */
};

static void check_block(struct worker *w, void *b, size_t size, unsigned seed)
{
    if (check_fill(b, size, seed) != -1)
        w->errors++;
}

static void drain_mailbox(struct worker *w)
{
    pthread_mutex_lock(&w->in->m);
    for (size_t i = 0; i < w->in->n; i++) {
        check_block(w, w->in->b[i], w->in->size[i], w->in->seed[i]);
        shed_free(w->in->b[i]);
    }
    w->in->n = 0;
    pthread_mutex_unlock(&w->in->m);
}

static void *work(void *arg)
{
    struct worker *w = arg;
    uint64_t rnd = 0x9e3779b97f4a7c15ull * (uint64_t)(w->id + 1);
    void **b = lc_scratch(MAXLIVE * sizeof(void *));
    size_t *sz = lc_scratch(MAXLIVE * sizeof(size_t));
    unsigned *sd = lc_scratch(MAXLIVE * sizeof(unsigned));
    void **freed_pages = lc_scratch(MAXLIVE * sizeof(void *));
    size_t n = 0;
    for (long r = 0; r < w->rounds; r++) {
        /* a few pools' worth of one or two classes */
        size_t size = 16 * (1 + test_rand(&rnd) % 32);
        size_t per = page_size() / size, want = per * (2 + test_rand(&rnd) % 4);
        size_t start = n;
        unsigned seed = (unsigned)(r * NTHREADS + w->id);
        while (n < MAXLIVE - 16 && n - start < want) {
            size_t s = size - test_rand(&rnd) % 16;
            void *p = shed_malloc(s);
            if (!p) {
                w->errors++;
                break;
            }
            fill(p, s, seed);
            b[n] = p, sz[n] = s, sd[n] = seed, n++;
        }
        /* everything live must still be intact */
        for (size_t i = 0; i < n; i++)
            check_block(w, b[i], sz[i], sd[i]);
        /* free all but ~3%: whole pools empty and go dirty, the releaser
         * (delay 0) claims them while the next round allocates */
        size_t nfp = 0;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            uint64_t x = test_rand(&rnd) % 100;
            if (x < 3) {
                b[k] = b[i], sz[k] = sz[i], sd[k] = sd[i], k++;
            } else if (x < 8) {
                /* a remote free, by the next thread */
                pthread_mutex_lock(&w->out->m);
                if (w->out->n < MAILBOX) {
                    size_t j = w->out->n++;
                    w->out->b[j] = b[i], w->out->size[j] = sz[i], w->out->seed[j] = sd[i];
                    pthread_mutex_unlock(&w->out->m);
                    continue;
                }
                pthread_mutex_unlock(&w->out->m);
                if (nfp < MAXLIVE)
                    freed_pages[nfp++] = page_of(b[i]);
                shed_free(b[i]);
            } else {
                if (nfp < MAXLIVE)
                    freed_pages[nfp++] = page_of(b[i]);
                shed_free(b[i]);
            }
        }
        n = k;
        if (n > MAXLIVE / 2) {         /* keep the live set bounded */
            for (size_t i = MAXLIVE / 4; i < n; i++) {
                check_block(w, b[i], sz[i], sd[i]);
                shed_free(b[i]);
            }
            n = MAXLIVE / 4;
        }
        drain_mailbox(w);
        /* allocate at once into what was just freed, and check zeros do not
         * show up where a pattern should be */
        void *again[64];
        size_t na = 0;
        for (; na < 64; na++) {
            again[na] = shed_malloc(size);
            if (!again[na]) {
                w->errors++;
                break;
            }
            fill(again[na], size, seed + 7);
        }
        qsort(freed_pages, nfp, sizeof *freed_pages, lc_cmp_ptr);
        for (size_t i = 0; i < na; i++) {
            w->reused += lc_in_pages(freed_pages, nfp, page_of(again[i]));
            check_block(w, again[i], size, seed + 7);
            shed_free(again[i]);
        }
    }
    drain_mailbox(w);
    for (size_t i = 0; i < n; i++)
        check_block(w, b[i], sz[i], sd[i]);
    w->keep = b, w->keep_size = sz, w->keep_seed = sd, w->nkeep = n;
    munmap(freed_pages, MAXLIVE * sizeof(void *));
    return NULL;
}

static void test_claim_race(void **state)
{
    (void)state;
    assert_int_equal(shed_config("release=batched,delay_ms=0,max_dirty=0"), 0);
    struct shed_stats s0 = lc_stats();
    struct mailbox *mb = lc_scratch(NTHREADS * sizeof *mb);
    struct worker w[NTHREADS];
    pthread_t t[NTHREADS];
    long rounds = scaled(20000);
    for (int i = 0; i < NTHREADS; i++) {
        pthread_mutex_init(&mb[i].m, NULL);
        w[i] = (struct worker){ .id = i, .rounds = rounds, .in = &mb[i],
                                .out = &mb[(i + 1) % NTHREADS] };
    }
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);

    /* what is left in the mailboxes is freed here, by main */
    size_t held = 0;
    long errors = 0, reused = 0;
    for (int i = 0; i < NTHREADS; i++) {
        for (size_t j = 0; j < mb[i].n; j++) {
            errors += check_fill(mb[i].b[j], mb[i].size[j], mb[i].seed[j]) != -1;
            shed_free(mb[i].b[j]);
        }
        held += w[i].nkeep;
        errors += w[i].errors;
        reused += w[i].reused;
    }
    assert_int_equal(errors, 0);

    /* The threads' survivors are in the orphanage now; the stats count
     * exactly them. */
    struct shed_stats s1 = lc_stats();
    print_message("      %ld rounds x %d threads: %llu pages released in %llu calls "
                  "(%llu by the program), %llu dirty pools reused, %ld blocks into "
                  "just-freed pages\n", rounds, NTHREADS,
                  (unsigned long long)(s1.pages_released - s0.pages_released),
                  (unsigned long long)(s1.release_syscalls - s0.release_syscalls),
                  (unsigned long long)(s1.release_syscalls_app - s0.release_syscalls_app),
                  (unsigned long long)(s1.pools_reused_dirty - s0.pools_reused_dirty), reused);
    assert_int_equal(s1.blocks_in_use, s0.blocks_in_use + held);
    assert_true(s1.pages_released > s0.pages_released);
    assert_int_equal(s1.release_syscalls_app, s0.release_syscalls_app);
    assert_int_equal(s1.release_failures, 0);
    assert_true(reused > 0);               /* the race was really run */

    for (int i = 0; i < NTHREADS; i++) {
        for (size_t j = 0; j < w[i].nkeep; j++) {
            assert_int_equal(check_fill(w[i].keep[j], w[i].keep_size[j], w[i].keep_seed[j]), -1);
            shed_free(w[i].keep[j]);
        }
        munmap(w[i].keep, MAXLIVE * sizeof(void *));
        munmap(w[i].keep_size, MAXLIVE * sizeof(size_t));
        munmap(w[i].keep_seed, MAXLIVE * sizeof(unsigned));
    }
    shed_trim();
    assert_true(lc_wait_settled(0, LC_WAIT_MS));
    struct shed_stats s2 = lc_stats();
    assert_int_equal(s2.blocks_in_use, s0.blocks_in_use);
    assert_int_equal(s2.pools_in_use, s0.pools_in_use);
    assert_int_equal(s2.pools_dirty, 0);
    assert_int_equal(s2.pools_in_use + s2.pools_dirty + s2.pools_releasing + s2.pools_released,
                     s2.arenas * 64);
    assert_true(s2.bytes_resident <= s0.bytes_resident + 4 * page_size());
}

int main(void)
{
    /* These tests check what freeing releases; under a checker (valgrind,
     * ASan) the quarantine would hold the freed blocks and their pools
     * back: off. */
    if (shed_config("quarantine_kb=0") != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_claim_race),
    };
    return cmocka_run_group_tests_name("lifecycle/race", tests, NULL, NULL);
}
