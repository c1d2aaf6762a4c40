/* Replicas of one cell as child processes (bench_cluster.h). */
#define _GNU_SOURCE /* pipe2, nftw */
#include "cmd/bench_cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t bc_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void bc_sleep_ms(uint32_t ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* A loopback port that was free a moment ago: every replica must know every peer address
 * before any of them starts, so the peer ports cannot be left to the nodes. */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

/* Waits for pid; returns its wait status. */
static int wait_for(pid_t pid) {
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return st;
}

int bc_spawn(const char *const argv[], const char *log, const char *marker, pid_t *pid_out) {
    int log_fd = -1, fds[2];
    if (log && (log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0) {
        fprintf(stderr, "cellpay bench: cannot open %s: %s\n", log, strerror(errno));
        return -1;
    }
    /* Close-on-exec: a child started later must not hold another's pipe or log open. */
    if (pipe2(fds, O_CLOEXEC) != 0) {
        if (log_fd >= 0) close(log_fd);
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* Between fork and exec a process with other threads may only make
         * async-signal-safe calls: everything was prepared above. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);    /* the child never outlives the benchmark */
        if (getppid() != parent) _exit(127); /* the benchmark died before the prctl */
        dup2(fds[1], 1);
        if (log_fd >= 0) dup2(log_fd, 2);
        execv("/proc/self/exe", (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    if (log_fd >= 0) close(log_fd);
    if (pid < 0) {
        close(fds[0]);
        fprintf(stderr, "cellpay bench: fork: %s\n", strerror(errno));
        return -1;
    }
    /* The server prints "<marker>HOST:PORT" once it has recovered and bound its port. */
    FILE *f = fdopen(fds[0], "r");
    char line[256];
    int port = -1;
    while (f && port < 0 && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, marker);
        const char *colon = p ? strrchr(p, ':') : NULL;
        if (colon) port = atoi(colon + 1);
    }
    if (f)
        fclose(f);
    else
        close(fds[0]);
    if (port <= 0) {
        int st = wait_for(pid);
        fprintf(stderr, "cellpay bench: `cellpay %s` did not start (%s %d)%s%s\n", argv[1],
                WIFEXITED(st) ? "exit status" : "signal",
                WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), log ? "; see " : "",
                log ? log : "");
        return -1;
    }
    *pid_out = pid;
    return port;
}

int bc_start_replica(bc_cluster_t *c, uint32_t i) {
    bc_replica_t *r = &c->r[i];
    const bc_options_t *o = &c->opt;
    char listen[32], id[16], am[16], tm[16], em[16];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", r->port);
    snprintf(id, sizeof id, "%u", i + 1);
    snprintf(am, sizeof am, "%u", o->accounts_max);
    snprintf(tm, sizeof tm, "%u", o->transfers_max);
    snprintf(em, sizeof em, "%u", o->election_ms);
    const char *argv[24] = {"cellpay", "node", "--data", r->dir, "--listen", listen};
    int argc = 6;
    if (o->accounts_max) argv[argc++] = "--accounts-max", argv[argc++] = am;
    if (o->transfers_max) argv[argc++] = "--transfers-max", argv[argc++] = tm;
    if (o->replicas > 1) {
        argv[argc++] = "--cell", argv[argc++] = "1", argv[argc++] = "--id", argv[argc++] = id;
        argv[argc++] = "--peers", argv[argc++] = c->peers;
        if (o->election_ms) argv[argc++] = "--election-ms", argv[argc++] = em;
    }
    argv[argc] = NULL;
    pid_t pid;
    int port = bc_spawn(argv, r->log[0] ? r->log : NULL, "listening on ", &pid);
    if (port <= 0) {
        fprintf(stderr, "cellpay bench: replica %u did not start in %s\n", i + 1, r->dir);
        return -1;
    }
    r->pid = pid;
    r->port = port;
    snprintf(r->addr, sizeof r->addr, "127.0.0.1:%d", port);
    return 0;
}

int bc_start(bc_cluster_t *c, const bc_options_t *options) {
    *c = (bc_cluster_t){.opt = *options};
    snprintf(c->root, sizeof c->root, "/tmp/cellpay-bench-XXXXXX");
    if (!mkdtemp(c->root)) {
        fprintf(stderr, "cellpay bench: cannot create a temporary directory: %s\n",
                strerror(errno));
        c->root[0] = '\0';
        return -1;
    }
    size_t pl = 0;
    for (uint32_t i = 0; c->opt.replicas > 1 && i < c->opt.replicas; i++) {
        int port = free_port();
        if (port <= 0) return -1;
        pl += (size_t)snprintf(c->peers + pl, sizeof c->peers - pl, "%s%u=127.0.0.1:%d",
                               i ? "," : "", i + 1, port);
    }
    size_t al = 0;
    for (uint32_t i = 0; i < c->opt.replicas; i++) {
        bc_replica_t *r = &c->r[i];
        snprintf(r->dir, sizeof r->dir, "%s/r%u", c->root, i + 1);
        if (c->opt.logs) snprintf(r->log, sizeof r->log, "%s/r%u.log", c->root, i + 1);
        if (bc_start_replica(c, i) != 0) return -1;
        al += (size_t)snprintf(c->addrs + al, sizeof c->addrs - al, "%s%s", i ? "," : "", r->addr);
    }
    return 0;
}

int bc_kill(bc_cluster_t *c, uint32_t i, int sig, uint64_t *sent_ns) {
    bc_replica_t *r = &c->r[i];
    if (r->pid <= 0) return -1;
    kill(r->pid, sig);
    if (sent_ns) *sent_ns = bc_now_ns();
    int st = wait_for(r->pid);
    r->pid = 0;
    return st;
}

bool bc_alive(bc_cluster_t *c, uint32_t i) {
    bc_replica_t *r = &c->r[i];
    if (r->pid <= 0) return false;
    int st;
    if (waitpid(r->pid, &st, WNOHANG) == r->pid) r->pid = 0;
    return r->pid > 0;
}

void bc_dump_logs(const bc_cluster_t *c, uint32_t lines) {
    for (uint32_t i = 0; i < c->opt.replicas; i++) {
        FILE *f = c->r[i].log[0] ? fopen(c->r[i].log, "r") : NULL;
        if (!f) continue;
        /* The end of the file is enough: the last lines are what tell why. */
        static char buf[1 << 16];
        if (fseek(f, 0, SEEK_END) == 0 && ftell(f) > (long)sizeof buf - 1)
            fseek(f, -((long)sizeof buf - 1), SEEK_END);
        else
            rewind(f);
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        size_t start = n > 0 && buf[n - 1] == '\n' ? n - 1 : n;
        for (uint32_t seen = 0; start > 0; start--)
            if (buf[start - 1] == '\n' && ++seen == lines) break;
        fprintf(stderr, "--- the end of replica %u's log (%s):\n%s", i + 1, c->r[i].log,
                buf + start);
    }
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 ? 0 : -1;
}

void bc_stop_pid(pid_t pid, const char *name) {
    kill(pid, SIGTERM);
    /* A server stops after the log write in flight; one that hangs is not waited for
     * forever (its data is about to be removed anyway). */
    int st;
    uint64_t t0 = bc_now_ns();
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (bc_now_ns() - t0 > 10000000000ull) {
            fprintf(stderr, "cellpay bench: %s did not stop within 10 s; killing it\n", name);
            kill(pid, SIGKILL);
            wait_for(pid);
            break;
        }
        bc_sleep_ms(5);
    }
}

void bc_remove_tree(const char *path) {
    if (path[0] && nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "cellpay bench: could not remove %s\n", path);
}

void bc_stop(bc_cluster_t *c) {
    for (uint32_t i = 0; i < c->opt.replicas; i++) {
        bc_replica_t *r = &c->r[i];
        if (r->pid <= 0) continue;
        char name[32];
        snprintf(name, sizeof name, "replica %u", i + 1);
        bc_stop_pid(r->pid, name);
        r->pid = 0;
    }
    bc_remove_tree(c->root);
    c->root[0] = '\0';
}
