/* Unit tests of the Raft core's safety rules (shared/docs/raft-notes.md), each built
 * deterministically on the simulator's manual mode: a lossless FIFO network the test
 * delivers by hand, and fsyncs only when the test says. Each test fails when its rule is
 * broken in src/repl/raft.c (checked once by breaking the code on purpose). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "repl/raft.h"
#include "repl/raft_sim.h"

#define ANY UINT32_MAX
#define ELECTION 10u

static rf_sim_t *sim_new(uint32_t nodes) {
    return rf_sim_create(&(rf_sim_config_t){.seed = 42, .nodes = nodes, .manual = true});
}

static rf_info_t info(rf_sim_t *s, uint32_t i) {
    rf_info_t inf;
    rf_status(rf_sim_raft(s, i), &inf);
    return inf;
}

static void process(rf_sim_t *s) {
    if (!rf_sim_process(s)) {
        rf_sim_print_trace(s, stderr);
        fail_msg("invariant: %s", rf_sim_failure(s));
    }
}

/* Delivers everything, fsyncs every up node, until the network is quiet. */
static void settle(rf_sim_t *s, uint32_t nodes) {
    for (int k = 0; k < 200; k++) {
        process(s);
        for (uint32_t i = 0; i < nodes; i++) rf_sim_fsync(s, i);
        process(s);
        if (!rf_sim_queued(s)) return;
        rf_sim_deliver(s, ANY, ANY, 0);
    }
}

/* Ticks node i alone until it campaigns, then lets the election run. */
static void elect(rf_sim_t *s, uint32_t nodes, uint32_t i) {
    for (uint32_t k = 0; k < 3 * ELECTION && info(s, i).role == RF_FOLLOWER; k++) rf_sim_tick(s, i);
    settle(s, nodes);
    assert_int_equal(rf_sim_leader(s), (int)i);
}

static uint64_t cmd_index(rf_sim_t *s, uint32_t i, uint64_t id) {
    uint64_t index = 0;
    assert_int_equal(rf_sim_propose(s, i, id, &index), RF_OK);
    process(s);
    return index;
}

/* Rule 1 (Figure 8): n1 holds an entry of term t1 that n0 (leader of t1) replicated to it
 * but never learned committed. n1 wins t2 and appends its no-op; once n2 also holds the old
 * entry it sits on a majority, but n1 must not count it committed until the no-op (a
 * current-term entry) is on a majority too. */
static void test_figure8_old_term_not_counted(void **state) {
    (void)state;
    rf_sim_t *s = sim_new(3);
    elect(s, 3, 0);
    uint64_t t1 = info(s, 0).term, c1 = info(s, 0).commit_index;
    uint64_t a = cmd_index(s, 0, 1);
    rf_sim_drop(s, 0, 2, 0);             /* n2 never sees it from n0 */
    rf_sim_deliver(s, 0, 1, RF_MSG_APP); /* n1 does */
    process(s);
    rf_sim_fsync(s, 1);
    process(s);
    rf_sim_crash(s, 0); /* n0 dies before learning of the ack */
    rf_sim_drop(s, ANY, ANY, 0);
    for (uint32_t k = 0; k < ELECTION; k++) rf_sim_tick(s, 2); /* n2's lease on n0 ends */
    process(s);
    rf_sim_drop(s, ANY, ANY, 0);
    for (uint32_t k = 0; k < 3 * ELECTION && info(s, 1).role != RF_LEADER; k++) {
        rf_sim_tick(s, 1);
        process(s);
        rf_sim_deliver(s, 1, 2, 0);
        process(s);
        rf_sim_deliver(s, 2, 1, 0);
        process(s);
    }
    assert_int_equal(info(s, 1).role, RF_LEADER);
    uint64_t noop = info(s, 1).last_index;
    assert_int_equal(noop, a + 1);
    assert_true(rf_term_at(rf_sim_raft(s, 1), a) == t1);
    rf_sim_fsync(s, 1); /* the leader's own log is durable */
    process(s);
    /* n2 lacks a: the first append is rejected, the probe carries a and the no-op. */
    for (int k = 0; k < 4; k++) {
        rf_sim_deliver(s, 1, 2, 0);
        process(s);
        rf_sim_deliver(s, 2, 1, 0);
        process(s);
    }
    assert_int_equal(rf_sim_log_len(s, 2), noop);
    rf_sim_fsync_upto(s, 2, a); /* only the old-term entry is durable on n2: ack = a */
    process(s);
    rf_sim_deliver(s, 2, 1, 0);
    process(s);
    assert_int_equal(info(s, 1).commit_index, c1); /* a is on a majority, yet not counted */
    rf_sim_fsync(s, 2);
    process(s);
    rf_sim_deliver(s, 2, 1, 0);
    process(s);
    assert_int_equal(info(s, 1).commit_index, noop); /* the no-op commits a with it */
    rf_sim_destroy(s);
}

