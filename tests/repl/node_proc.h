/* Helpers for tests that run `cellpay node` as a real process: start it on an ephemeral (or
 * given) loopback port, learn the port from its "listening on" line, kill or stop it. */
#ifndef CP_TEST_NODE_PROC_H
#define CP_TEST_NODE_PROC_H

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct node_proc {
    pid_t pid;
    int port;
    char addr[64];
    FILE *out; /* the node's stdout */
} node_proc_t;

static inline uint64_t np_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A loopback port free right now (the kernel's pick for a socket bound and closed again). */
static inline int np_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        perror("FAIL: a free loopback port");
        exit(1);
    }
    close(fd);
    return ntohs(a.sin_port);
}

static inline void np_sleep_ms(uint64_t ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Starts `cellpay node --data dir --listen 127.0.0.1:port` plus extra args (NULL-ended);
 * port 0 picks one. Returns false (with a message on stderr) when it does not come up. */
static inline bool np_start(node_proc_t *np, const char *cellpay, const char *dir, int port,
                            const char *const *extra) {
    int fds[2];
    if (pipe(fds) != 0) return false;
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    const char *argv[32] = {cellpay, "node", "--data", dir, "--listen", listen};
    int argc = 6;
    for (int i = 0; extra && extra[i] && argc < 31; i++) argv[argc++] = extra[i];
    argv[argc] = NULL;
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
        /* The node dies with the test: a failing test must not leave a server running. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(cellpay, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    np->pid = pid;
    np->out = fdopen(fds[0], "r");
    char line[256];
    while (fgets(line, sizeof line, np->out)) {
        const char *p = strstr(line, "listening on ");
        if (!p) continue;
        const char *colon = strrchr(p, ':');
        np->port = atoi(colon + 1);
        snprintf(np->addr, sizeof np->addr, "127.0.0.1:%d", np->port);
        return true;
    }
    fprintf(stderr, "node did not start (dir %s)\n", dir);
    int st;
    waitpid(pid, &st, 0);
    fclose(np->out);
    np->pid = 0;
    return false;
}

/* Sends sig and waits for the process; returns its wait status. */
static inline int np_stop(node_proc_t *np, int sig) {
    if (np->pid <= 0) return -1;
    kill(np->pid, sig);
    int st = 0;
    while (waitpid(np->pid, &st, 0) < 0 && errno == EINTR) {
    }
    fclose(np->out);
    np->pid = 0;
    return st;
}

/* Runs `cellpay node` expecting it NOT to start; returns its exit status and its stderr (up
 * to cap bytes) in err. */
static inline int np_run_failing(const char *cellpay, const char *dir, char *err, size_t cap) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "timeout 20 %s node --data %s --listen 127.0.0.1:0 2>&1 >/dev/null",
             cellpay, dir);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(err, 1, cap - 1, p);
    err[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif
