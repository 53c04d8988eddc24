/* Runs pack vectors through the C ABI of helm-verify-capi (libhelm_verify_capi.a).
 *
 *   test ID FILE ANCHORS EXPECT [ID FILE ANCHORS EXPECT ...]
 *
 * ANCHORS: trust anchors as 64 hex digits each, separated by commas.
 * EXPECT:  "accept:N" (verifies, N records) or an error name ("SIGNATURE_INVALID").
 *
 * Each pack is verified four times, fed in chunks of 1, 512 and 4093 bytes and whole,
 * from a memory block at an odd address, sized from the pack's manifest with
 * helm_capacity_from_manifest. All four verdicts must agree with EXPECT. Prints a table
 * and one "RESULT ID VERDICT" line per vector for embedded/run-tests.sh; exits 1 on any
 * mismatch. A few API misuse checks run first. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helm_verify.h"

static int failures = 0;

#define CHECK(cond, what)                                          \
    do {                                                           \
        if (!(cond)) {                                             \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, what); \
            failures++;                                            \
        }                                                          \
    } while (0)

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        unsigned char *bigger = realloc(buf, cap * 2);
        if (!bigger) { free(buf); buf = NULL; break; }
        buf = bigger;
        cap *= 2;
    }
    fclose(f);
    *len = n;
    return buf;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* "hex,hex,..." -> 32-byte keys; returns the count, or 0 on a malformed list. */
static size_t parse_anchors(const char *s, uint8_t *out, size_t max) {
    size_t n = 0;
    while (*s) {
        if (n == max) return 0;
        for (int i = 0; i < 32; i++) {
            int hi = hex_digit(s[2 * i]), lo = hi < 0 ? -1 : hex_digit(s[2 * i + 1]);
            if (hi < 0 || lo < 0) return 0;
            out[32 * n + i] = (uint8_t)(hi << 4 | lo);
        }
        s += 64;
        n++;
        if (*s == ',') s++;
        else if (*s) return 0;
    }
    return n;
}

/* The verdict as text: "verified:N" or "NAME@INDEX" ("NAME@-" without a record). */
static void verdict(int32_t code, const helm_result *r, char *out, size_t len) {
    if (code == HELM_OK)
        snprintf(out, len, "verified:%llu", (unsigned long long)r->records);
    else if (code > 0 && r->record_index >= 0)
        snprintf(out, len, "%s@%lld", helm_error_name(code), (long long)r->record_index);
    else
        snprintf(out, len, "%s@-", helm_error_name(code));
}

/* Verifies `pack` fed in `chunk`-byte pieces; returns the code and fills `r`. */
static int32_t verify(const unsigned char *pack, size_t len, const uint8_t *anchors, size_t n_anchors,
                      size_t chunk, helm_result *r) {
    helm_capacity cap;
    size_t prefix = len < HELM_MANIFEST_PREFIX ? len : HELM_MANIFEST_PREFIX;
    int32_t s = helm_capacity_from_manifest(pack, prefix, n_anchors, &cap);
    if (s != HELM_OK && s != HELM_E_NO_MANIFEST) return s;
    size_t size = helm_verifier_size(&cap);
    if (size == 0 || size > ((size_t)256 << 20)) return HELM_E_CAPACITY; /* a memory budget */
    unsigned char *mem = malloc(size + 1);
    if (!mem) return HELM_E_MEMORY;
    helm_verifier *v = NULL;
    /* An odd address on purpose: the block may have any alignment. */
    s = helm_verifier_init(mem + 1, size, anchors, n_anchors, &cap, &v);
    if (s != HELM_OK) { free(mem); return s; }
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        if (helm_verifier_feed(v, pack + off, n) != HELM_OK) break; /* the verdict is known */
    }
    int32_t code = helm_verifier_finish(v, r);
    CHECK(code == r->code, "finish returns out->code");
    CHECK(helm_verifier_feed(v, pack, 1) == HELM_E_STATE, "a finished handle refuses feed");
    free(mem);
    return code;
}

