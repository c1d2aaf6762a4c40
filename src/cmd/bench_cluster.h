/* A cell of `cellpay node` replicas as child processes of a benchmark, all on loopback, with
 * their data under one temporary directory. Shared by `bench node` and `bench failover`.
 *
 * Every replica is started from this process's own executable and dies with it
 * (PR_SET_PDEATHSIG), so a benchmark that crashes or is killed leaves no server behind. Start,
 * kill and restart only from the thread that called bc_start(): the death signal follows the
 * thread that forked. */
#ifndef CP_BENCH_CLUSTER_H
#define CP_BENCH_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define BC_REPLICAS_MAX 5u

typedef struct bc_options {
    uint32_t replicas;      /* 1 (a group of one, no peer network), 3 or 5 */
    uint32_t accounts_max;  /* --accounts-max of every replica (0: the node's default) */
    uint32_t transfers_max; /* --transfers-max (0: the node's default) */
    uint32_t election_ms;   /* --election-ms (0: the node's default) */
    bool logs;              /* the replicas' stderr goes to ROOT/rI.log instead of ours */
} bc_options_t;

typedef struct bc_replica {
    pid_t pid;     /* 0 while not running */
    int port;      /* client port, chosen at the first start and kept across restarts */
    char addr[32]; /* "127.0.0.1:PORT" */
    char dir[96];  /* ROOT/rI */
    char log[96];  /* ROOT/rI.log ("" when the replica writes to our stderr) */
} bc_replica_t;

typedef struct bc_cluster {
    bc_options_t opt;
    char root[64];                    /* the temporary directory ("" before bc_start) */
    char peers[BC_REPLICAS_MAX * 32]; /* "1=127.0.0.1:P,2=..." ("" for a group of one) */
    char addrs[BC_REPLICAS_MAX * 32]; /* every replica's client address, comma separated */
    bc_replica_t r[BC_REPLICAS_MAX];
} bc_cluster_t;

/* Creates the temporary directory, picks the peer ports and starts every replica; each
 * learns an ephemeral client port. Returns 0, or -1 with a message on stderr (then call
 * bc_stop() all the same). */
int bc_start(bc_cluster_t *c, const bc_options_t *options);

/* (Re)starts replica i (0-based) on its data directory, peer address and client port; returns
 * once it listens (0) or failed to (-1, with a message on stderr). */
int bc_start_replica(bc_cluster_t *c, uint32_t i);

/* Sends sig to replica i and waits for it to end; returns its wait status (-1 when it was not
 * running). sent_ns (may be NULL) gets bc_now_ns() from just after the signal was sent. */
int bc_kill(bc_cluster_t *c, uint32_t i, int sig, uint64_t *sent_ns);

/* True while replica i runs (reaps it when it has ended on its own). */
bool bc_alive(bc_cluster_t *c, uint32_t i);

/* Copies the last `lines` lines of each replica's log to stderr (when options.logs). */
void bc_dump_logs(const bc_cluster_t *c, uint32_t lines);

/* Stops every running replica (SIGTERM, then waits) and removes the temporary directory. */
void bc_stop(bc_cluster_t *c);

/* Starts `cellpay argv[1] ...` (argv[0] is ignored; NULL-terminated) from this executable as a
 * child that dies with this thread, its stderr to log (NULL: ours), and waits for the line on
 * its stdout that holds marker followed by "HOST:PORT". Returns the port and sets *pid, or -1
 * with a message on stderr (the child has been reaped). */
int bc_spawn(const char *const argv[], const char *log, const char *marker, pid_t *pid);

/* SIGTERM to pid, waits up to 10 s, then SIGKILL; name is for the message. */
void bc_stop_pid(pid_t pid, const char *name);

/* Removes a directory tree (a benchmark's temporary data). */
void bc_remove_tree(const char *path);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bc_now_ns(void);

void bc_sleep_ms(uint32_t ms);

#endif
