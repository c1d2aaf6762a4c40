/* Zones (DESIGN.md): users are split into CP_ZONES logical shards by their uid, and every
 * account id carries its owner's uid in its upper 64 bits, so every account routes to a zone.
 * The rule and zone sets live here, below both the cell (which refuses foreign zones) and the
 * gateway's route table, so the two can never disagree about what zone a uid is in. */
#ifndef CP_ZONE_H
#define CP_ZONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/u128.h"

#define CP_ZONES 100u
#define CP_ZONE_DIVISOR_DEFAULT 10u
#define CP_ZONE_MODULUS_DEFAULT 100u

/* zone(uid) = (uid / divisor) mod modulus. The default 10/100 takes the uid's 3rd and 2nd
 * decimal digits from the end, as Alipay routes. A rule of all zeros means the default. */
typedef struct cp_zone_rule {
    uint64_t divisor;
    uint64_t modulus;
} cp_zone_rule_t;

/* NULL when rule is usable (divisor >= 1, modulus in [1, CP_ZONES]), else what is wrong. */
const char *cp_zone_rule_check(const cp_zone_rule_t *rule);
/* The zone of uid under rule (NULL or all zeros: the default). The rule must have passed
 * cp_zone_rule_check(). */
uint32_t cp_zone_of(const cp_zone_rule_t *rule, uint64_t uid);
/* Parses "DIVISOR/MODULUS" (e.g. "10/100") of len bytes into a checked rule; false with a
 * message in err when it is not one. */
bool cp_zone_rule_parse(const char *s, size_t len, cp_zone_rule_t *out, char *err, size_t err_size);
/* The rule in effect: all zeros become the default. */
cp_zone_rule_t cp_zone_rule_effective(const cp_zone_rule_t *rule);
/* The owner uid of an account id: its upper 64 bits. */
static inline uint64_t cp_account_uid(u128 account_id) {
    return (uint64_t)(account_id >> 64);
}

/* A set of zones: bit z of bits[z / 64]. */
typedef struct cp_zones {
    uint64_t bits[2];
} cp_zones_t;

cp_zones_t cp_zones_all(void);
bool cp_zones_has(const cp_zones_t *z, uint32_t zone);
void cp_zones_add(cp_zones_t *z, uint32_t zone);
bool cp_zones_is_empty(const cp_zones_t *z);
bool cp_zones_equal(const cp_zones_t *a, const cp_zones_t *b);
uint32_t cp_zones_count(const cp_zones_t *z);

/* Parses a zone list such as "0-24,50,60-69" (ranges inclusive, ascending bounds, each zone
 * at most once, not empty) of len bytes. False with a message in err when it is not one. */
bool cp_zones_parse(const char *s, size_t len, cp_zones_t *out, char *err, size_t err_size);
/* Writes z as its normalized list (ascending, maximal ranges; "" for the empty set) into out;
 * returns the length it needs (as snprintf). CP_ZONES_TEXT_MAX always suffices. */
#define CP_ZONES_TEXT_MAX 400u
size_t cp_zones_format(const cp_zones_t *z, char *out, size_t out_size);

#endif
