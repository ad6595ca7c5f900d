/* The machine's own stalls, without Python: one thread per CPU, pinned to it, under
 * SCHED_FIFO at priority 80 (above sonify's and JACK's threads), wakes every millisecond
 * on CLOCK_MONOTONIC (Python's time.monotonic) and prints each wake-up later than
 * THRESHOLD as "cpu due late" (seconds). A late wake-up here is the OS's or the host's
 * (a virtual CPU held back), not the GIL's. bench_live_soak --probe builds and runs it.
 * Stops at end of input (the parent closes the pipe) or SIGTERM. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define PERIOD_NS 1000000L
#define THRESHOLD 0.001

static pthread_mutex_t out = PTHREAD_MUTEX_INITIALIZER;

static double seconds(const struct timespec *t) { return t->tv_sec + t->tv_nsec * 1e-9; }

static void *probe(void *arg) {
    long cpu = (long)arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    struct sched_param param = {.sched_priority = 80};
    if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &param) != 0) {
        fprintf(stderr, "stall_probe: SCHED_FIFO refused on cpu %ld\n", cpu);
    }
    struct timespec next, now;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (;;) {
        next.tv_nsec += PERIOD_NS;
        if (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec += 1;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
        clock_gettime(CLOCK_MONOTONIC, &now);
        double late = seconds(&now) - seconds(&next);
        if (late > THRESHOLD) {
            pthread_mutex_lock(&out);
            printf("%ld %.6f %.6f\n", cpu, seconds(&next), late);
            fflush(stdout);
            pthread_mutex_unlock(&out);
            next = now; /* one stall is one line, not a line per missed millisecond */
        }
    }
    return NULL;
}

int main(void) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    pthread_t thread;
    for (long cpu = 0; cpu < cpus; cpu++) {
        pthread_create(&thread, NULL, probe, (void *)cpu);
    }
    char buffer[64];
    while (read(0, buffer, sizeof buffer) > 0) {
    }
    return 0;
}