/* Rule 2: a candidate whose durable log is shorter (it crashed and lost its unsynced tail)
 * gets no vote from a node that holds the entry durably. */
static void test_vote_denied_to_shorter_durable_log(void **state) {
    (void)state;
    rf_sim_t *s = sim_new(3);
    elect(s, 3, 0);
    uint64_t a = cmd_index(s, 0, 1);
    rf_sim_deliver(s, 0, ANY, RF_MSG_APP);
    process(s);
    rf_sim_fsync(s, 1);
    rf_sim_crash(s, 2); /* n2 wrote a but never synced it: lost */
    rf_sim_crash(s, 0);
    rf_sim_drop(s, ANY, ANY, 0);
    rf_sim_restart(s, 2);
    assert_int_equal(info(s, 2).last_index, a - 1);
    for (uint32_t k = 0; k < ELECTION; k++) rf_sim_tick(s, 1); /* n1's lease on n0 ends */
    process(s);
    for (uint32_t k = 0; k < 4 * ELECTION; k++) {
        rf_sim_tick(s, 2);
        process(s);
        rf_sim_deliver(s, ANY, ANY, 0);
        process(s);
        assert_int_not_equal(info(s, 2).role, RF_LEADER);
    }
    assert_int_not_equal(info(s, 1).vote, 3u);
    rf_sim_destroy(s);
}

/* Rule 5: a node does not campaign while an entry it holds is not durable. */
static void test_no_election_with_write_in_flight(void **state) {
    (void)state;
    rf_sim_t *s = sim_new(3);
    elect(s, 3, 0);
    (void)cmd_index(s, 0, 1);
    rf_sim_deliver(s, 0, 1, RF_MSG_APP); /* n1 writes, does not sync */
    process(s);
    rf_sim_crash(s, 0);
    rf_sim_drop(s, ANY, ANY, 0);
    for (uint32_t k = 0; k < 4 * ELECTION; k++) rf_sim_tick(s, 1);
    process(s);
    assert_int_equal(info(s, 1).role, RF_FOLLOWER);
    rf_sim_fsync(s, 1);
    process(s);
    rf_sim_tick(s, 1);
    process(s);
    assert_int_not_equal(info(s, 1).role, RF_FOLLOWER);
    rf_sim_destroy(s);
}

/* Rule 8, pre-vote: a node cut off for many election timeouts does not raise its term, so
 * when it returns the leader is undisturbed. */
static void test_prevote_partitioned_node_does_not_disrupt(void **state) {
    (void)state;
    rf_sim_t *s = sim_new(3);
    elect(s, 3, 0);
    uint64_t term = info(s, 0).term;
    rf_sim_isolate(s, 2, true);
    for (uint32_t k = 0; k < 10 * ELECTION; k++) {
        for (uint32_t i = 0; i < 3; i++) rf_sim_tick(s, i);
        settle(s, 3);
    }
    assert_int_equal(info(s, 2).term, term);
    rf_sim_isolate(s, 2, false);
    for (uint32_t k = 0; k < 3 * ELECTION; k++) {
        for (uint32_t i = 0; i < 3; i++) rf_sim_tick(s, i);
        settle(s, 3);
    }
    assert_int_equal(rf_sim_leader(s), 0);
    assert_int_equal(info(s, 0).term, term);
    assert_int_equal(info(s, 2).leader, 1u);
    rf_sim_destroy(s);
}

/* Rule 8, the lease that comes with check-quorum: with the link leader -> n2 cut one way,
 * n2 stops hearing the leader and campaigns, but n1, which still hears the leader, ignores
 * its (pre-)votes; the leader and its term survive. */
