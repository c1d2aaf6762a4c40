/* The Raft hard state of a replica (current term and vote) in DIR/raft.state. It must be on
 * stable storage before any message that depends on it leaves the node (raft-notes rule 3):
 * hardstate_save() returns only after the data is fsynced.
 *
 * The file holds two 64-byte slots, each {u128 XXH3-128 of bytes [16, 64), u64 magic,
 * u64 sequence, u64 term, u32 vote, zeros}; a save overwrites the older slot in place and
 * fsyncs. A crash during a save tears at most that slot, so the other one (the previous
 * state) survives; load takes the valid slot with the higher sequence. No rename, so a save
 * costs one fdatasync. */
#ifndef CP_HARDSTATE_H
#define CP_HARDSTATE_H

#include <stddef.h>
#include <stdint.h>

typedef struct hardstate {
    int fd;
    uint64_t seq; /* of the newest slot */
    uint64_t term;
    uint32_t vote;
} hardstate_t;

/* Opens (creating when missing: term 0, no vote) DIR/raft.state and loads the newest valid
 * slot. Returns 0, or -1 with a message in err (a file whose both slots are damaged is
 * refused: the node cannot know which votes it gave). */
int hardstate_open(hardstate_t *hs, const char *dir, char *err, size_t err_size);

/* Makes (term, vote) durable; 0 or -errno. The term never goes backwards (asserted). */
int hardstate_save(hardstate_t *hs, uint64_t term, uint32_t vote);

void hardstate_close(hardstate_t *hs);

#endif
