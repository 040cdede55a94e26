/* linebounce: the price of one shared cache line written by two cores, for the scaling
 * model in docs/BENCHMARKS.md (issue #18). Two threads pinned to CPUs 0 and 1 each do N
 * atomic adds, first on one shared counter, then each on its own 128-byte-aligned one,
 * and a mutex taken by both; prints ns per operation. Not a bench/compare scenario.
 * Build: gcc -O2 -pthread -o linebounce linebounce.c; run: ./linebounce [N]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long n = 20000000;
static _Atomic long shared;
static struct { _Alignas(128) _Atomic long v; } own[2];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long plain;
static int mode;
static pthread_barrier_t start;

static void *worker(void *arg) {
    long id = (long)arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET((int)id, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    pthread_barrier_wait(&start);
    for (long i = 0; i < n; i++) {
        if (mode == 0) atomic_fetch_add_explicit(&shared, 1, memory_order_relaxed);
        else if (mode == 1) atomic_fetch_add_explicit(&own[id].v, 1, memory_order_relaxed);
        else { pthread_mutex_lock(&mu); plain++; pthread_mutex_unlock(&mu); }
    }
    return NULL;
}

static double run(int m, int threads) {
    struct timespec a, b;
    pthread_t t[2];
    mode = m;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    for (long i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    clock_gettime(CLOCK_MONOTONIC, &a);
    pthread_barrier_wait(&start);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    pthread_barrier_destroy(&start);
    return ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / (double)n;
}

int main(int argc, char **argv) {
    if (argc > 1) n = atol(argv[1]);
    static const char *names[] = {"one shared atomic", "own padded atomic", "shared mutex"};
    for (int m = 0; m < 3; m++)
        printf("%-18s 1 thread %6.1f ns/op   2 threads %6.1f ns/op (per thread)\n", names[m],
               run(m, 1), run(m, 2));
    return 0;
}