static void test_asymmetric_partition_does_not_disrupt(void **state) {
    (void)state;
    rf_sim_t *s = sim_new(3);
    elect(s, 3, 0);
    uint64_t term = info(s, 0).term;
    rf_sim_block(s, 0, 2, true);
    for (uint32_t k = 0; k < 10 * ELECTION; k++) {
        for (uint32_t i = 0; i < 3; i++) rf_sim_tick(s, i);
        settle(s, 3);
    }
    assert_int_equal(rf_sim_leader(s), 0);
    assert_int_equal(info(s, 0).term, term);
    assert_int_equal(info(s, 1).term, term);
    rf_sim_destroy(s);
}

/* Rule 8, check-quorum: a leader cut off from its quorum steps down within an election
 * timeout or two. */
static void test_check_quorum_isolated_leader_steps_down(void **state) {
    (void)state;
    rf_sim_t *s = sim_new(3);
    elect(s, 3, 0);
    rf_sim_isolate(s, 0, true);
    for (uint32_t k = 0; k < 2 * ELECTION; k++) {
        rf_sim_tick(s, 0);
        settle(s, 3);
    }
    assert_int_equal(info(s, 0).role, RF_FOLLOWER);
    rf_sim_destroy(s);
}

static void test_leadership_transfer(void **state) {
    (void)state;
    rf_sim_t *s = sim_new(3);
    elect(s, 3, 0);
    uint64_t term = info(s, 0).term;
    (void)cmd_index(s, 0, 1);
    assert_int_equal(rf_transfer_leadership(rf_sim_raft(s, 0), 2), RF_OK);
    uint64_t index;
    assert_int_equal(rf_sim_propose(s, 0, 2, &index), RF_ERR_TRANSFERRING);
    settle(s, 3);
    assert_int_equal(rf_sim_leader(s), 1);
    assert_int_equal(info(s, 1).term, term + 1);
    assert_int_equal(rf_sim_propose(s, 0, 3, &index), RF_ERR_NOT_LEADER);
    assert_int_equal(info(s, 0).leader, 2u);
    rf_sim_destroy(s);
}

/* Rule 9: a read index is released only after a quorum answered a heartbeat round begun
 * after the read; an isolated leader never releases it. */
static void test_read_index_waits_for_heartbeat_round(void **state) {
    (void)state;
    rf_sim_t *s = sim_new(3);
    elect(s, 3, 0);
    assert_int_equal(rf_read_index(rf_sim_raft(s, 0), 7), RF_OK);
    process(s);
    assert_int_equal(rf_sim_reads_done(s, 0), 0);
    rf_sim_deliver(s, 0, 1, RF_MSG_HEARTBEAT);
    process(s);
    assert_int_equal(rf_sim_reads_done(s, 0), 0);
    rf_sim_deliver(s, 1, 0, RF_MSG_HEARTBEAT_RESP);
    process(s);
    assert_int_equal(rf_sim_reads_done(s, 0), 1);
    /* isolated: never */
    rf_sim_isolate(s, 0, true);
    assert_int_equal(rf_read_index(rf_sim_raft(s, 0), 8), RF_OK);
    settle(s, 3);
    assert_int_equal(rf_sim_reads_done(s, 0), 1);
    assert_int_equal(rf_read_index(rf_sim_raft(s, 1), 9), RF_ERR_NOT_LEADER);
    rf_sim_destroy(s);
}

/* Rule 4: followers' acknowledgments alone never commit past the leader's durable index. */
static void test_commit_never_passes_leader_durable(void **state) {
    (void)state;
    rf_sim_t *s = sim_new(3);
    elect(s, 3, 0);
    uint64_t c = info(s, 0).commit_index;
    uint64_t a = cmd_index(s, 0, 1);
    for (int k = 0; k < 3; k++) {
        rf_sim_deliver(s, 0, ANY, 0);
        process(s);
        rf_sim_fsync(s, 1);
        rf_sim_fsync(s, 2);
        process(s);
        rf_sim_deliver(s, ANY, 0, 0);
        process(s);
    }
    assert_int_equal(rf_sim_persisted(s, 1), a);
    assert_int_equal(info(s, 0).commit_index, c);
    rf_sim_fsync(s, 0);
    process(s);
    assert_int_equal(info(s, 0).commit_index, a);
    rf_sim_destroy(s);
}

/* Rule 3: a follower acknowledges only what it has synced, so a leader whose followers have
 * not synced does not commit. */
