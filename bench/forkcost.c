/*
 * forkcost: what fork() costs a process that allocates between forks, as a
 * server that forks a worker per job does.  LIVE small blocks of Python-like
 * sizes stay allocated; each of FORKS rounds replaces a tenth of them (so
 * that pools empty and new ones are taken: under shed the release thread
 * has work and runs), then forks a child that exits at once, and waits for
 * it.  Prints the median time of the fork() call in the parent (under shed
 * it includes ending the release thread) and the median time of a whole
 * round (churn, fork, wait: under shed, starting the thread again and
 * faulting in the pools released at the fork).
 * Usage: forkcost [FORKS [LIVE]]
 */
#include <sys/wait.h>

#include "common.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double median_us(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_u64);
    return (double)v[n / 2] / 1e3;
}

int main(int argc, char **argv)
{
    size_t forks = argc > 1 ? parse_count(argv[1]) : 300;
    size_t live = argc > 2 ? parse_count(argv[2]) : 200000;
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    char **slot = map_array(live * sizeof *slot);
    uint64_t *fork_ns = map_array(forks * sizeof *fork_ns);
    uint64_t *round_ns = map_array(forks * sizeof *round_ns);

    for (size_t i = 0; i < live; i++)
        if (!(slot[i] = malloc(py_size(&seed))))
            die_oom();
    for (size_t r = 0; r < forks; r++) {
        uint64_t t0 = now_ns();
        for (size_t i = r % 10; i < live; i += 10) {
            free(slot[i]);
            size_t len = py_size(&seed);
            if (!(slot[i] = malloc(len)))
                die_oom();
            slot[i][len - 1] = (char)i;
        }
        uint64_t t1 = now_ns();
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        uint64_t t2 = now_ns();
        int status;
        if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0) {
            fprintf(stderr, "forkcost: fork or child failed\n");
            return 1;
        }
        fork_ns[r] = t2 - t1;
        round_ns[r] = now_ns() - t0;
    }
    metric("fork_us", median_us(fork_ns, forks));
    metric("fork_round_us", median_us(round_ns, forks));
    for (size_t i = 0; i < live; i++)
        free(slot[i]);
    return 0;
}
