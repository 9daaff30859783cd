/* Topology from hwloc + libnuma on this machine, and the spill-info tool that prints it. */
#include "spill_topology.h"
#include "test_util.h"

#include <pthread.h>
#include <sched.h>
#include <sys/wait.h>


static void test_read(void **state) {
    (void)state;
    spill_topology t;
    spill_err err = {{0}};
    assert_int_equal(spill_topology_read(&t, &err), 0);
    assert_true(t.n_nodes >= 1);
    assert_true(t.n_cpus >= 1);
    assert_true(t.n_cores >= 1 && t.n_cores <= t.n_cpus);
    assert_true(t.page_size >= 4096);
    int cpus = 0;
    for (int i = 0; i < t.n_nodes; i++) {
        assert_true(t.node[i].total > 0);
        assert_true(t.node[i].free <= t.node[i].total);
        assert_int_equal(t.distance[i][i], 10);
        cpus += t.node[i].n_cpus;
    }
    assert_int_equal(cpus, t.n_cpus); /* every CPU belongs to exactly one node */
    if (t.n_gpus == 0) assert_true(strlen(t.gpu_note) > 0); /* says why there are none */
    for (int g = 0; g < t.n_gpus; g++) {
        assert_true(t.gpu[g].info.total_mem > 0);
        assert_true(strlen(t.gpu[g].link) > 0);
    }
}


static void *affinity_of_thread(void *arg) {
    cpu_set_t *set = arg;
    CPU_ZERO(set);
    pthread_getaffinity_np(pthread_self(), sizeof *set, set);
    return NULL;
}

/* spill_numa_bind (--host-node): the caller and the threads it starts afterwards run on the node's CPUs,
   never on a CPU the process was not allowed before (a taskset of one CPU stays one CPU); a node that is
   not there, or a negative one, is an error naming the flag and the nodes. In a child process, whose
   affinity the rest of the tests do not inherit. */
static void test_numa_bind(void **state) {
    (void)state;
    spill_topology t;
    spill_err err;
    assert_int_equal(spill_topology_read(&t, &err), 0);
    int node = -1;
    for (int i = 0; i < t.n_nodes && node < 0; i++)
        if (t.node[i].n_cpus > 0) node = t.node[i].id;
    assert_true(node >= 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        spill_err e;
        int n = 0, bound = 0;
        if (spill_numa_bind(4096, "--host-node", &n, &bound, &e) == 0 || !strstr(e.msg, "--host-node 4096") ||
            !strstr(e.msg, "nodes"))
            _exit(10);
        if (spill_numa_bind(-3, "--host-node", &n, &bound, &e) == 0) _exit(11);
        cpu_set_t before, mine, theirs, both;
        CPU_ZERO(&before);
        if (sched_getaffinity(0, sizeof before, &before)) _exit(12);
        if (spill_numa_bind(node, "--host-node", &n, &bound, &e)) _exit(13);
        CPU_ZERO(&mine);
        if (sched_getaffinity(0, sizeof mine, &mine) || CPU_COUNT(&mine) != n || n < 1) _exit(14);
        CPU_AND(&both, &mine, &before);
        if (!CPU_EQUAL(&both, &mine)) _exit(15); /* only CPUs it had */
        if (!bound && !CPU_EQUAL(&mine, &before)) _exit(16); /* no NUMA policy: nothing changed */
        pthread_t th;
        if (pthread_create(&th, NULL, affinity_of_thread, &theirs) || pthread_join(th, NULL)) _exit(17);
        if (!CPU_EQUAL(&mine, &theirs)) _exit(18); /* a thread started afterwards: the same CPUs */
        /* one CPU of the node allowed (as under taskset -c): the binding keeps it at that one */
        int one = -1;
        for (int c = 0; c < CPU_SETSIZE && one < 0; c++)
            if (CPU_ISSET(c, &mine)) one = c;
        cpu_set_t single;
        CPU_ZERO(&single);
        CPU_SET(one, &single);
        if (sched_setaffinity(0, sizeof single, &single)) _exit(19);
        if (spill_numa_bind(node, "--host-node", &n, &bound, &e) || n != 1) _exit(20);
        if (sched_getaffinity(0, sizeof mine, &mine) || !CPU_EQUAL(&mine, &single)) _exit(21);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status)) fprintf(stderr, "numa_bind child: status %d\n", WEXITSTATUS(status));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_spill_info(void **state) {
    (void)state;
    static char out[65536];
    spill_topology t;
    spill_err err;
    assert_int_equal(spill_topology_read(&t, &err), 0);
    assert_int_equal(run_capture(SPILL_BIN_DIR "/spill-info", 0, out, sizeof out), 0);
    assert_non_null(strstr(out, "total GiB"));
    assert_non_null(strstr(out, "distances"));
    assert_non_null(strstr(out, "memory backend:"));
    assert_int_equal(run_capture(SPILL_BIN_DIR "/spill-info --json", 0, out, sizeof out), 0);
    assert_true(out[0] == '{');
    assert_non_null(strstr(out, "\"nodes\": ["));
    assert_non_null(strstr(out, "\"gpus\": ["));
    char want[64];
    snprintf(want, sizeof want, "\"logical_cpus\": %d", t.n_cpus);
    assert_non_null(strstr(out, want));
    /* braces balance: the JSON is at least well nested */
    int depth = 0, ok = 1;
    for (char *c = out; *c; c++) {
        depth += (*c == '{' || *c == '[') - (*c == '}' || *c == ']');
        if (depth < 0) ok = 0;
    }
    assert_true(ok && depth == 0);
    assert_int_equal(run_capture(SPILL_BIN_DIR "/spill-info --options", 0, out, sizeof out), 0);
    assert_non_null(strstr(out, "SPILL_HBM_BUDGET"));
    assert_non_null(strstr(out, "SPILL_ALLOC_LOG"));
    assert_int_equal(run_capture(SPILL_BIN_DIR "/spill-info --help", 0, out, sizeof out), 0);
    assert_non_null(strstr(out, "--json"));
    assert_int_equal(run_capture(SPILL_BIN_DIR "/spill-info --bogus 2>/dev/null", 0, out, sizeof out), 2);
    assert_int_equal(run_capture(SPILL_BIN_DIR "/spill-info --backend teleport 2>&1", 0, out, sizeof out), 2);
    assert_non_null(strstr(out, "teleport"));
    assert_int_equal(run_capture("SPILL_BACKEND=nope " SPILL_BIN_DIR "/spill-info 2>&1", 0, out, sizeof out), 2);
    assert_non_null(strstr(out, "SPILL_BACKEND"));
    assert_int_equal(run_capture(SPILL_BIN_DIR "/spill-info --backend host", 0, out, sizeof out), 0);
    assert_non_null(strstr(out, "memory backend: host (asked for by name)"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read), cmocka_unit_test(test_numa_bind),
        cmocka_unit_test(test_spill_info),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