static void test_follower_acks_only_durable(void **state) {
    (void)state;
    rf_sim_t *s = sim_new(3);
    elect(s, 3, 0);
    uint64_t c = info(s, 0).commit_index;
    uint64_t a = cmd_index(s, 0, 1);
    rf_sim_fsync(s, 0);
    for (int k = 0; k < 3; k++) {
        rf_sim_deliver(s, 0, ANY, 0);
        process(s);
        rf_sim_deliver(s, ANY, 0, 0);
        process(s);
    }
    assert_int_equal(rf_sim_log_len(s, 1), a);
    assert_int_equal(info(s, 0).commit_index, c);
    rf_sim_fsync(s, 2);
    process(s);
    rf_sim_deliver(s, 2, 0, 0);
    process(s);
    assert_int_equal(info(s, 0).commit_index, a);
    rf_sim_destroy(s);
}

/* Rule 6: a follower's conflicting tail is cut from memory and from the written log. */
static void test_conflict_truncates_log(void **state) {
    (void)state;
    rf_sim_t *s = sim_new(3);
    elect(s, 3, 0);
    rf_sim_isolate(s, 0, true);
    uint64_t a = cmd_index(s, 0, 1); /* n0 alone: never commits */
    (void)cmd_index(s, 0, 2);
    rf_sim_fsync(s, 0);
    settle(s, 3);
    rf_sim_crash(s, 0);
    for (uint32_t k = 0; k < ELECTION; k++) rf_sim_tick(s, 2); /* n2's lease on n0 ends */
    elect(s, 3, 1);
    (void)cmd_index(s, 1, 3);
    settle(s, 3);
    rf_sim_restart(s, 0);
    rf_sim_isolate(s, 0, false);
    for (uint32_t k = 0; k < 2 * ELECTION; k++) {
        rf_sim_tick(s, 1);
        settle(s, 3);
    }
    assert_int_equal(info(s, 0).last_index, info(s, 1).last_index);
    assert_true(rf_term_at(rf_sim_raft(s, 0), a) == rf_term_at(rf_sim_raft(s, 1), a));
    assert_int_equal(rf_sim_log_len(s, 0), info(s, 1).last_index);
    assert_int_equal(rf_sim_applied(s, 0), rf_sim_applied(s, 1));
    rf_sim_destroy(s);
}

static void test_single_node_and_status(void **state) {
    (void)state;
    rf_sim_t *s = sim_new(1);
    for (uint32_t k = 0; k < 3 * ELECTION; k++) rf_sim_tick(s, 0);
    settle(s, 1);
    assert_int_equal(rf_sim_leader(s), 0);
    uint64_t a = cmd_index(s, 0, 1);
    settle(s, 1);
    assert_int_equal(rf_sim_applied(s, 0), a);
    assert_int_equal(rf_read_index(rf_sim_raft(s, 0), 1), RF_OK);
    process(s);
    assert_int_equal(rf_sim_reads_done(s, 0), 1);
    assert_string_equal(rf_status_str(RF_ERR_NOT_LEADER), "not leader");
    rf_sim_destroy(s);
}

/* The driver loop on the bare core: a one-voter group with a tiny window (4 entries, 40
 * bytes) fills up, refuses proposals, and takes them again once applied entries are
 * compacted; entry bytes survive the arena's wrap-around. */
static void drive(rf_t *r, uint64_t *applied_sum) {
    while (rf_has_ready(r)) {
        rf_ready_t rd;
        rf_ready(r, &rd);
        for (uint32_t k = 0; k < rd.committed_count; k++)
            if (rd.committed[k].size) *applied_sum += ((const uint8_t *)rd.committed[k].data)[9];
        uint64_t last = rd.entries_first + rd.entry_count - 1;
        uint64_t term = rd.entry_count ? rd.entries[rd.entry_count - 1].term : 0;
        rf_advance(r, &rd);
        if (term) rf_persisted(r, last, term); /* written and synced at once */
    }
}

