/*
 * The stripe lock (struct slock, src/shed_impl.h and src/os.c): a thread
 * that finds it held ends asleep on it (state 2) and gets it when the holder
 * lets go; and under contention it excludes (a counter bumped without
 * atomics under the lock by two threads comes out exact).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>

#include "shed_impl.h"

static struct slock lock;
static atomic_int got;
static unsigned long counter;

static void *take_once(void *arg)
{
    (void)arg;
    slock_lock(&lock);
    atomic_store(&got, 1);
    slock_unlock(&lock);
    return NULL;
}

/* The holder waits until the other thread has marked the lock contended (it
 * spun, then went to sleep or is about to), so the futex path is the one
 * taken; the unlock must wake it. */
static void test_waiter_sleeps_and_wakes(void **state)
{
    (void)state;
    slock_init(&lock);
    slock_lock(&lock);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, take_once, NULL), 0);
    while (atomic_load(&lock.v) != 2)
        sched_yield();
    assert_int_equal(atomic_load(&got), 0);
    slock_unlock(&lock);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(atomic_load(&got), 1);
    assert_int_equal(atomic_load(&lock.v), 0);
}

enum { ROUNDS = 200000 };

static void *bump(void *arg)
{
    (void)arg;
    for (int i = 0; i < ROUNDS; i++) {
        slock_lock(&lock);
        unsigned long c = counter;
        __asm__ __volatile__("" ::: "memory");   /* a window for the other */
        counter = c + 1;
        slock_unlock(&lock);
    }
    return NULL;
}

static void test_excludes(void **state)
{
    (void)state;
    slock_init(&lock);
    counter = 0;
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&t[i], NULL, bump, NULL), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(counter, 3ul * ROUNDS);
    assert_int_equal(atomic_load(&lock.v), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_waiter_sleeps_and_wakes),
        cmocka_unit_test(test_excludes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