static void api_checks(const unsigned char *pack, size_t len, const uint8_t *anchor) {
    CHECK(strcmp(helm_error_name(0), "OK") == 0, "name of 0");
    CHECK(strcmp(helm_error_name(201), "SIGNATURE_INVALID") == 0, "name of 201");
    CHECK(strcmp(helm_error_name(1104), "PACK_MANIFEST_MISMATCH") == 0, "name of 1104");
    CHECK(strcmp(helm_error_name(HELM_E_MEMORY), "HELM_E_MEMORY") == 0, "name of HELM_E_MEMORY");
    CHECK(strcmp(helm_error_name(12345), "UNKNOWN") == 0, "name of an unknown code");
    CHECK(helm_verifier_size(NULL) == 0, "size of NULL capacity");

    helm_capacity cap;
    CHECK(helm_capacity_from_manifest(pack, len, 1, &cap) == HELM_OK, "capacity from manifest");
    size_t size = helm_verifier_size(&cap);
    unsigned char *mem = malloc(size);
    helm_verifier *v = NULL;
    CHECK(helm_verifier_init(mem, 64, anchor, 1, &cap, &v) == HELM_E_MEMORY, "tiny block");
    CHECK(helm_verifier_init(NULL, size, anchor, 1, &cap, &v) == HELM_E_ARGUMENT, "NULL block");
    uint8_t zero[32] = {0};
    CHECK(helm_verifier_init(mem, size, zero, 1, &cap, &v) == HELM_E_ANCHOR, "small-order anchor");
    CHECK(helm_verifier_feed(NULL, pack, 1) == HELM_E_ARGUMENT, "feed NULL handle");
    CHECK(helm_verifier_init(mem, size, anchor, 1, &cap, &v) == HELM_OK, "init");
    CHECK(helm_verifier_feed(v, NULL, 3) == HELM_E_ARGUMENT, "feed NULL chunk");
    CHECK(helm_verifier_finish(v, NULL) == HELM_E_ARGUMENT, "finish NULL result");
    helm_result r;
    CHECK(helm_verifier_finish(v, &r) == 1000 && strcmp(helm_error_name(r.code), "TAR_TRUNCATED") == 0,
          "finish before any byte: TAR_TRUNCATED");
    CHECK(helm_verifier_finish(v, &r) == HELM_E_STATE, "finish twice");
    /* The same block, reused without clearing, verifies the pack. */
    CHECK(helm_verifier_init(mem, size, anchor, 1, &cap, &v) == HELM_OK, "re-init");
    CHECK(helm_verifier_feed(v, pack, len) == HELM_OK, "feed whole");
    CHECK(helm_verifier_finish(v, &r) == HELM_OK && r.records > 0, "verified after reuse");
    free(mem);
}

int main(int argc, char **argv) {
    if (argc < 5 || (argc - 1) % 4 != 0) {
        fprintf(stderr, "usage: %s ID FILE ANCHORS EXPECT [ID FILE ANCHORS EXPECT ...]\n", argv[0]);
        return 2;
    }
    static const size_t chunks[] = {1, 512, 4093, 0 /* whole */};
    int mismatches = 0, vectors = 0;
    printf("%-36s %-28s %-28s %s\n", "vector", "expected", "C ABI", "");
    for (int a = 1; a + 3 < argc; a += 4) {
        const char *id = argv[a], *file = argv[a + 1], *anchor_list = argv[a + 2], *expect = argv[a + 3];
        uint8_t anchors[32 * 8];
        size_t n_anchors = parse_anchors(anchor_list, anchors, 8);
        size_t len = 0;
        unsigned char *pack = read_file(file, &len);
        if (!pack || n_anchors == 0) {
            fprintf(stderr, "cannot read %s or its anchors\n", file);
            return 2;
        }
        if (vectors == 0 && strncmp(expect, "accept:", 7) == 0) api_checks(pack, len, anchors);
        char first[96] = "", got[96];
        int agree = 1;
        for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
            helm_result r;
            memset(&r, 0xAA, sizeof r);
            int32_t code = verify(pack, len, anchors, n_anchors, chunks[c] ? chunks[c] : (len ? len : 1), &r);
            verdict(code, &r, got, sizeof got);
            if (c == 0) strcpy(first, got);
            else if (strcmp(first, got) != 0) {
                agree = 0;
                fprintf(stderr, "%s: chunk %zu gives %s, chunk 1 gave %s\n", id, chunks[c], got, first);
            }
        }
        /* Compare: "accept:N" against "verified:N"; a name against the name before '@'. */
        int ok;
        if (strncmp(expect, "accept:", 7) == 0)
            ok = strncmp(first, "verified:", 9) == 0 && strcmp(first + 9, expect + 7) == 0;
        else
            ok = strncmp(first, expect, strlen(expect)) == 0 && first[strlen(expect)] == '@';
        ok = ok && agree;
        if (!ok) mismatches++;
        vectors++;
        printf("%-36s %-28s %-28s %s\n", id, expect, first, ok ? "ok" : "MISMATCH");
        printf("RESULT %s %s\n", id, first);
        free(pack);
    }
    printf("C ABI: %d vectors, %d mismatches, %d API check failures\n", vectors, mismatches, failures);
    return (mismatches || failures) ? 1 : 0;
}