static void test_window_full_and_compaction(void **state) {
    (void)state;
    rf_config_t c = {.id = 1,
                     .voters = {1},
                     .voter_count = 1,
                     .election_ticks = 10,
                     .heartbeat_ticks = 2,
                     .pre_vote = true,
                     .check_quorum = true,
                     .seed = 1,
                     .window_entries = 4,
                     .window_bytes = 40};
    rf_t *r = rf_create(&c);
    assert_non_null(r);
    uint64_t sum = 0, expect = 0, index;
    for (int k = 0; k < 30; k++) rf_tick(r);
    drive(r, &sum);
    rf_info_t inf;
    rf_status(r, &inf);
    assert_int_equal(inf.role, RF_LEADER);
    uint8_t buf[12] = {0};
    for (uint8_t v = 1; v <= 40; v++) {
        buf[9] = v;
        rf_status_t st = rf_propose(r, buf, sizeof buf, &index);
        if (st == RF_ERR_FULL) {
            rf_status(r, &inf);
            assert_true(inf.last_index - inf.first_index + 1 >= 3); /* 3 x 12 bytes + no-op */
            rf_compact(r, inf.applied_index);
            st = rf_propose(r, buf, sizeof buf, &index);
        }
        assert_int_equal(st, RF_OK);
        expect += v;
        drive(r, &sum);
    }
    assert_int_equal(sum, expect);
    assert_int_equal(rf_propose(r, buf, RF_ENTRY_MAX + 1, &index), RF_ERR_TOO_BIG);
    rf_destroy(r);
}

/* ---- Snapshots (rule 10) ---- */

/* A follower down while the leader snapshots and compacts its window past it comes back and
 * catches up through a snapshot sent in chunks, then through appends. */
static void test_snapshot_catch_up(void **state) {
    (void)state;
    rf_sim_t *s =
        rf_sim_create(&(rf_sim_config_t){.seed = 42, .nodes = 3, .manual = true, .snap_every = 4});
    elect(s, 3, 0);
    rf_sim_crash(s, 2);
    for (uint64_t id = 1; id <= 20; id++) {
        cmd_index(s, 0, id);
        settle(s, 3);
    }
    assert_true(info(s, 0).first_index > 2); /* n2's next entry is gone from the window */
    rf_sim_restart(s, 2);
    for (int k = 0; k < 400 && rf_sim_applied(s, 2) < rf_sim_applied(s, 0); k++) {
        rf_sim_tick(s, 0); /* heartbeat answers resend what the network lost */
        settle(s, 3);
    }
    rf_sim_stats_t st;
    rf_sim_stats(s, &st);
    assert_int_equal(st.installs, 1);
    assert_int_equal(rf_sim_applied(s, 2), rf_sim_applied(s, 0));
    cmd_index(s, 0, 21);                          /* and appends go on after it */
    for (uint32_t k = 0; k < 2 * ELECTION; k++) { /* the commit index travels with heartbeats */
        rf_sim_tick(s, 0);
        settle(s, 3);
    }
    assert_int_equal(rf_sim_applied(s, 2), rf_sim_applied(s, 0));
    rf_sim_destroy(s);
}

/* Direct tests of a follower's core (id 2 of 1..3, leader 1 in term 1). */
static rf_t *snap_follower(uint32_t preloaded) {
    rf_config_t c = {.id = 2,
                     .voters = {1, 2, 3},
                     .voter_count = 3,
                     .election_ticks = 10,
                     .heartbeat_ticks = 2,
                     .pre_vote = true,
                     .check_quorum = true,
                     .seed = 1,
                     .term = 1,
                     .snap_chunk_bytes = 1500};
    rf_t *r = rf_create(&c);
    assert_non_null(r);
    for (uint32_t k = 0; k < preloaded; k++) assert_true(rf_load(r, 1, NULL, 0));
    return r;
}

static uint8_t snap_bytes[2500];

static void snap_send(rf_t *r, uint64_t index, uint64_t offset, uint32_t size) {
    rf_entry_t e = {.term = 1, .size = size, .data = snap_bytes + offset};
    rf_msg_t m = {.h = {.type = RF_MSG_SNAP,
                        .term = 1,
                        .from = 1,
                        .to = 2,
                        .index = index,
                        .log_term = 1,
                        .ctx = offset,
                        .hint = sizeof snap_bytes,
                        .entry_count = 1},
                  .entries = &e};
    rf_step(r, &m);
}

/* Takes the ready; returns the answer to the leader (its type in *type). */
static rf_msg_hdr_t snap_ready(rf_t *r, rf_ready_t *rd) {
    rf_msg_hdr_t h = {0};
    assert_true(rf_has_ready(r));
    rf_ready(r, rd);
    for (uint32_t k = 0; k < rd->msg_count; k++)
        if (rd->msgs[k].h.type == RF_MSG_SNAP_RESP || rd->msgs[k].h.type == RF_MSG_APP_RESP)
            h = rd->msgs[k].h;
    return h;
}

