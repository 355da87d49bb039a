/* Test driver for csrc/unicode_tables.c (used by tests/test_unicode_tables.py).
 * Writes one 32-byte record per code point 0..0x10FFFF to stdout:
 *   uint8 flags, uint8 ccc, uint8 n_nfd, uint8 n_lower, uint32 nfd[4], uint32 lower[3]
 * and checks the inline fast paths and out-of-range behaviour (exit 2 on a mismatch). */
#include <stdio.h>
#include <string.h>
#include "io/unicode_tables.h"

typedef struct {
    uint8_t flags, ccc, n_nfd, n_lower;
    uint32_t nfd[4], lower[3];
} rec;

int main(void) {
    static rec buf[4096];
    size_t n = 0;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        rec *r = &buf[n++];
        memset(r, 0, sizeof *r);
        uint32_t f = lnn_uc_flags(cp);
        if (f != lnn_uc_flags_inline(cp) || f > 127u) { fprintf(stderr, "flags inline U+%04X\n", cp); return 2; }
        r->flags = (uint8_t)f;
        r->ccc = lnn_uc_ccc(cp);
        int k = lnn_uc_nfd(cp, r->nfd);
        if (k < 1 || k > LNN_UC_NFD_MAX) { fprintf(stderr, "nfd count U+%04X\n", cp); return 2; }
        r->n_nfd = (uint8_t)k;
        k = lnn_uc_lower(cp, r->lower);
        if (k < 1 || k > LNN_UC_LOWER_MAX) { fprintf(stderr, "lower count U+%04X\n", cp); return 2; }
        r->n_lower = (uint8_t)k;
        if (cp < 128 && !(k == 1 && r->lower[0] == lnn_uc_ascii_lower(cp))) {
            fprintf(stderr, "ascii lower U+%04X\n", cp); return 2;
        }
        /* the hint bits agree with the mappings */
        if (!(f & LNN_UC_HAS_NFD) != (r->n_nfd == 1 && r->nfd[0] == cp)
            || !(f & LNN_UC_HAS_LOWER) != (r->n_lower == 1 && r->lower[0] == cp)) {
            fprintf(stderr, "hint bits U+%04X\n", cp); return 2;
        }
        if (n == sizeof buf / sizeof buf[0]) { fwrite(buf, sizeof(rec), n, stdout); n = 0; }
    }
    fwrite(buf, sizeof(rec), n, stdout);
    /* out of range: no flags, identity mappings */
    const uint32_t bad[] = {0x110000u, 0x7FFFFFFFu, 0xFFFFFFFFu};
    for (int i = 0; i < 3; i++) {
        uint32_t o[4];
        if (lnn_uc_flags(bad[i]) || lnn_uc_flags_inline(bad[i]) || lnn_uc_ccc(bad[i])
            || lnn_uc_nfd(bad[i], o) != 1 || o[0] != bad[i]
            || lnn_uc_lower(bad[i], o) != 1 || o[0] != bad[i]) {
            fprintf(stderr, "out of range %08X\n", bad[i]); return 2;
        }
    }
    return 0;
}