static void test_snapshot_chunks_follower(void **state) {
    (void)state;
    for (uint32_t k = 0; k < sizeof snap_bytes; k++) snap_bytes[k] = (uint8_t)(k * 7);
    rf_t *r = snap_follower(0);
    rf_ready_t rd;
    snap_send(r, 10, 0, 1500);
    rf_msg_hdr_t a = snap_ready(r, &rd);
    assert_true(rd.has_chunk && !rd.chunk.last);
    assert_int_equal(rd.chunk.offset, 0);
    assert_memory_equal(rd.chunk.data, snap_bytes, 1500);
    assert_int_equal(a.type, RF_MSG_SNAP_RESP);
    assert_int_equal(a.ctx, 1500);
    assert_false(a.reject);
    rf_advance(r, &rd);
    snap_send(r, 10, 2000, 500); /* a gap: refused, with where to go on */
    a = snap_ready(r, &rd);
    assert_false(rd.has_chunk);
    assert_true(a.reject);
    assert_int_equal(a.ctx, 1500);
    rf_advance(r, &rd);
    snap_send(r, 10, 0, 1500); /* a duplicate: nothing written again */
    a = snap_ready(r, &rd);
    assert_false(rd.has_chunk);
    assert_int_equal(a.ctx, 1500);
    rf_advance(r, &rd);
    snap_send(r, 10, 1500, 1000);
    a = snap_ready(r, &rd);
    assert_true(rd.has_chunk && rd.chunk.last);
    assert_memory_equal(rd.chunk.data, snap_bytes + 1500, 1000);
    rf_advance(r, &rd);
    rf_members_t three = {.ids = {1, 2, 3}, .count = 3, .voters = 7};
    rf_snapshot_installed(r, 10, 1, &three);
    rf_info_t inf;
    rf_status(r, &inf);
    assert_int_equal(inf.first_index, 11);
    assert_int_equal(inf.commit_index, 10);
    assert_int_equal(inf.applied_index, 10);
    a = snap_ready(r, &rd);
    assert_int_equal(a.type, RF_MSG_APP_RESP); /* the leader goes on after it */
    assert_int_equal(a.index, 10);
    rf_advance(r, &rd);
    snap_send(r, 8, 0, 1500); /* at or below the commit index: never installed */
    a = snap_ready(r, &rd);
    assert_false(rd.has_chunk);
    assert_int_equal(a.type, RF_MSG_APP_RESP);
    rf_advance(r, &rd);
    rf_destroy(r);
}

/* A follower whose log holds the snapshot's last entry keeps its log (it may reach further
 * and may have been acknowledged) instead of installing. */
static void test_snapshot_not_installed_over_own_log(void **state) {
    (void)state;
    rf_t *r = snap_follower(12);
    rf_ready_t rd;
    snap_send(r, 10, 0, 1500);
    rf_msg_hdr_t a = snap_ready(r, &rd);
    assert_false(rd.has_chunk);
    assert_int_equal(a.type, RF_MSG_APP_RESP);
    assert_true(a.hint >= 10);
    rf_advance(r, &rd);
    rf_info_t inf;
    rf_status(r, &inf);
    assert_int_equal(inf.last_index, 12);
    rf_destroy(r);

    /* The log gains the entry while the last chunk waits for its ready: not installed. */
    r = snap_follower(0);
    snap_send(r, 10, 0, 1500);
    (void)snap_ready(r, &rd);
    rf_advance(r, &rd);
    snap_send(r, 10, 1500, 1000);
    rf_entry_t ents[12];
    for (int k = 0; k < 12; k++) ents[k] = (rf_entry_t){.term = 1};
    rf_msg_t app = {.h = {.type = RF_MSG_APP, .term = 1, .from = 1, .to = 2, .entry_count = 12},
                    .entries = ents};
    rf_step(r, &app);
    (void)snap_ready(r, &rd);
    assert_false(rd.has_chunk);
    rf_advance(r, &rd);
    rf_status(r, &inf);
    assert_int_equal(inf.last_index, 12);
    rf_destroy(r);
}

/* ---- Membership (rule 7) ---- */

static rf_sim_t *sim_members(void) {
    return rf_sim_create(
        &(rf_sim_config_t){.seed = 42, .nodes = 5, .manual = true, .members = true});
}

static bool has_member(rf_sim_t *s, uint32_t i, uint32_t id, bool *voter) {
    rf_members_t m;
    rf_members(rf_sim_raft(s, i), &m);
    return rf_members_has(&m, id, voter);
}

/* Add a learner, let it catch up, promote it; remove a voter; the leader removes itself and
 * steps down once that commits. Changes take effect when appended; one at a time. */
static void test_members_add_promote_remove(void **state) {
    (void)state;
    rf_sim_t *s = sim_members();
    elect(s, 5, 0);
    bool voter = true;
    cmd_index(s, 0, 1);
    settle(s, 5);
    assert_int_equal(rf_sim_members(s, 0, RF_CONF_ADD_LEARNER, 4), RF_OK);
    assert_true(has_member(s, 0, 4, &voter) && !voter); /* in effect at once on the leader */
    assert_int_equal(rf_sim_members(s, 0, RF_CONF_PROMOTE, 4), RF_ERR_CONF_PENDING);
    settle(s, 5);
    for (uint32_t k = 0; k < 2 * ELECTION; k++) {
        rf_sim_tick(s, 0);
        settle(s, 5);
    }
    assert_int_equal(rf_sim_applied(s, 3), rf_sim_applied(s, 0)); /* the learner caught up */
    assert_true(has_member(s, 3, 4, &voter) && !voter);
    assert_int_equal(rf_sim_members(s, 0, RF_CONF_PROMOTE, 4), RF_OK);
    settle(s, 5);
    assert_true(has_member(s, 1, 4, &voter) && voter);
    assert_int_equal(rf_sim_members(s, 0, RF_CONF_PROMOTE, 4), RF_ERR_INVALID);
    assert_int_equal(rf_sim_members(s, 0, RF_CONF_REMOVE, 2), RF_OK);
    settle(s, 5);
    assert_false(has_member(s, 0, 2, NULL));
    assert_int_equal(rf_sim_members(s, 0, RF_CONF_REMOVE, 1), RF_OK); /* itself */
    assert_int_equal(info(s, 0).role, RF_LEADER);                     /* until the change commits */
    settle(s, 5);
    assert_true(info(s, 0).role != RF_LEADER);
    /* Voters 3 and 4 go on without it. */
    for (uint32_t k = 0; k < 6 * ELECTION && rf_sim_leader(s) < 0; k++) {
        rf_sim_tick(s, 2);
        rf_sim_tick(s, 3);
        settle(s, 5);
    }
    int l = rf_sim_leader(s);
    assert_true(l == 2 || l == 3);
    cmd_index(s, (uint32_t)l, 2);
    settle(s, 5);
    rf_sim_destroy(s);
}

/* A new leader proposes no change before an entry of its term is committed. */
static void test_members_wait_for_own_term(void **state) {
    (void)state;
    rf_sim_t *s = sim_members();
    elect(s, 5, 0);
    settle(s, 5);
    rf_sim_isolate(s, 0, true);
    static const uint8_t votes[] = {RF_MSG_PREVOTE, RF_MSG_PREVOTE_RESP, RF_MSG_VOTE,
                                    RF_MSG_VOTE_RESP};
    int l = -1;
    for (uint32_t k = 0; k < 8 * ELECTION && l <= 0; k++) {
        rf_sim_tick(s, 1);
        rf_sim_tick(s, 2);
        process(s);
        for (int round = 0; round < 4; round++) {
            for (uint32_t t = 0; t < sizeof votes; t++) rf_sim_deliver(s, ANY, ANY, votes[t]);
            process(s);
        }
        l = rf_sim_leader(s);
    }
    assert_true(l == 1 || l == 2);
    /* Its no-op is written but not yet acknowledged by a quorum. */
    assert_int_equal(rf_sim_members(s, (uint32_t)l, RF_CONF_ADD_LEARNER, 4), RF_ERR_NOT_READY);
    rf_sim_destroy(s);
}

/* A membership entry removed by a conflicting append takes its membership with it. */
static void test_members_roll_back_with_log(void **state) {
    (void)state;
    rf_sim_t *s = sim_members();
    elect(s, 5, 0);
    cmd_index(s, 0, 1);
    settle(s, 5);
    assert_int_equal(rf_sim_members(s, 0, RF_CONF_ADD_LEARNER, 4), RF_OK);
    process(s);
    rf_sim_drop(s, 0, 2, 0);
    rf_sim_drop(s, 0, 3, 0);
    rf_sim_deliver(s, 0, 1, RF_MSG_APP); /* only n1 gets the change */
    process(s);
    assert_true(has_member(s, 1, 4, NULL));
    rf_sim_crash(s, 0); /* never synced it: lost */
    rf_sim_isolate(s, 1, true);
    rf_sim_drop(s, ANY, ANY, 0);
    rf_sim_restart(s, 0);
    for (uint32_t k = 0; k < 4 * ELECTION && rf_sim_leader(s) < 0; k++) {
        rf_sim_tick(s, 0);
        rf_sim_tick(s, 2);
        settle(s, 5);
    }
    int l = rf_sim_leader(s);
    assert_true(l == 0 || l == 2);
    cmd_index(s, (uint32_t)l, 2);
    settle(s, 5);
    rf_sim_isolate(s, 1, false);
    for (uint32_t k = 0; k < 2 * ELECTION; k++) {
        rf_sim_tick(s, (uint32_t)l);
        settle(s, 5);
    }
    assert_int_equal(rf_sim_applied(s, 1), rf_sim_applied(s, (uint32_t)l));
    assert_false(has_member(s, 1, 4, NULL)); /* rolled back */
    rf_sim_destroy(s);
}

/* A leadership transfer goes on while its target catches up (a slow disk), past an election
 * timeout, as long as the target makes progress; then the target leads. */
static void test_transfer_waits_for_slow_target(void **state) {
    (void)state;
    rf_sim_t *s = sim_new(3);
    elect(s, 3, 0);
    for (uint64_t id = 1; id <= 30; id++) cmd_index(s, 0, id);
    for (int k = 0; k < 20; k++) { /* n2 gets everything, makes none of it durable */
        rf_sim_deliver(s, ANY, ANY, 0);
        rf_sim_fsync(s, 0);
        rf_sim_fsync(s, 1);
        process(s);
    }
    uint64_t base = rf_sim_persisted(s, 2);
    assert_true(rf_sim_log_len(s, 2) >= base + 2 * ELECTION);
    assert_int_equal(rf_transfer_leadership(rf_sim_raft(s, 0), 3), RF_OK);
    uint64_t index;
    for (uint32_t k = 1; k <= ELECTION + 5; k++) {
        rf_sim_fsync_upto(s, 2, base + k); /* one more entry durable per tick */
        rf_sim_tick(s, 0);
        process(s);
        rf_sim_deliver(s, ANY, ANY, 0);
        rf_sim_fsync(s, 0);
        rf_sim_fsync(s, 1);
        process(s);
    }
    assert_int_equal(rf_sim_propose(s, 0, 99, &index), RF_ERR_TRANSFERRING);
    rf_sim_fsync(s, 2);
    for (uint32_t k = 0; k < ELECTION && rf_sim_leader(s) != 2; k++) {
        rf_sim_tick(s, 0);
        settle(s, 3);
    }
    assert_int_equal(rf_sim_leader(s), 2);
    rf_sim_destroy(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_figure8_old_term_not_counted),
        cmocka_unit_test(test_vote_denied_to_shorter_durable_log),
        cmocka_unit_test(test_no_election_with_write_in_flight),
        cmocka_unit_test(test_prevote_partitioned_node_does_not_disrupt),
        cmocka_unit_test(test_asymmetric_partition_does_not_disrupt),
        cmocka_unit_test(test_check_quorum_isolated_leader_steps_down),
        cmocka_unit_test(test_leadership_transfer),
        cmocka_unit_test(test_transfer_waits_for_slow_target),
        cmocka_unit_test(test_read_index_waits_for_heartbeat_round),
        cmocka_unit_test(test_commit_never_passes_leader_durable),
        cmocka_unit_test(test_follower_acks_only_durable),
        cmocka_unit_test(test_conflict_truncates_log),
        cmocka_unit_test(test_single_node_and_status),
        cmocka_unit_test(test_window_full_and_compaction),
        cmocka_unit_test(test_snapshot_catch_up),
        cmocka_unit_test(test_snapshot_chunks_follower),
        cmocka_unit_test(test_snapshot_not_installed_over_own_log),
        cmocka_unit_test(test_members_add_promote_remove),
        cmocka_unit_test(test_members_wait_for_own_term),
        cmocka_unit_test(test_members_roll_back_with_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
